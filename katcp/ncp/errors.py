"""NCP errors and warnings (the same hierarchy as ncplib's).

::

    NCPError(Exception)
    ├── NetworkError(NCPError, OSError)
    ├── AuthenticationError(NCPError)
    ├── NetworkTimeoutError(NCPError, asyncio.TimeoutError)
    ├── ConnectionClosed(NCPError, EOFError)
    ├── CommandError(NCPError)        # attributes: field, detail, code
    └── DecodeError(NCPError, ValueError)
    NCPWarning(Warning)
    ├── CommandWarning(NCPWarning)    # attributes: field, detail, code
    └── DecodeWarning(NCPWarning)
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = [
    "NCPError",
    "NetworkError",
    "AuthenticationError",
    "NetworkTimeoutError",
    "ConnectionClosed",
    "CommandError",
    "DecodeError",
    "NCPWarning",
    "CommandWarning",
    "DecodeWarning",
    "EncodeRangeError",
]


class _CommandMixin(Exception):
    """Shared constructor of :class:`CommandError` and :class:`CommandWarning`."""

    field: Any
    detail: str | None
    code: int | None

    def __init__(self, field: Any, detail: str | None, code: int | None) -> None:
        super().__init__(f"{field.packet_type} {field.name} {detail!r} (code {code})")
        self.field = field
        self.detail = detail
        self.code = code


class NCPError(Exception):
    """Base class for all exceptions raised by :mod:`katcp.ncp`."""


class NetworkError(NCPError, OSError):
    """Raised when an NCP connection cannot connect, or disconnects unexpectedly."""


class AuthenticationError(NCPError):
    """Raised when an NCP connection cannot authenticate."""


class NetworkTimeoutError(NCPError, asyncio.TimeoutError):
    """Raised when an NCP connection times out while performing network activity."""


class ConnectionClosed(NCPError, EOFError):
    """Raised when an NCP connection is closed gracefully."""


class CommandError(_CommandMixin, NCPError):
    """Raised by the NCP client when the server sends a field with an ``ERRO``/``ERRC`` param.

    Disable with ``auto_erro=False`` in :func:`katcp.ncp.connect`.

    Attributes
    ----------
    field : Field
        The field that triggered the error.
    detail : str or None
        The human-readable message from the server (the ``ERRO`` param).
    code : int or None
        The error code from the server (the ``ERRC`` param).
    """


class DecodeError(NCPError, ValueError):
    """Raised when a non-recoverable error is found in an NCP packet."""


class NCPWarning(Warning):
    """Base class for all warnings issued by :mod:`katcp.ncp`."""


class CommandWarning(_CommandMixin, NCPWarning):
    """Issued by the NCP client when the server sends a field with a ``WARN``/``WARC`` param.

    Disable with ``auto_warn=False`` in :func:`katcp.ncp.connect`.

    Attributes
    ----------
    field : Field
        The field that triggered the warning.
    detail : str or None
        The human-readable message from the server (the ``WARN`` param).
    code : int or None
        The warning code from the server (the ``WARC`` param).
    """


class DecodeWarning(NCPWarning):
    """Issued when a recoverable oddity is found in an NCP packet."""


class EncodeRangeError(ValueError, OverflowError):
    """A value does not fit the NCP type it must be encoded as.

    It is both a :class:`ValueError` (what the ncplib docs promise) and an
    :class:`OverflowError` (what ncplib 6.1.0 actually raises), so code written for either
    keeps working.
    """
