"""KATCP messages and what is said about them: :class:`Message`, :class:`MessageParser`,
:class:`ProtocolFlags`, the protocol's exceptions and version constants.

Public through :mod:`katcp.core`.
"""

import logging
import re
from typing import Any, Dict, Iterable, List, Optional, Union

from katcp._protocol import grammar
from katcp._protocol.grammar import KatcpSyntaxError, _object_new, format_message, parse_line

__all__ = [
    "Message",
    "MessageParser",
    "ProtocolFlags",
    "FailReply",
    "AsyncReply",
    "KatcpDeviceError",
    "KatcpClientError",
    "KatcpClientDisconnected",
    "KatcpVersionError",
    "KatcpSyntaxError",
    "KatcpTypeError",
    "encode_utf8_with_error_log",
    "DEFAULT_KATCP_MAJOR",
    "MID_KATCP_MAJOR",
    "VERSION_CONNECT_KATCP_MAJOR",
    "INTERFACE_CHANGED_KATCP_MAJOR",
    "SEC_TS_KATCP_MAJOR",
    "FLOAT_TS_KATCP_MAJOR",
    "SEC_TO_MS_FAC",
    "MS_TO_SEC_FAC",
]

logger = logging.getLogger(__name__)

#: Default KATCP major version.
DEFAULT_KATCP_MAJOR = 5
#: First KATCP major version with message identifiers.
MID_KATCP_MAJOR = 5
#: First KATCP major version with ``#version-connect``.
VERSION_CONNECT_KATCP_MAJOR = 5
#: First KATCP major version with ``#interface-changed``.
INTERFACE_CHANGED_KATCP_MAJOR = 5
#: First KATCP major version with timestamps in seconds.
SEC_TS_KATCP_MAJOR = 5
#: First KATCP major version with float timestamps.
FLOAT_TS_KATCP_MAJOR = 4
#: Seconds -> milliseconds.
SEC_TO_MS_FAC = 1000
#: Milliseconds -> seconds.
MS_TO_SEC_FAC = 1 / 1000.0


# ---------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------


class KatcpDeviceError(Exception):
    """Exception raised by KATCP servers when errors occur."""


class FailReply(Exception):
    """Raise from a request handler to send a ``fail`` reply.

    The reply is ``!name fail <str(exception)>``.
    """


class AsyncReply(Exception):
    """Raise from a request handler to say the reply will be sent later.

    The handler (or something it started) must then send the reply itself
    with ``req.reply(...)``.
    """


class KatcpClientError(Exception):
    """Raised by KATCP clients when an error occurs."""


class KatcpClientDisconnected(KatcpClientError):
    """Raised when trying to send a message while the client is not connected."""


class KatcpVersionError(KatcpClientError):
    """Raised when a feature is not supported by the peer's KATCP version."""


class KatcpTypeError(TypeError):
    """Raised by KATCP type objects when an error occurs."""


# ---------------------------------------------------------------------------
# Message
# ---------------------------------------------------------------------------

_NAME_OK = re.compile(r"[A-Za-z][A-Za-z0-9\-]*").fullmatch
_MID_OK = re.compile(rb"[1-9][0-9]{0,9}").fullmatch


def encode_utf8_with_error_log(arg: str) -> bytes:
    """Return ``arg`` encoded as UTF-8; log an error and replace bad characters on failure.

    As in katcp-python, characters that cannot be encoded (lone surrogates)
    are replaced with ``?``.

    Parameters
    ----------
    arg : str
        Text to be encoded.

    Returns
    -------
    encoded : bytes
        UTF-8 encoded version of the text.  May include ``?`` replacement characters.
    """
    try:
        return arg.encode("utf-8")
    except UnicodeEncodeError:
        logger.error(
            "Error encoding message argument to byte str! Replacing bad characters with '?'."
        )
        return arg.encode("utf-8", errors="replace")


def _format_str(arg: str) -> bytes:
    try:
        return arg.encode()
    except UnicodeEncodeError:
        return encode_utf8_with_error_log(arg)


def _format_other(arg: Any) -> bytes:
    """Format an argument whose exact type has no entry in ``_FORMATTERS``."""
    if isinstance(arg, bytes):
        return bytes(arg)
    if isinstance(arg, str):
        return _format_str(str(arg))
    if isinstance(arg, bool):
        return b"1" if arg else b"0"
    if isinstance(arg, int):
        return b"%d" % int(arg)
    if isinstance(arg, float):
        return b"%r" % float(arg)
    if isinstance(arg, (bytearray, memoryview)):
        return bytes(arg)
    return str(arg).encode("utf-8")


