"""katcp: control and monitor instruments over KATCP (and NCP)."""

from .version import VERSION, VERSION_STR, __version__

__all__ = ["VERSION", "VERSION_STR", "__version__"]
