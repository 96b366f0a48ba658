"""Every public module has a page in the API reference (doc/api/*.rst).

Public: every module or package under ``katcp/`` whose name does not start with an
underscore, at any depth (``katcp.ncp.blocking``, ``katcp.tools.cmd``...).
"""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def public_modules():
    found = {"katcp"}
    package = os.path.join(ROOT, "katcp")
    for path in glob.glob(os.path.join(package, "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        if rel[-1] == "__init__":
            rel = rel[:-1]
        if any(part.startswith("_") for part in rel):
            continue
        found.add(".".join(rel))
    return found


def documented_modules():
    names = set()
    for path in glob.glob(os.path.join(ROOT, "doc", "api", "*.rst")):
        with open(path, encoding="utf-8") as f:
            names.update(re.findall(r"^\.\. automodule:: (\S+)", f.read(), re.M))
    return names


def test_every_public_module_is_in_the_api_reference():
    modules = public_modules()
    assert {"katcp.ncp.blocking", "katcp.tools.cmd", "katcp.server"} <= modules
    missing = sorted(modules - documented_modules())
    assert not missing, f"public modules without an automodule in doc/api/: {missing}"


def test_every_api_page_is_in_the_toctree():
    with open(os.path.join(ROOT, "doc", "api", "index.rst"), encoding="utf-8") as f:
        toctree = set(re.findall(r"^   (\S+)$", f.read(), re.M))
    pages = {os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, "doc", "api", "*.rst"))}
    assert pages - {"index"} <= toctree