# Exact type -> formatter (subclasses and other types go to _format_other).
_FORMATTERS: Dict[type, Any] = {
    bytes: lambda arg: arg,
    str: _format_str,
    bool: lambda arg: b"1" if arg else b"0",
    int: b"%d".__mod__,
    float: b"%r".__mod__,  # same as repr(arg).encode()
}
_get_formatter = _FORMATTERS.get


def _format_argument(arg: Any) -> bytes:
    """Convert one Python value into a KATCP argument (bytes)."""
    return (_get_formatter(arg.__class__) or _format_other)(arg)


#: Names already validated by Message() (bounded; saves a regex per message).
_VALID_NAMES: set = set()


def _check_name(name: Any) -> str:
    """Validate a message name (str or bytes); return it as str."""
    if type(name) is not str:
        if isinstance(name, str):
            name = str(name)
        elif isinstance(name, (bytes, bytearray)):
            name = bytes(name).decode("ascii", errors="replace")
        else:
            raise KatcpSyntaxError(f"Message name must be a str, not {type(name).__name__}.")
    if _NAME_OK(name) is None:
        if not name:
            raise KatcpSyntaxError("Command missing command name.")
        raise KatcpSyntaxError(
            "Command name should consist only of ASCII letters, digits and dashes, "
            f"starting with a letter (got {name!r})."
        )
    if len(_VALID_NAMES) < 4096:
        _VALID_NAMES.add(name)
    return name


def _normalise_mid(mid: Any) -> Optional[bytes]:
    """Turn a user-supplied message id into bytes, checking it per the protocol."""
    if mid is None:
        return None
    if type(mid) is bytes:
        raw = mid
    elif isinstance(mid, bool):
        raise KatcpSyntaxError(f"Invalid message id {mid!r}.")
    elif isinstance(mid, int):
        raw = b"%d" % mid
    elif isinstance(mid, str):
        raw = mid.encode("ascii", errors="replace")
    elif isinstance(mid, (bytes, bytearray, memoryview)):
        raw = bytes(mid)
    else:
        raise KatcpSyntaxError(f"Invalid message id {mid!r}.")
    if _MID_OK(raw) is None or int(raw) > 2**31 - 1:
        raise KatcpSyntaxError(
            f"Invalid message id {mid!r}: must be an integer from 1 to 2147483647 "
            "written without leading zeros."
        )
    return raw


