"""API-surface conformance: our package against katcp-python 0.9.3's public inventory.

Every module, class, function, method, property, attribute and constant listed in
``shared/reference/katcp-api.md`` (extracted to ``tests/data/katcp_api_inventory.json`` by
``tests/_make_api_inventory.py``) is one test id, so a failing run reads as a gap list::

    .venv/bin/python -m pytest tests/test_api_surface.py -q -rs

Rules for callables (constructor, functions, methods): parameters are compared by name, order,
kind and default, ignoring ``self``/``cls``.  Our callable may add trailing optional (or
keyword-only) parameters, may make a required parameter optional, and may accept ``*args`` /
``**kwargs`` where katcp-python did not, but must still name katcp-python's parameters (a
``(*args, **kwargs)`` forwarder of ours hides them from users and fails).  A katcp-python
``(*args, **kwargs)`` forwarder matches any signature of ours.  ``**kwargs`` in katcp-python is satisfied by ``**kwargs`` or keyword-only parameters.
Literal defaults must be equal; other defaults (loggers, lambdas, classes) must merely exist.

Items we deliberately do not reproduce carry an ``exception`` reason in the inventory and are
reported as skipped with that reason.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from typing import Any, Dict, List

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
INVENTORY_JSON = os.path.join(HERE, "data", "katcp_api_inventory.json")
REFERENCE_MD = os.path.join(ROOT, "..", "shared", "reference", "katcp-api.md")

with open(INVENTORY_JSON, encoding="utf-8") as _f:
    INVENTORY: Dict[str, Any] = json.load(_f)
ITEMS: List[Dict[str, Any]] = INVENTORY["items"]

_NO_VALUE = object()


# --------------------------------------------------------------------------- helpers


def _params(items: List[Dict[str, Any]]) -> List[Any]:
    out = []
    for item in items:
        marks = []
        if item.get("exception"):
            marks.append(pytest.mark.skip(reason="documented exception: " + item["exception"]))
        out.append(pytest.param(item, id=item["id"], marks=marks))
    return out


def _literal(text: str | None) -> Any:
    """Python value of a reference default/value text, or `_NO_VALUE` if not a literal."""
    if text is None:
        return _NO_VALUE
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, TypeError, RecursionError):
        return _NO_VALUE


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - report any import failure as the gap
        pytest.fail(f"cannot import {module}: {type(exc).__name__}: {exc}")


def _get_class(item: Dict[str, Any]) -> type:
    mod = _import(item["module"])
    cls = getattr(mod, item["cls"], None)
    if not isinstance(cls, type):
        pytest.fail(f"class {item['module']}.{item['cls']} missing (needed for {item['name']})")
    return cls


def _static_lookup(cls: type, name: str) -> Any:
    """The raw class-level object for `name` (no descriptor binding), or `_NO_VALUE`."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    slots = getattr(cls, "__slots__", ())
    if name in slots:
        return _NO_VALUE
    return _NO_VALUE


def _assigned_on_instances(cls: type, name: str) -> bool:
    """True if some class of ours in the MRO sets ``self.<name>`` (plain instance attribute)."""
    pattern = re.compile(rf"\bself\.{re.escape(name)}\s*(?::[^=\n]*)?=(?!=)")
    for klass in cls.__mro__:
        if not getattr(klass, "__module__", "").startswith("katcp"):
            continue
        if name in getattr(klass, "__slots__", ()):
            return True
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if pattern.search(source):
            return True
        # object.__setattr__(self, "name", ...) / setattr(self, attr, ...) over quoted names
        if re.search(r"setattr__?\(self, ", source) and re.search(
                rf"[\"']{re.escape(name)}[\"']", source):
            return True
    return False


def _signature(obj: Any, what: str) -> inspect.Signature:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError) as exc:
        pytest.fail(f"{what}: no introspectable signature ({exc})")


