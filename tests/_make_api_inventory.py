"""Extract katcp-python's public API inventory from ``katcp-api.md`` into JSON.

The reference document ``shared/reference/katcp-api.md`` lists katcp-python 0.9.3's public
surface (modules, classes, members, signatures, constants).  This script turns it into
``tests/data/katcp_api_inventory.json``, which ``tests/test_api_surface.py`` checks our package
against.  The JSON is checked in so that the test also runs where ``shared/`` is absent; when the
markdown is present the test also checks that the JSON is up to date.

Usage (from the repository root)::

    .venv/bin/python tests/_make_api_inventory.py [path/to/katcp-api.md] [output.json]

Items that we deliberately do not reproduce are listed in `EXCEPTIONS` below, each with a reason;
they are written into the JSON (``"exception": "<reason>"``) and reported as skipped tests with
that reason, never dropped silently.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MD = os.path.join(HERE, "..", "..", "shared", "reference", "katcp-api.md")
DEFAULT_JSON = os.path.join(HERE, "data", "katcp_api_inventory.json")

#: Documented exceptions: inventory item id -> reason.  Ids are as produced by `parse`, e.g.
#: ``katcp.sampling.PY2`` or ``katcp.server.DeviceServer.request_halt``.
EXCEPTIONS: Dict[str, str] = {
    "katcp.sampling.PY2": (
        "Python-2 artefact (python-future `PY2` flag); this package is Python 3 only, the flag "
        "would always be False and has no use"
    ),
    "katcp.resource.PY2": (
        "Python-2 artefact (python-future `PY2` flag); this package is Python 3 only"
    ),
    "katcp.resource_client.PY2": (
        "Python-2 artefact (python-future `PY2` flag); this package is Python 3 only"
    ),
}

#: Corrections of reference values that are misleading as written: item id -> (value, reason).
VALUE_OVERRIDES: Dict[str, tuple] = {
    "katcp.inspecting_client.InspectingClientAsync.request_factory": (
        "<class 'katcp.inspecting_client.RequestType'>",
        "katcp-python's RequestType is namedtuple('Request', ...), so its repr says "
        "inspecting_client.Request although the public name is RequestType",
    ),
}

_MODULE_RE = re.compile(r"^## (katcp(?:\.[a-z_]+)?) — ")
_CLASS_RE = re.compile(r"^### class `(?P<name>\w+)\((?P<bases>[^)]*)\)`")
_TOP_ROW_RE = re.compile(r"^\| (?P<names>[^|]+) \|(?P<where>[^|]*)\|")
_CONST_RE = re.compile(r"^- `(?P<name>\w+) = (?P<value>.*)` — (?P<doc>.*)$")
_FUNC_RE = re.compile(r"^- `(?P<name>\w+)\((?P<params>.*)\)` — (?P<doc>.*)$")
_CTOR_RE = re.compile(r"^- `(?P<name>\w+)\((?P<params>.*)\)` — (?P<doc>.*)$")
_MEMBER_RE = re.compile(
    r"^  - (?:(?P<kind>classmethod|staticmethod|property|attr) )?`(?P<name>\w+)"
    r"(?:\((?P<params>.*?)\))?`(?P<rest>.*)$"
)
_CLASS_CONST_RE = re.compile(r"(?:constants: |, )`(?P<name>[A-Za-z_]\w*)=(?P<value>.*?)`(?=, `|$)")


def split_params(text: str) -> List[str]:
    """Split a parameter list at top-level commas (respecting brackets and quotes)."""
    parts: List[str] = []
    depth = 0
    quote: str | None = None
    cur = ""
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def parse_params(text: str | None) -> List[Dict[str, Any]] | None:
    """Parse ``a, b=1, *args, **kw`` into a list of parameter dicts.

    Returns None for ``...`` (signature not documented, e.g. exception classes).
    """
    if text is None:
        return None
    if text.strip() == "...":
        return None
    params = []
    for part in split_params(text):
        if part.startswith("**"):
            params.append({"name": part[2:], "kind": "VAR_KEYWORD"})
        elif part.startswith("*"):
            params.append({"name": part[1:], "kind": "VAR_POSITIONAL"})
        elif "=" in part:
            name, default = part.split("=", 1)
            params.append({"name": name.strip(), "kind": "POSITIONAL_OR_KEYWORD",
                           "default": default.strip()})
        else:
            params.append({"name": part, "kind": "POSITIONAL_OR_KEYWORD"})
    if params and params[0]["name"] in ("self", "cls", "mcs") and "default" not in params[0]:
        params = params[1:]
    return params


def _truncated(value: str) -> bool:
    return value.endswith("...") or value.endswith("...'")


def parse(md_text: str) -> Dict[str, Any]:
    """Parse katcp-api.md text into the inventory structure."""
    items: List[Dict[str, Any]] = []
    module: str | None = None
    cls: str | None = None
    section: str | None = None
    in_top = False

    def add(item: Dict[str, Any]) -> None:
        item["id"] = ".".join(p for p in (item["module"], item.get("cls"), item.get("name")) if p)
        if item["id"] in VALUE_OVERRIDES:
            item["value"], item["note"] = VALUE_OVERRIDES[item["id"]]
        if item["id"] in EXCEPTIONS:
            item["exception"] = EXCEPTIONS[item["id"]]
        items.append(item)

    for line in md_text.splitlines():
        if line.startswith("## Top-level namespace"):
            in_top, module, cls = True, "katcp", None
            continue
        m = _MODULE_RE.match(line)
        if m:
            in_top, module, cls, section = False, m.group(1), None, None
            add({"module": module, "kind": "module"})
            continue
        if line.startswith("## "):
            in_top, module, cls = False, None, None
            continue
        if in_top:
            row = _TOP_ROW_RE.match(line)
            if not row or row.group("names").strip() in ("name", "---"):
                continue
            names = re.findall(r"`([\w.]+)`", row.group("names"))
            where = row.group("where").strip()
            if row.group("names").startswith("submodules"):
                for sub in row.group("names").split("`")[1].split():
                    add({"module": "katcp", "name": sub, "kind": "submodule"})
            elif "NOT imported" in row.group("where") or "NOT imported" in row.group("names"):
                for sub in names:
                    add({"module": sub, "kind": "explicit_module"})
            elif where == "`__init__`":
                add({"module": "katcp", "name": "__version__", "kind": "constant",
                     "value_type": "str"})
            else:
                for name in names:
                    add({"module": "katcp", "name": name, "kind": "reexport",
                         "defined_in": "katcp." + where.strip("`")})
            continue
        if module is None:
            continue
        if line.startswith("Constants/values:"):
            section, cls = "constants", None
            continue
        if line.startswith("Functions:"):
            section, cls = "functions", None
            continue
        m = _CLASS_RE.match(line)
        if m:
            cls, section = m.group("name"), "class"
            add({"module": module, "name": cls, "kind": "class",
                 "bases": [b.strip() for b in m.group("bases").split(",")]})
            continue
        if cls is None:
            if section == "constants":
                m = _CONST_RE.match(line)
                if m:
                    value = m.group("value")
                    add({"module": module, "name": m.group("name"), "kind": "constant",
                         "value": None if _truncated(value) else value})
            elif section == "functions":
                m = _FUNC_RE.match(line)
                if m:
                    add({"module": module, "name": m.group("name"), "kind": "function",
                         "params": parse_params(m.group("params"))})
            continue
        # inside a class
        m = _CTOR_RE.match(line)
        if m and m.group("name") == cls:
            ctor = items[-1] if items[-1].get("kind") == "class" else None
            for it in reversed(items):
                if it.get("kind") == "class" and it["name"] == cls and it["module"] == module:
                    ctor = it
                    break
            assert ctor is not None
            ctor["params"] = parse_params(m.group("params"))
            continue
        if line.startswith("  - constants:"):
            for c in _CLASS_CONST_RE.finditer(line[len("  - "):]):
                value = c.group("value")
                add({"module": module, "cls": cls, "name": c.group("name"), "kind": "constant",
                     "value": None if _truncated(value) else value})
            continue
        m = _MEMBER_RE.match(line)
        if m:
            kind = m.group("kind") or "method"
            rest = m.group("rest")
            item: Dict[str, Any] = {"module": module, "cls": cls, "name": m.group("name"),
                                    "kind": kind}
            if kind in ("method", "classmethod", "staticmethod"):
                item["params"] = parse_params(m.group("params") or "")
            if kind == "property":
                item["writable"] = rest.lstrip().startswith("rw")
            if kind == "attr":
                v = re.match(r"\s*= `(.*?)`( —|$)", rest)
                item["value"] = v.group(1) if v and not _truncated(v.group(1)) else None
            add(item)
    # katcp-api.md ("Discrepancies to decide on") recommends also providing the seed's
    # VERSION (5-tuple) and VERSION_STR; DESIGN.md adopts that.
    add({"module": "katcp", "name": "VERSION", "kind": "constant", "value_type": "tuple"})
    add({"module": "katcp", "name": "VERSION_STR", "kind": "constant", "value_type": "str"})
    return {"source": "katcp-api.md (katcp-python 0.9.3)", "items": items}


def main(argv: List[str]) -> int:
    md = argv[1] if len(argv) > 1 else DEFAULT_MD
    out = argv[2] if len(argv) > 2 else DEFAULT_JSON
    with open(md, encoding="utf-8") as f:
        inventory = parse(f.read())
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        # one item per line: readable diffs when katcp-api.md changes
        f.write('{{"source": {},\n "items": [\n'.format(json.dumps(inventory["source"])))
        f.write(",\n".join("  " + json.dumps(item, sort_keys=True) for item in inventory["items"]))
        f.write("\n ]}\n")
    print(f"wrote {len(inventory['items'])} items to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