class Message:
    """Represents a KAT device control language message.

    Parameters
    ----------
    mtype : Message type constant
        The message type (:attr:`REQUEST`, :attr:`REPLY` or :attr:`INFORM`).
    name : str
        The message name (ASCII letters, digits and ``-``, starting with a
        letter).  ``bytes`` are accepted and decoded.
    arguments : list of objects (float, int, bool, bytes, or str)
        The message arguments, converted with :meth:`format_argument` and
        stored as a list of bytes.
    mid : str or bytes (digits only), int, or None
        The message identifier (1 to 2**31-1).  Replies and informs that are
        part of the reply to a request should have the same id as the
        request did.  Stored as bytes, e.g. ``b"5"``.

    Raises
    ------
    KatcpSyntaxError
        If the type, name or message id is invalid.

    Notes
    -----
    ``bytes(msg)`` gives the wire form without the line terminator.
    """

    __slots__ = ("mtype", "name", "arguments", "mid")

    # Message types
    REQUEST, REPLY, INFORM = grammar.REQUEST, grammar.REPLY, grammar.INFORM

    ## Reply codes
    OK = b"ok"
    FAIL = b"fail"
    INVALID = b"invalid"

    TYPE_NAMES = {REQUEST: "REQUEST", REPLY: "REPLY", INFORM: "INFORM"}
    TYPE_SYMBOLS = {REQUEST: b"?", REPLY: b"!", INFORM: b"#"}
    TYPE_SYMBOL_LOOKUP = {b"?": REQUEST, b"!": REPLY, b"#": INFORM}

    ESCAPE_LOOKUP = grammar.ESCAPE_LOOKUP
    REVERSE_ESCAPE_LOOKUP = {v: k for k, v in ESCAPE_LOOKUP.items() if v}
    ESCAPE_RE = re.compile(b"[\\\\ \\0\\n\\r\\x1b\\t]")

    mtype: int
    name: str
    arguments: List[bytes]
    mid: Optional[bytes]

    def __init__(
        self,
        mtype: int,
        name: Union[str, bytes],
        arguments: Optional[Iterable[Any]] = None,
        mid: Any = None,
    ) -> None:
        if mtype.__class__ is not int or not 0 <= mtype <= 2:
            if mtype not in (0, 1, 2) or isinstance(mtype, bool):
                raise KatcpSyntaxError(f"Invalid command type {mtype!r}.")
            mtype = int(mtype)
        if name.__class__ is not str or name not in _VALID_NAMES:
            name = _check_name(name)
        self.mtype = mtype
        self.name = name
        if mid is None:
            self.mid = None
        elif mid.__class__ is int and 0 < mid <= 2147483647:
            self.mid = b"%d" % mid
        else:
            self.mid = _normalise_mid(mid)
        if arguments:
            get = _get_formatter
            other = _format_other
            self.arguments = [
                a if a.__class__ is bytes else (get(a.__class__) or other)(a) for a in arguments
            ]
        else:
            self.arguments = []

    # -- constructors ------------------------------------------------------

    @classmethod
    def request(cls, name: str, *args: Any, mid: Any = None) -> "Message":
        """Helper method for creating request messages.

        Parameters
        ----------
        name : str
            The name of the message.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments.

        Other Parameters
        ----------------
        mid : str or bytes (digits only), int, or None
            Message ID to use or None (default) for no Message ID.
        """
        return cls(cls.REQUEST, name, args, mid)

    @classmethod
    def reply(cls, name: str, *args: Any, mid: Any = None) -> "Message":
        """Helper method for creating reply messages.

        Parameters
        ----------
        name : str
            The name of the message.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments.

        Other Parameters
        ----------------
        mid : str or bytes (digits only), int, or None
            Message ID to use or None (default) for no Message ID.
        """
        return cls(cls.REPLY, name, args, mid)

    @classmethod
    def inform(cls, name: str, *args: Any, mid: Any = None) -> "Message":
        """Helper method for creating inform messages.

        Parameters
        ----------
        name : str
            The name of the message.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments.

        Other Parameters
        ----------------
        mid : str or bytes (digits only), int, or None
            Message ID to use or None (default) for no Message ID.
        """
        return cls(cls.INFORM, name, args, mid)

    @classmethod
    def reply_to_request(cls, req_msg: "Message", *args: Any) -> "Message":
        """Helper method for creating reply messages to a specific request.

        Copies the message name and message identifier from the request.

        Parameters
        ----------
        req_msg : katcp.core.Message instance
            The request message that this reply is in reply to.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments.
        """
        return _new_message(
            1,
            req_msg.name,
            [a if a.__class__ is bytes else _format_argument(a) for a in args],
            req_msg.mid,
        )

    @classmethod
    def reply_inform(cls, req_msg: "Message", *args: Any) -> "Message":
        """Helper method for creating inform messages in reply to a request.

        Copies the message name and message identifier from the request.

        Parameters
        ----------
        req_msg : katcp.core.Message instance
            The request message that this inform is in reply to.
        args : list of objects (float, int, bool, bytes, or str)
            The message arguments except name.
        """
        return _new_message(
            2,
            req_msg.name,
            [a if a.__class__ is bytes else _format_argument(a) for a in args],
            req_msg.mid,
        )

    # -- behaviour -----------------------------------------------------------

    def format_argument(self, arg: Any) -> bytes:
        """Format a Message argument to a byte string.

        ``bool`` -> ``b"1"``/``b"0"``, ``int`` -> decimal, ``float`` -> ``repr``,
        ``str`` -> UTF-8, ``bytes`` unchanged, anything else -> ``str(arg)``
        encoded as UTF-8 (so ``None`` becomes ``b"None"``).
        """
        return _format_argument(arg)

    def copy(self) -> "Message":
        """Return a shallow copy of the message object and its arguments.

        Returns
        -------
        msg : Message
            A copy of the message object.
        """
        return _new_message(self.mtype, self.name, list(self.arguments), self.mid)

    def reply_ok(self) -> bool:
        """Return True if this is a reply and its first argument is 'ok'."""
        return self.mtype == 1 and bool(self.arguments) and self.arguments[0] == b"ok"

    def __bytes__(self) -> bytes:
        """Return the message as serialised for transmission (no terminator)."""
        return format_message(self.mtype, self.name, self.mid, self.arguments)

    def __str__(self) -> str:
        """Return the message as serialised for transmission, as str.

        Unlike katcp-python (which raises :exc:`UnicodeDecodeError`), bytes
        that are not valid UTF-8 are shown as ``\\xNN`` escapes; use
        ``bytes(msg)`` for the exact wire form.
        """
        return format_message(self.mtype, self.name, self.mid, self.arguments).decode(
            "utf-8", errors="backslashreplace"
        )

    def _escape_match(self, match: "re.Match[bytes]") -> bytes:
        """Given a re.Match object, return the escape code for it."""
        return b"\\" + self.REVERSE_ESCAPE_LOOKUP[match.group()]

    def __repr__(self) -> str:
        """Return the message in katcp-python's readable form.

        E.g. ``<Message request foo (b'a\\\\_b', b'2')>``: lower-case type, name,
        escaped arguments (each cut at 1000 bytes), no message id.
        """
        tp = self.TYPE_NAMES[self.mtype].lower()
        if self.arguments:
            escaped_args = []
            for arg in self.arguments:
                escaped_arg = self.ESCAPE_RE.sub(self._escape_match, arg)
                if len(escaped_arg) > 1000:
                    escaped_arg = escaped_arg[:1000] + b"..."
                escaped_args.append(str(escaped_arg))
            args = "(" + ", ".join(escaped_args) + ")"
        else:
            args = ""
        return f"<Message {tp} {self.name} {args}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.mtype == other.mtype
            and self.name == other.name
            and self.mid == other.mid
            and self.arguments == other.arguments
        )

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        if result is NotImplemented:
            return result
        return not result

    __hash__ = None  # type: ignore[assignment]  # mutable