def _drop_first(sig: inspect.Signature) -> List[inspect.Parameter]:
    params = list(sig.parameters.values())
    if params and params[0].kind in (inspect.Parameter.POSITIONAL_ONLY,
                                     inspect.Parameter.POSITIONAL_OR_KEYWORD):
        params = params[1:]
    return params


def _fmt(params: List[inspect.Parameter]) -> str:
    return "(" + ", ".join(str(p) for p in params) + ")"


def _fmt_expected(expected: List[Dict[str, Any]]) -> str:
    parts = []
    for p in expected:
        if p["kind"] == "VAR_POSITIONAL":
            parts.append("*" + p["name"])
        elif p["kind"] == "VAR_KEYWORD":
            parts.append("**" + p["name"])
        elif "default" in p:
            parts.append(f"{p['name']}={p['default']}")
        else:
            parts.append(p["name"])
    return "(" + ", ".join(parts) + ")"


def compare_params(expected: List[Dict[str, Any]] | None,
                   actual: List[inspect.Parameter]) -> List[str]:
    """Problems making `actual` incompatible with katcp-python's `expected` parameters."""
    P = inspect.Parameter
    if expected is None:
        return []
    kinds = [p["kind"] for p in expected]
    if kinds == ["VAR_POSITIONAL", "VAR_KEYWORD"]:
        return []  # a pure forwarder in katcp-python: any signature is acceptable
    errors: List[str] = []
    has_var_pos = any(p.kind == P.VAR_POSITIONAL for p in actual)
    has_var_kw = any(p.kind == P.VAR_KEYWORD for p in actual)
    positional = [p for p in actual if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name: p for p in actual}
    exp_pos = [p for p in expected if p["kind"] == "POSITIONAL_OR_KEYWORD"]
    for i, exp in enumerate(exp_pos):
        if i >= len(positional):
            if exp["name"] in by_name and by_name[exp["name"]].kind == P.KEYWORD_ONLY:
                errors.append(f"parameter {exp['name']!r} is keyword-only, expected positional "
                              f"#{i}")
            else:
                errors.append(f"missing parameter #{i} {exp['name']!r}")
            continue
        act = positional[i]
        if act.name != exp["name"]:
            errors.append(f"parameter #{i} is {act.name!r}, expected {exp['name']!r}")
            continue
        if act.kind == P.POSITIONAL_ONLY:
            errors.append(f"parameter {act.name!r} is positional-only")
        if "default" in exp:
            if act.default is P.empty:
                errors.append(f"parameter {act.name!r} has no default, expected "
                              f"{exp['default']}")
            else:
                want = _literal(exp["default"])
                logger = re.fullmatch(r"logging\.getLogger\(\"([\w.]+)\"\)", exp["default"])
                if logger and not (act.default is None or getattr(
                        act.default, "name", None) == logger.group(1)):
                    errors.append(f"parameter {act.name!r} default {act.default!r}, expected "
                                  f"{exp['default']} (or None meaning that logger)")
                if want is not _NO_VALUE and not _defaults_equal(want, act.default):
                    errors.append(f"parameter {act.name!r} default {act.default!r}, expected "
                                  f"{exp['default']}")
    # extra positional parameters of ours must be optional
    for act in positional[len(exp_pos):]:
        if act.default is P.empty:
            errors.append(f"extra required parameter {act.name!r}")
    if "VAR_POSITIONAL" in kinds:
        if not has_var_pos:
            errors.append("expected *args (variable positional arguments)")
        elif len(positional) > len(exp_pos):
            errors.append("extra positional parameters before *args would swallow arguments: "
                          + ", ".join(p.name for p in positional[len(exp_pos):]))
    if "VAR_KEYWORD" in kinds:
        if not has_var_kw and not any(p.kind == P.KEYWORD_ONLY for p in actual):
            errors.append("expected **kwargs (or keyword-only parameters)")
    for act in actual:
        if act.kind == P.KEYWORD_ONLY and act.default is P.empty:
            errors.append(f"extra required keyword-only parameter {act.name!r}")
    return errors


