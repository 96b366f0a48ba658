"""The house rules of the package tree (``doc/architecture.rst``), checked on the source.

- No import cycles between katcp modules, counting imports inside functions and the lazy
  imports of a module ``__getattr__`` (``importlib.import_module`` with a literal name).
- Imports go down the layers: a module never imports one of a higher layer.  A public facade
  module sits just above the private packages it re-exports (``katcp.connection`` is as low
  as ``katcp._transport``), and private code never imports a facade.
- At most five private modules flat in ``katcp/``; every other module lives in the folder of
  its layer.
- Every name in a public facade's ``__all__`` resolves.

The import graph is read with :mod:`ast`, so nothing is imported to build it and an import
hidden in a function or behind ``if TYPE_CHECKING`` counts like any other.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from typing import Dict, List, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "katcp")

#: Layer of each subpackage, from the architecture page (a higher number sits higher).
#: Modules of one layer may import each other; test support and tools sit above L4.
SUBPACKAGE_LAYERS: Dict[str, float] = {
    "_protocol": 1,  # L0/L1: line grammar and codec, messages, kattypes, sensors
    "_aio": 2,  # L2: loop-thread plumbing
    "_transport": 2,  # L2: the one connection class, listen, dial
    "_server": 3,  # L3: endpoints
    "_client": 3,
    "_security": 3,  # beside the servers: passwords, users, roles, audit, TLS, AccessControl
    "ncp": 3,
    "_resource": 4,  # L4: inspecting client, resources, containers
    "manager": 4,  # L4: the fleet behind one endpoint (and its config parser)
    "_testutils": 4.5,  # test support (public through katcp.testutils, katcp.fake_clients)
    "tools": 5,  # L5: console tools
    "exporter": 5,  # L5: the Prometheus exporter, built on the L4 clients
}
#: Public modules with an implementation of their own that import nothing from katcp.
LEAF_MODULES = {"katcp.version": 0, "katcp.compat": 0}
MAX_FLAT_PRIVATE = 5


def _modules() -> Dict[str, str]:
    """Dotted name -> path of every module of the katcp package."""
    mods = {}
    for dirpath, dirnames, filenames in os.walk(PACKAGE):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for filename in filenames:
            if filename.endswith(".py"):
                path = os.path.join(dirpath, filename)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return mods


def _resolve(package: str, level: int, module: str | None) -> str:
    """Absolute name of ``from <level dots><module> import ...`` inside `package`."""
    if not level:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - level + 1]
    return ".".join(base + ([module] if module else []))


def _lazy_import_target(node: ast.Call, package: str) -> str | None:
    """Module named by ``importlib.import_module("name"[, __name__])``, if literal."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args:
        return None
    first = node.args[0]
    if not isinstance(first, ast.Constant) or not isinstance(first.value, str):
        return None
    target = first.value
    if target.startswith("."):
        level = len(target) - len(target.lstrip("."))
        return _resolve(package, level, target.lstrip(".") or None)
    return target


def _import_graph() -> Dict[str, Set[str]]:
    """Module -> katcp modules it imports anywhere in its source."""
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        package = mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        deps: Set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names if alias.name in mods}
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(package, node.level, node.module)
                submodules = {f"{target}.{alias.name}" for alias in node.names}
                found = submodules & mods.keys()
                deps |= found
                # ``from pkg import submodule`` needs the submodule, not pkg's own names.
                if target in mods and len(found) < len(submodules):
                    deps.add(target)
            elif isinstance(node, ast.Call):
                target = _lazy_import_target(node, package)
                if target in mods:
                    deps.add(target)
        # A package's imports of its own submodules count: katcp.ncp <-> katcp.ncp.blocking
        # would be a cycle like any other.
        graph[mod] = deps - {mod}
    return graph


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def _is_facade(mod: str) -> bool:
    parts = mod.split(".")
    return mod == "katcp" or (
        len(parts) == 2 and not parts[1].startswith("_") and parts[1] not in SUBPACKAGE_LAYERS
        and mod not in LEAF_MODULES
    )


def _is_private(mod: str) -> bool:
    """In a private subpackage (``katcp._server.*``) or private flat (``katcp._x``).

    The tools (``katcp.tools._session`` included) are users of the public API.
    """
    parts = mod.split(".")
    return len(parts) > 1 and parts[1].startswith("_")


def _layer(mod: str, _seen: tuple = ()) -> float:
    if mod in LEAF_MODULES:
        return LEAF_MODULES[mod]
    if _is_facade(mod):
        # Just above what it re-exports (a cycle among facades is reported elsewhere).
        deps = [d for d in GRAPH[mod] if d not in _seen]
        return max((_layer(d, _seen + (mod,)) for d in deps), default=0)
    sub = mod.split(".")[1]
    if sub not in SUBPACKAGE_LAYERS:
        raise AssertionError(
            f"{mod} is in no layer: put it in a layer's folder, or give its folder a layer "
            "here and on the architecture page"
        )
    return SUBPACKAGE_LAYERS[sub]


GRAPH = _import_graph()


def test_the_graph_sees_the_package():
    # Guards the test itself: a broken resolver would find no edges and pass everything.
    assert "katcp._protocol.message" in GRAPH["katcp.core"]
    assert "katcp.ncp.blocking" in GRAPH["katcp.ncp"]  # the lazy import of its __getattr__
    assert len(GRAPH) > 50


def test_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join("  " + " <-> ".join(c) for c in cycles)


def test_imports_go_down_the_layers():
    upward = sorted(
        f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})"
        for mod, deps in GRAPH.items()
        for dep in deps
        if _layer(dep) > _layer(mod)
    )
    assert not upward, "imports that go up the layers:\n" + "\n".join("  " + u for u in upward)


def test_private_code_does_not_import_facades():
    # Facades are the public surface over the private packages; the implementation imports
    # the implementation, so that a facade never becomes a hidden middle layer.
    offenders = sorted(
        f"{mod} imports {dep}"
        for mod, deps in GRAPH.items()
        if _is_private(mod)
        for dep in deps
        if _is_facade(dep)
    )
    assert not offenders, "\n".join(offenders)


def test_leaf_modules_import_nothing_from_katcp():
    for mod in LEAF_MODULES:
        assert not GRAPH[mod], f"{mod} imports {sorted(GRAPH[mod])}"


def test_every_module_has_a_layer():
    for mod in GRAPH:
        _layer(mod)


def test_few_private_modules_flat_in_the_package():
    flat = sorted(
        name for name in os.listdir(PACKAGE)
        if name.startswith("_") and name.endswith(".py") and name != "__init__.py"
    )
    assert len(flat) <= MAX_FLAT_PRIVATE, f"private modules flat in katcp/: {flat}"


FACADES = sorted(mod for mod in GRAPH if _is_facade(mod) or mod == "katcp.ncp")


@pytest.mark.parametrize("name", FACADES)
def test_facade_all_names_resolve(name):
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    if name not in ("katcp.version",):
        assert names is not None, f"{name} has no __all__"
    missing = [n for n in names or () if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names that do not resolve: {missing}"
