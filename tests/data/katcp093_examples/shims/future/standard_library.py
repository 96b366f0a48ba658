"""python-future's ``standard_library``: nothing to alias on Python 3."""


def install_aliases():
    """Python 3 already has the standard library names."""