def _defaults_equal(want: Any, got: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got or (want == got and type(want) is type(got))
    if want is None or got is None:
        return want is got
    try:
        return bool(want == got)
    except Exception:  # noqa: BLE001
        return False


def _check_callable_sig(item: Dict[str, Any], params: List[inspect.Parameter]) -> None:
    errors = compare_params(item.get("params"), params)
    if errors:
        pytest.fail(f"{item['id']}{_fmt(params)} vs katcp-python "
                    f"{item['name']}{_fmt_expected(item['params'])}: " + "; ".join(errors))


def _check_value(what: str, got: Any, text: str | None) -> None:
    """Compare `got` with a reference value text where that is meaningful."""
    if text is None:
        return
    m = re.fullmatch(r"re\.compile\((.*)\)", text)
    if m:
        pattern = _literal(m.group(1))
        if pattern is not _NO_VALUE:
            assert getattr(got, "pattern", None) == pattern, (
                f"{what} pattern {getattr(got, 'pattern', got)!r}, expected {pattern!r}")
        return
    m = re.fullmatch(r"<class '([\w.]+)'>", text)
    if m:
        short = m.group(1).rsplit(".", 1)[-1]
        assert isinstance(got, type), f"{what} is {got!r}, expected a class like {text}"
        assert short in [k.__name__ for k in got.__mro__], (
            f"{what} is {got!r}, expected {text} (or a subclass)")
        return
    m = re.fullmatch(r"<([\w.]+) object>", text)
    if m:
        short = m.group(1).rsplit(".", 1)[-1]
        assert short in [k.__name__ for k in type(got).__mro__], (
            f"{what} is {got!r}, expected an instance of {m.group(1)}")
        return
    want = _literal(text)
    if want is _NO_VALUE:
        return
    assert _defaults_equal(want, got) or want == got, f"{what} = {got!r}, expected {text}"


# --------------------------------------------------------------------------- freshness


def test_inventory_matches_reference() -> None:
    """The checked-in JSON is what `_make_api_inventory.py` makes from katcp-api.md."""
    if not os.path.exists(REFERENCE_MD):
        pytest.skip("shared/reference/katcp-api.md not present; using checked-in inventory")
    sys.path.insert(0, HERE)
    try:
        import _make_api_inventory
    finally:
        sys.path.remove(HERE)
    with open(REFERENCE_MD, encoding="utf-8") as f:
        fresh = _make_api_inventory.parse(f.read())
    assert fresh == INVENTORY, "regenerate: .venv/bin/python tests/_make_api_inventory.py"


def test_inventory_is_substantial() -> None:
    kinds = {item["kind"] for item in ITEMS}
    assert {"module", "class", "method", "function", "constant", "property"} <= kinds
    assert len(ITEMS) > 800


# --------------------------------------------------------------------------- modules


@pytest.fixture(scope="module")
def modules_after_import_katcp() -> List[str]:
    """Names in sys.modules after a bare ``import katcp`` in a fresh interpreter."""
    code = "import sys, katcp; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _by_kind(*kinds: str) -> List[Dict[str, Any]]:
    return [item for item in ITEMS if item["kind"] in kinds]


@pytest.mark.parametrize("item", _params(_by_kind("module", "explicit_module")))
def test_module(item: Dict[str, Any]) -> None:
    _import(item["module"])


@pytest.mark.parametrize("item", _params(_by_kind("submodule")))
def test_submodule_imported_by_package(item: Dict[str, Any],
                                       modules_after_import_katcp: List[str]) -> None:
    assert item["id"] in modules_after_import_katcp, f"`import katcp` does not import {item['id']}"
    katcp = _import("katcp")
    assert inspect.ismodule(getattr(katcp, item["name"], None))


@pytest.mark.parametrize("item", _params(_by_kind("explicit_module")))
def test_explicit_module_not_imported_by_package(item: dict[str, Any],
                                                 modules_after_import_katcp: list[str]) -> None:
    """As in katcp-python, test helpers load only when imported explicitly."""
    assert item["module"] not in modules_after_import_katcp


def test_testutils_without_third_party_mock() -> None:
    """katcp.testutils must import with unittest.mock alone (katcp-api.md discrepancy note)."""
    code = ("import sys; sys.modules['mock'] = None; import katcp.testutils, katcp.fake_clients; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("item", _params(_by_kind("reexport")))
def test_top_level_reexport(item: Dict[str, Any]) -> None:
    katcp = _import("katcp")
    assert hasattr(katcp, item["name"]), f"katcp.{item['name']} missing"
    home = _import(item["defined_in"])
    assert hasattr(home, item["name"]), f"{item['defined_in']}.{item['name']} missing"
    assert getattr(katcp, item["name"]) is getattr(home, item["name"]), (
        f"katcp.{item['name']} is not {item['defined_in']}.{item['name']}")


# --------------------------------------------------------------------------- module level


@pytest.mark.parametrize("item", _params([i for i in _by_kind("constant") if not i.get("cls")]))
def test_module_constant(item: Dict[str, Any]) -> None:
    mod = _import(item["module"])
    assert hasattr(mod, item["name"]), f"{item['id']} missing"
    value = getattr(mod, item["name"])
    if item.get("value_type"):
        assert type(value).__name__ == item["value_type"], (
            f"{item['id']} is {type(value).__name__}, expected {item['value_type']}")
    _check_value(item["id"], value, item.get("value"))


@pytest.mark.parametrize("item", _params(_by_kind("function")))
def test_function(item: Dict[str, Any]) -> None:
    mod = _import(item["module"])
    func = getattr(mod, item["name"], None)
    assert func is not None, f"{item['id']} missing"
    assert callable(func), f"{item['id']} is not callable"
    _check_callable_sig(item, list(_signature(func, item["id"]).parameters.values()))


@pytest.mark.parametrize("item", _params(_by_kind("class")))
def test_class(item: Dict[str, Any]) -> None:
    mod = _import(item["module"])
    cls = getattr(mod, item["name"], None)
    assert cls is not None, f"{item['id']} missing"
    assert isinstance(cls, type), f"{item['id']} is {cls!r}, not a class"
    mro_names = [k.__name__ for k in cls.__mro__]
    for base in item.get("bases", []):
        if base not in ("object", item["name"]):
            assert base in mro_names[1:], (
                f"{item['id']} should derive from {base}; MRO is {mro_names}")
    expected = item.get("params")
    if expected is None or [p["kind"] for p in expected] == ["VAR_POSITIONAL", "VAR_KEYWORD"]:
        return  # undocumented / pure forwarder: anything goes (builtins may not introspect)
    if issubclass(cls, type):  # metaclass: use its own __init__ or __new__, not type's
        own = [k for k in cls.__mro__ if k is not type and k is not object]
        init = next((vars(k)[m] for k in own for m in ("__init__", "__new__") if m in vars(k)),
                    None)
        if init is None:
            pytest.fail(f"{item['id']} defines neither __init__ nor __new__")
        params = _drop_first(_signature(init, item["id"]))
    else:
        params = list(_signature(cls, item["id"]).parameters.values())
    _check_callable_sig(item, params)


# --------------------------------------------------------------------------- class members


@pytest.mark.parametrize("item", _params(_by_kind("method", "classmethod", "staticmethod")))
def test_method(item: Dict[str, Any]) -> None:
    cls = _get_class(item)
    raw = _static_lookup(cls, item["name"])
    assert raw is not _NO_VALUE, f"{item['id']} missing"
    if isinstance(raw, property):
        pytest.fail(f"{item['id']} is a property, expected a {item['kind']}")
    if item["kind"] == "method":
        if isinstance(raw, (classmethod, staticmethod)):
            params = list(_signature(getattr(cls, item["name"]), item["id"]).parameters.values())
        else:
            assert callable(raw) or hasattr(raw, "__get__"), f"{item['id']} is not callable"
            params = _drop_first(_signature(raw, item["id"]))
    else:
        assert isinstance(raw, (classmethod, staticmethod)), (
            f"{item['id']} must be callable on the class ({item['kind']}), found {type(raw)}")
        params = list(_signature(getattr(cls, item["name"]), item["id"]).parameters.values())
    _check_callable_sig(item, params)


@pytest.mark.parametrize("item", _params(_by_kind("property", "attr")))
def test_attribute(item: Dict[str, Any]) -> None:
    cls = _get_class(item)
    raw = _static_lookup(cls, item["name"])
    if raw is _NO_VALUE:
        assert _assigned_on_instances(cls, item["name"]), (
            f"{item['id']} missing (neither a class attribute, slot nor set as self."
            f"{item['name']})")
        return
    if inspect.isfunction(raw) or isinstance(raw, (classmethod, staticmethod)):
        pytest.fail(f"{item['id']} is a method, expected {item['kind']} (attribute access)")
    if item["kind"] == "property" and item.get("writable") and isinstance(raw, property):
        assert raw.fset is not None, f"{item['id']} must be writable"
    if item["kind"] == "attr" and item.get("value") not in (None, "slot") and not hasattr(
            raw, "__get__"):
        _check_value(item["id"], raw, item.get("value"))


@pytest.mark.parametrize("item", _params([i for i in _by_kind("constant") if i.get("cls")]))
def test_class_constant(item: Dict[str, Any]) -> None:
    cls = _get_class(item)
    assert hasattr(cls, item["name"]), f"{item['id']} missing"
    _check_value(item["id"], getattr(cls, item["name"]), item.get("value"))


# --------------------------------------------------------------------------- self-test


def _sig(func: Any) -> List[inspect.Parameter]:
    return list(inspect.signature(func).parameters.values())


def _exp(text: str) -> List[Dict[str, Any]] | None:
    sys.path.insert(0, HERE)
    try:
        import _make_api_inventory
    finally:
        sys.path.remove(HERE)
    return _make_api_inventory.parse_params(text)


def test_compare_params_rules() -> None:
    """The comparison itself detects renames, reorders, lost defaults and missing varargs."""
    def ok(host, port, tb_limit=20, logger=None, extra=None):  # noqa: ANN001, ANN202
        pass

    def renamed(host, prt, tb_limit=20):  # noqa: ANN001, ANN202
        pass

    def no_default(host, port, tb_limit):  # noqa: ANN001, ANN202
        pass

    def wrong_default(host, port, tb_limit=10):  # noqa: ANN001, ANN202
        pass

    def no_varargs(name, mid=None):  # noqa: ANN001, ANN202
        pass

    def varargs(name, *args, mid=None):  # noqa: ANN001, ANN202
        pass

    def swallow(name, extra, *args, **kwargs):  # noqa: ANN001, ANN202
        pass

    ref = _exp('host, port, tb_limit=20, logger=logging.getLogger("katcp.server")')
    assert compare_params(ref, _sig(ok)) == []
    assert compare_params(ref, _sig(renamed))
    assert compare_params(ref, _sig(no_default))
    assert compare_params(ref, _sig(wrong_default))
    ref = _exp("cls, name, *args, **kwargs")
    assert compare_params(ref, _sig(varargs)) == []
    assert compare_params(ref, _sig(no_varargs))
    assert compare_params(ref, _sig(swallow))
    assert compare_params(_exp("*args, **kwargs"), _sig(no_varargs)) == []
    assert compare_params(_exp("..."), _sig(no_varargs)) == []
