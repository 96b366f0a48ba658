"""The package version, in the three forms katcp-python users read."""

__version__ = "1.0.0a1"

#: Five-element version tuple (major, minor, micro, release level, serial), as in ``sys.version_info``.
VERSION = (1, 0, 0, "alpha", 1)

#: The version as a string.
VERSION_STR = __version__