def _new_message(mtype: int, name: str, arguments: List[bytes], mid: Optional[bytes]) -> Message:
    """Build a Message from parts already known to be valid (no checks)."""
    msg = _object_new(Message)
    msg.mtype = mtype
    msg.name = name
    msg.arguments = arguments
    msg.mid = mid
    return msg


class MessageParser:
    """Parses lines into Message objects.

    Uses ``katcp-codec`` when available, else the pure-Python parser; both
    give the same results.
    """

    TYPE_SYMBOL_LOOKUP = Message.TYPE_SYMBOL_LOOKUP
    ESCAPE_LOOKUP = Message.ESCAPE_LOOKUP
    SPECIAL_RE = re.compile(b"[\\0\\n\\r\\x1b\\t ]")
    UNESCAPE_RE = re.compile(b"\\\\(.?)")
    WHITESPACE_RE = re.compile(b"[ \\t]+")
    NAME_RE = re.compile(b"^(?P<name>[a-zA-Z][a-zA-Z0-9\\-]*)(\\[(?P<id>[1-9][0-9]*)\\])?$")

    #: Line parser of the active codec backend (see :mod:`katcp.codec`).
    _parse_line = staticmethod(parse_line)

    def parse(self, line: bytes) -> Message:
        """Parse a line, return a Message.

        Parameters
        ----------
        line : bytes
            The line to parse (should not contain the terminating newline or
            carriage return; one trailing terminator is tolerated).

        Returns
        -------
        msg : Message object
            The resulting Message.

        Raises
        ------
        KatcpSyntaxError
            If the line is blank or not a valid KATCP message (the exception
            message says what is wrong).
        KatcpTypeError
            If ``line`` is not bytes.
        """
        if type(line) is not bytes:
            if isinstance(line, (bytes, bytearray, memoryview)):
                line = bytes(line)
            else:
                raise KatcpTypeError(f"Line to parse must be bytes, not {type(line).__name__}.")
        return self._parse_line(line, _new_message)


# ---------------------------------------------------------------------------
# Protocol flags
# ---------------------------------------------------------------------------


def _flag_bytes(flag: Any) -> bytes:
    if isinstance(flag, int):
        return bytes((flag,))
    if isinstance(flag, str):
        return flag.encode("ascii")
    return bytes(flag)


