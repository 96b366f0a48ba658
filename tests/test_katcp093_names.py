"""Every public name katcp-python 0.9.3 exposes in each module exists in ours.

``tests/data/katcp093_names.json`` is ``dir(module)`` of katcp-python 0.9.3 (public names, not
only ``__all__``) restricted to katcp's own classes, functions and constants, written by
``tests/_make_katcp093_names.py`` run in a katcp-python 0.9.3 environment.  Real code imports
names from the module where katcp-python happened to have them (e.g.
``from katcp.resource_client import IOLoopThreadWrapper``), so each must import from ours too.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "data", "katcp093_names.json"), encoding="utf-8") as _f:
    NAMES = json.load(_f)["modules"]

#: Names deliberately not provided: "module.name" -> reason (also on doc/differences.rst).
EXCEPTIONS = {
    f"{module}.PY2": "python-future's Python-2 flag; this package is Python 3 only"
    for module in ("katcp.resource", "katcp.resource_client", "katcp.sampling")
}

CASES = [
    pytest.param(
        module, name, kind, id=f"{module}.{name}",
        marks=[pytest.mark.skip(reason=EXCEPTIONS[f"{module}.{name}"])]
        if f"{module}.{name}" in EXCEPTIONS else [],
    )
    for module, names in sorted(NAMES.items())
    for name, kind in sorted(names.items())
]


@pytest.mark.parametrize("module, name, kind", CASES)
def test_name_exists(module, name, kind):
    mod = importlib.import_module(module)
    assert hasattr(mod, name), f"{module} lacks {name} ({kind}) that katcp-python 0.9.3 has"
    obj = getattr(mod, name)
    if kind == "class":
        assert inspect.isclass(obj), f"{module}.{name} is {obj!r}, not a class"
    elif kind == "function":
        assert callable(obj), f"{module}.{name} is {obj!r}, not callable"


def test_inventory_covers_the_modules():
    assert "katcp.resource_client" in NAMES and "katcp.sensortree" in NAMES
    assert NAMES["katcp.resource_client"]["IOLoopThreadWrapper"] == "class"
    assert NAMES["katcp.resource_client"]["KATCPSensorError"] == "class"


def test_resource_client_reexports_are_the_same_objects():
    from katcp import ioloop_manager, resource, resource_client

    assert resource_client.IOLoopThreadWrapper is ioloop_manager.IOLoopThreadWrapper
    assert resource_client.KATCPSensorError is resource.KATCPSensorError
