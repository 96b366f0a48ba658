"""The audit log: who did what, one line per event, on the ``katcp.audit`` logger.

A line looks like::

    2026-12-07T01:40:00.123456Z user=alice addr=127.0.0.1:51234 event=request request=halt status=ok

The time (UTC, ISO 8601) comes first, then ``key=value`` fields in a fixed order:
``user``, ``addr``, ``event``, ``request``, ``status`` and, when there is one, ``detail``.
A missing value is ``-``. Values are escaped as KATCP escapes message arguments
(``\\_`` for a space, ``\\n``, ``\\r``, ``\\t``, ``\\e``, ``\\0``, ``\\\\``, ``\\@`` for an
empty value; other unprintable characters as ``\\xHH``/``\\uHHHH``/``\\UHHHHHHHH``; a
literal ``-`` as ``\\-``), so whatever a client sends (a user name with a newline, say)
stays inside its one field of its one line. Long values are cut (:data:`MAX_VALUE_LENGTH`).

The API takes request *names*, never arguments, so a password cannot reach the log through
it. :func:`open_audit_log` sends the lines to a file as well.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Union

__all__ = [
    "AUDIT_LOGGER_NAME",
    "MAX_VALUE_LENGTH",
    "audit_event",
    "close_audit_log",
    "escape_value",
    "format_event",
    "open_audit_log",
]

AUDIT_LOGGER_NAME = "katcp.audit"
audit_logger = logging.getLogger(AUDIT_LOGGER_NAME)

#: Longest value written, in characters before escaping; longer ones end in ``...``.
MAX_VALUE_LENGTH = 200

_ESCAPES = {
    "\\": "\\\\",
    " ": "\\_",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\x1b": "\\e",
    "\0": "\\0",
}


def escape_value(value: object) -> str:
    """One field's value, escaped so that it holds no space, line break or control char.

    Parameters
    ----------
    value : object
        The value (None: ``-``; bytes are decoded as UTF-8 with replacement; anything else
        goes through :func:`str`).

    Returns
    -------
    text : str
        Printable, without spaces, never empty.
    """
    if value is None:
        return "-"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value)
    if text == "":
        return "\\@"
    if text == "-":
        return "\\-"
    if len(text) > MAX_VALUE_LENGTH:
        text = text[:MAX_VALUE_LENGTH] + "..."
    out = []
    for ch in text:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable() and ch != "\u00a0":
            out.append(ch)
        else:
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    return "".join(out)


def _format_addr(addr: object) -> object:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return addr


def format_event(event: str, *, user: str | None = None, addr: object = None,
                 request: str | None = None, status: str | None = None,
                 detail: str | None = None,
                 when: datetime.datetime | None = None) -> str:
    """The audit line for one event.

    Parameters
    ----------
    event : str
        What happened, e.g. ``login``, ``login-timeout``, ``request``, ``refused``.
    user : str, optional
        Who did it (the user name, or the name attempted for a failed login).
    addr : str or tuple, optional
        Peer address, ``"host:port"`` or a ``(host, port, ...)`` tuple.
    request : str, optional
        Request name (never its arguments).
    status : str, optional
        Outcome: the reply's status (``ok``, ``fail``...) or e.g. ``closed``.
    detail : str, optional
        More about it (a failure reason, the role needed...).
    when : datetime.datetime, optional
        Time of the event (default now; a naive time is taken as UTC).

    Returns
    -------
    line : str
        Without a line terminator.
    """
    if when is None:
        when = datetime.datetime.now(datetime.timezone.utc)
    elif when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields = [
        ("user", user),
        ("addr", _format_addr(addr)),
        ("event", event),
        ("request", request),
        ("status", status),
    ]
    if detail is not None:
        fields.append(("detail", detail))
    return stamp + "".join(f" {key}={escape_value(value)}" for key, value in fields)


def audit_event(event: str, *, user: str | None = None, addr: object = None,
                request: str | None = None, status: str | None = None,
                detail: str | None = None, level: int = logging.INFO,
                logger: logging.Logger | None = None) -> str:
    """Write one event to the audit log (see :func:`format_event` for the parameters).

    Parameters
    ----------
    level : int
        Logging level (``WARNING`` suits refusals and failed logins).
    logger : logging.Logger, optional
        Logger to write to (default: ``katcp.audit``).

    Returns
    -------
    line : str
        The line written.
    """
    line = format_event(event, user=user, addr=addr, request=request, status=status,
                        detail=detail)
    (logger or audit_logger).log(level, "%s", line)
    return line


def open_audit_log(path: Union[str, os.PathLike],
                   logger: logging.Logger | None = None) -> logging.Handler:
    """Append the audit lines to the file ``path`` (created 0600) from now on.

    Sets the audit logger's level to INFO if it has none, so that the events are written.

    Parameters
    ----------
    path : str or os.PathLike
        Log file.
    logger : logging.Logger, optional
        Logger to attach to (default ``katcp.audit``).

    Returns
    -------
    handler : logging.Handler
        The file handler; give it to :func:`close_audit_log` to stop.
    """
    path = os.fspath(path)
    # Create it private before logging opens it (logging would use the umask).
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.INFO)
    target = logger or audit_logger
    if target.level == logging.NOTSET or target.level > logging.INFO:
        target.setLevel(logging.INFO)
    target.addHandler(handler)
    return handler


def close_audit_log(handler: logging.Handler, logger: logging.Logger | None = None) -> None:
    """Detach and close a handler from :func:`open_audit_log`."""
    (logger or audit_logger).removeHandler(handler)
    handler.close()