class ProtocolFlags:
    """Information about a KATCP protocol version and its optional features.

    Parameters
    ----------
    major : int
        Major version number.
    minor : int
        Minor version number.
    flags : iterable of single-character bytes or str
        Optional features supported, e.g. ``{ProtocolFlags.MULTI_CLIENT}``.
        A ``bytes``/``str`` string is taken as a sequence of flag characters.

    Raises
    ------
    ValueError
        If a flag is given that the version does not support, as in
        katcp-python: ``I`` before v5, ``T`` and ``B`` before v5.1.

    Attributes
    ----------
    multi_client : bool
        The peer serves several clients (flag ``M``).
    message_ids : bool
        The peer supports message identifiers (flag ``I``).
    request_timeout_hints : bool
        The peer supports ``?request-timeout-hint`` (flag ``T``, v5.1+).
    bulk_set_sensor_sampling : bool
        The peer supports setting sampling of several sensors at once
        (flag ``B``, v5.1+).
    """

    VERSION_RE = re.compile(rb"^(?P<major>\d+)\.(?P<minor>\d+)(?:-(?P<flags>.*))?$")

    MULTI_CLIENT = b"M"
    MESSAGE_IDS = b"I"
    REQUEST_TIMEOUT_HINTS = b"T"
    REQUEST_TIMEOUT_HINTS_MIN_VERSION = (5, 1)
    BULK_SET_SENSOR_SAMPLING = b"B"
    BULK_SET_SENSOR_SAMPLING_MIN_VERSION = (5, 1)

    STRATEGIES_V4 = frozenset([b"none", b"auto", b"period", b"event", b"differential"])
    STRATEGIES_V5 = STRATEGIES_V4 | frozenset([b"event-rate", b"differential-rate"])
    STRATEGIES_ALLOWED_BY_MAJOR_VERSION = {4: STRATEGIES_V4, 5: STRATEGIES_V5}

    def __init__(self, major: Optional[int], minor: Optional[int], flags: Iterable[Any]) -> None:
        self.major = major
        self.minor = minor
        self.flags = {_flag_bytes(f) for f in flags} if flags else set()
        version = (major or 0, minor or 0)
        self.multi_client = self.MULTI_CLIENT in self.flags
        self.message_ids = self.MESSAGE_IDS in self.flags
        self.request_timeout_hints = self.REQUEST_TIMEOUT_HINTS in self.flags
        self.bulk_set_sensor_sampling = self.BULK_SET_SENSOR_SAMPLING in self.flags
        # As katcp-python: a version that cannot have a flag refuses it.
        if self.message_ids and version[0] < MID_KATCP_MAJOR:
            raise ValueError("MESSAGE_IDS is only supported in katcp v5 and newer")
        if self.request_timeout_hints and version < self.REQUEST_TIMEOUT_HINTS_MIN_VERSION:
            raise ValueError(
                "REQUEST_TIMEOUT_HINTS only suported in katcp v{}.{} and newer".format(
                    *self.REQUEST_TIMEOUT_HINTS_MIN_VERSION
                )
            )
        if self.bulk_set_sensor_sampling and version < self.BULK_SET_SENSOR_SAMPLING_MIN_VERSION:
            raise ValueError(
                "BULK_SET_SENSOR_SAMPLING only suported in katcp v{}.{} and newer".format(
                    *self.BULK_SET_SENSOR_SAMPLING_MIN_VERSION
                )
            )

    def supports(self, flag: Union[bytes, str]) -> bool:
        """Return True if ``flag`` (e.g. ``ProtocolFlags.MESSAGE_IDS``) is supported."""
        return _flag_bytes(flag) in self.flags

    def strategy_allowed(self, strategy: Union[bytes, str]) -> bool:
        """Return True if sampling ``strategy`` is valid for this major version."""
        if isinstance(strategy, str):
            strategy = strategy.encode("ascii", errors="replace")
        if self.major is None:
            return False
        allowed = self.STRATEGIES_ALLOWED_BY_MAJOR_VERSION.get(self.major, frozenset())
        return strategy in allowed

    @classmethod
    def parse_version(cls, version_str: Union[bytes, str]) -> "ProtocolFlags":
        """Create a ProtocolFlags from a version string such as ``b"5.0-MI"``.

        An unparsable string gives ``major = minor = None`` and no flags.
        """
        if isinstance(version_str, str):
            version_str = version_str.encode("utf-8")
        match = cls.VERSION_RE.match(version_str)
        if match:
            major = int(match.group("major"))
            minor = int(match.group("minor"))
            flags = set(bytes((c,)) for c in (match.group("flags") or b""))
        else:
            major, minor, flags = None, None, set()
        return cls(major, minor, flags)

    def __str__(self) -> str:
        flags = "".join(sorted(f.decode("ascii", errors="replace") for f in self.flags))
        text = f"{self.major}.{self.minor}"
        if flags:
            text += "-" + flags
        return text

    def __repr__(self) -> str:
        return f"<katcp.core.ProtocolFlags {self}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProtocolFlags):
            return NotImplemented
        return (self.major, self.minor, self.flags) == (other.major, other.minor, other.flags)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash((self.major, self.minor, frozenset(self.flags)))
