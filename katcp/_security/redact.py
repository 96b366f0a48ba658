"""Keep secrets out of logs: the password of ``?login`` is never written anywhere.

Servers and clients log messages (at debug level, or when sending fails); a message with
secret arguments is logged through :func:`loggable` instead, which hides them.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

__all__ = ["REDACTED", "SECRET_ARGUMENTS", "loggable", "redact_arguments"]

#: Requests with secret arguments: name -> index of the first secret argument.
SECRET_ARGUMENTS = {"login": 1}
#: What a secret argument is replaced with.
REDACTED = "<redacted>"


def redact_arguments(name: str, arguments: Sequence[Any]) -> list:
    """``arguments`` with the secret ones (the password of ``?login``) replaced.

    Parameters
    ----------
    name : str
        Request name.
    arguments : sequence
        Its arguments (bytes or str).

    Returns
    -------
    arguments : list
        A copy, safe to log.
    """
    first_secret = SECRET_ARGUMENTS.get(name)
    args = list(arguments)
    if first_secret is None:
        return args
    return args[:first_secret] + [REDACTED] * len(args[first_secret:])


def loggable(msg: Any) -> bytes:
    """The wire form of a :class:`~katcp.core.Message`, secrets replaced, for a log.

    Parameters
    ----------
    msg : katcp.core.Message
        Any message.

    Returns
    -------
    line : bytes
        ``bytes(msg)``, or that of a copy with :data:`REDACTED` for each secret argument.
    """
    first_secret = SECRET_ARGUMENTS.get(msg.name)
    if first_secret is None:
        return bytes(msg)
    args = list(msg.arguments)
    safe = copy.copy(msg)
    safe.arguments = args[:first_secret] + [REDACTED.encode()] * len(args[first_secret:])
    return bytes(safe)
