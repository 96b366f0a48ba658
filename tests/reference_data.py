"""Locate the shared protocol reference data (vectors, captures) for the tests.

The canonical copies live in ``../shared/reference/`` beside the repository; a copy is kept
in ``tests/data/reference/`` so that the suite also runs from an sdist or a lone clone.
"""

import os

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def reference_path(name: str) -> str:
    """Return the path of ``name`` (relative to ``reference/``), preferring ``../shared``."""
    for base in (os.path.join(ROOT, os.pardir, "shared", "reference"),
                 os.path.join(TESTS, "data", "reference")):
        path = os.path.join(base, name)
        if os.path.exists(path):
            return os.path.normpath(path)
    raise FileNotFoundError(f"reference data {name!r} not found in ../shared or tests/data")
