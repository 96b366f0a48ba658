"""Write the public names each katcp-python 0.9.3 module exposes, for ``test_katcp093_names.py``.

Run with katcp-python 0.9.3's interpreter, from a directory where our ``katcp`` is not
importable (e.g. ``/tmp``)::

    cd /tmp && /path/to/katcp093-venv/bin/python /path/to/tests/_make_katcp093_names.py \
        /path/to/tests/data/katcp093_names.json

For each module ``katcp`` and ``katcp.<name>`` (not ``katcp.test``), every name of
``dir(module)`` not starting with ``_`` is listed, except names bound to modules (``tornado``,
``logging``, ...) and objects defined outside katcp (stdlib, tornado, ``future`` helpers,
``builtins``), which are not katcp's own API.  Each entry records the kind of object
(class/function/constant) so the test can tell what is missing.
"""

import importlib
import inspect
import json
import pkgutil
import sys
import types
import unittest.mock

# katcp-python's testutils imports the old `mock` backport; the stdlib module is the same API.
sys.modules.setdefault("mock", unittest.mock)
# ... and its tornado 4.5 testing module uses ABC aliases Python 3.10 removed from collections.
import collections  # noqa: E402
import collections.abc  # noqa: E402

for _abc in ("MutableMapping", "Mapping", "MutableSet", "Sequence", "Callable", "Iterable"):
    if not hasattr(collections, _abc):
        setattr(collections, _abc, getattr(collections.abc, _abc))

import katcp  # noqa: E402


def _kind(obj):
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "constant"


def _is_katcps_own(obj):
    if isinstance(obj, types.ModuleType):
        return False
    module = getattr(obj, "__module__", None)
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return bool(module) and (module == "katcp" or module.startswith("katcp."))
    if callable(obj) and module is not None and not str(module).startswith("katcp"):
        return False
    # Constants: plain values defined in the module (ints, strings, tuples, dicts...).
    # Instances of foreign classes (loggers, typing objects) are not katcp's API.
    cls_module = type(obj).__module__
    return cls_module in ("builtins",) or cls_module.startswith("katcp")


def main(out_path):
    names = {}
    modules = ["katcp"] + [
        "katcp." + m.name for m in pkgutil.iter_modules(katcp.__path__) if m.name != "test"
    ]
    for modname in modules:
        module = importlib.import_module(modname)
        entries = {}
        for name in dir(module):
            if name.startswith("_"):
                continue
            obj = getattr(module, name)
            if _is_katcps_own(obj):
                entries[name] = _kind(obj)
        names[modname] = dict(sorted(entries.items()))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(
            {"generator": "tests/_make_katcp093_names.py", "katcp_version": katcp.__version__,
             "modules": names},
            f, indent=1, sort_keys=True,
        )
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
