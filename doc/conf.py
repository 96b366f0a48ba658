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


# -- ``.. bench-plots:: DIR``: show the benchmark plots bench/plot.py wrote, if any ----------
# The PNGs are build output (never committed), so the page must build with -W without them.

from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive  # noqa: E402


class BenchPlots(Directive):
    required_arguments = 1

    def run(self):
        env = self.state.document.settings.env
        rel_dir = self.arguments[0]
        abs_dir = os.path.normpath(os.path.join(os.path.dirname(env.doc2path(env.docname)),
                                                rel_dir))
        names = sorted(n for n in os.listdir(abs_dir) if n.endswith(".png")) \
            if os.path.isdir(abs_dir) else []
        if not names:
            text = "No plots yet: run bench/plot.py as shown above, then rebuild the docs."
            return [nodes.paragraph(text=text)]
        return [nodes.image(uri=f"{rel_dir}/{name}", alt=name) for name in names]


def setup(app):
    app.add_directive("bench-plots", BenchPlots)
