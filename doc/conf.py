"""Sphinx configuration for the katcp documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from katcp.version import __version__  # noqa: E402

project = "katcp"
author = "the katcp developers"
copyright = "2026, the katcp developers"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"
suppress_warnings = ["ref.python"]
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
