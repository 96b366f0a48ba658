"""KATCP value types: Python values <-> message argument bytes.

The types (:class:`Int`, :class:`Float`, :class:`Bool`, :class:`Str`,
:class:`Discrete`, :class:`DiscreteMulti`, :class:`Lru`, :class:`Timestamp`,
:class:`TimestampOrNow`, :class:`StrictTimestamp`, :class:`Address`,
:class:`Struct`, :class:`Regex`) convert between Python values and the byte
strings carried as KATCP message arguments.  Both directions depend on the
KATCP major version for timestamps: version 5 sends float seconds (``%.6f``),
version 4 integer milliseconds.

The decorators that use them on handlers live in :mod:`katcp._protocol.decorators`;
:mod:`katcp.kattypes` re-exports both.
"""

import itertools
import numbers
import re
import struct
from typing import Any, List, Optional, Sequence

from katcp._protocol.message import (
    DEFAULT_KATCP_MAJOR,
    MS_TO_SEC_FAC,
    SEC_TO_MS_FAC,
    SEC_TS_KATCP_MAJOR,
    FailReply,
)

__all__ = [
    "DEFAULT_KATCP_MAJOR", "MS_TO_SEC_FAC", "SEC_TO_MS_FAC", "SEC_TS_KATCP_MAJOR",
    "KatcpType", "Int", "Float", "Bool", "Str", "Discrete", "DiscreteMulti", "Lru",
    "Address", "Timestamp", "TimestampOrNow", "StrictTimestamp", "Struct", "Regex",
    "Parameter", "unpack_types", "pack_types",
]


def _text(value: Any) -> str:
    """Render a (possibly bytes) value for an error message, without b'' noise."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


# ---------------------------------------------------------------------------
# KATCP type classes
# ---------------------------------------------------------------------------

class KatcpType:
    """Base class of the KATCP types.

    Sub-classes set :attr:`name` and implement :meth:`encode` and
    :meth:`decode` (and optionally :meth:`check`).

    Parameters
    ----------
    default : object, optional
        The value used when the argument is missing (or packed as None).
    optional : bool, optional
        Whether a missing value is allowed (it unpacks to None).
    multiple : bool, optional
        Whether several values of this type are expected.  Only the last type
        of a request or reply may be multiple.
    """

    __slots__ = ("_default", "_optional", "_multiple")

    name = "unknown"

    def __init__(self, default: Any = None, optional: bool = False,
                 multiple: bool = False) -> None:
        self._default = default
        self._optional = optional
        self._multiple = multiple

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} {self.name}>"

    def get_default(self) -> Any:
        """Return the default value.

        Returns
        -------
        default : object
            The default value (None for an optional type without default).

        Raises
        ------
        ValueError
            If the type is not optional and has no default.
        """
        if self._default is None and not self._optional:
            raise ValueError("No value or default given")
        return self._default

    def check(self, value: Any, major: int) -> None:
        """Raise ValueError if `value` is not valid for this type.

        Parameters
        ----------
        value : object
            The (decoded) Python value.
        major : int
            KATCP major version used to interpret the value.
        """

    def encode(self, value: Any, major: int) -> bytes:
        """Convert a Python value to its KATCP byte string (no checks)."""
        raise TypeError(f"{type(self).__name__} cannot encode values")

    def decode(self, value: bytes, major: int) -> Any:
        """Convert a KATCP byte string to a Python value (no checks)."""
        raise TypeError(f"{type(self).__name__} cannot decode values")

    def pack(self, value: Any, nocheck: bool = False,
             major: int = DEFAULT_KATCP_MAJOR) -> bytes:
        """Return `value` formatted as a KATCP argument.

        Parameters
        ----------
        value : object
            The value to pack; None packs the default.
        nocheck : bool, optional
            Skip :meth:`check` before encoding.
        major : int, optional
            KATCP major version to format for.

        Returns
        -------
        packed_value : bytes
            The unescaped KATCP byte string representing the value.
        """
        if value is None:
            value = self.get_default()
            if value is None:
                raise ValueError("Cannot pack a None value.")
        if not nocheck:
            self.check(value, major)
        return self.encode(value, major)

    def unpack(self, packed_value: Optional[bytes],
               major: int = DEFAULT_KATCP_MAJOR) -> Any:
        """Parse a KATCP argument into a Python value.

        Parameters
        ----------
        packed_value : bytes or None
            The unescaped KATCP byte string; None means "argument missing"
            and yields the default.
        major : int, optional
            KATCP major version to interpret the value with.

        Returns
        -------
        value : object
            The value the argument represents.
        """
        if packed_value is None:
            value = self.get_default()
        else:
            value = self.decode(packed_value, major)
        if value is not None:
            self.check(value, major)
        return value


class _RangeType(KatcpType):
    """A number type with optional inclusive bounds: the base of :class:`Int` and :class:`Float`.

    Owns the bounds it checks (a base class, not a mixin, so that it reads only its own
    attributes); subclasses name the kind and the format used in error messages.
    """

    __slots__ = ("_min", "_max")
    _kind = ""
    _fmt = "%s"

    def __init__(self, min: Any = None, max: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._min = min
        self._max = max

    def check(self, value: Any, major: int) -> None:
        """Raise ValueError if `value` lies outside [min, max]."""
        if self._min is not None and value < self._min:
            raise ValueError(f"{self._kind} {self._fmt % value} is lower than minimum "
                             f"{self._fmt % self._min}.")
        if self._max is not None and value > self._max:
            raise ValueError(f"{self._kind} {self._fmt % value} is higher than maximum "
                             f"{self._fmt % self._max}.")


class Int(_RangeType):
    """The KATCP integer type.

    Parameters
    ----------
    min, max : int, optional
        Inclusive bounds checked on pack and unpack (ignored if None).
    **kwargs
        `default`, `optional`, `multiple` as for :class:`KatcpType`.
    """

    __slots__ = ()
    name = "integer"
    _kind = "Integer"
    _fmt = "%d"

    def __init__(self, min: Optional[int] = None, max: Optional[int] = None,
                 **kwargs: Any) -> None:
        super().__init__(min, max, **kwargs)

    def encode(self, value: Any, major: int) -> bytes:
        """Format an integer in decimal."""
        try:
            return b"%d" % (value,)
        except TypeError:
            raise ValueError(f"Could not encode value {value!r} as integer.") from None

    def decode(self, value: bytes, major: int) -> int:
        """Parse a decimal integer."""
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"Could not parse value '{_text(value)}' as integer.") from None


class Float(_RangeType):
    """The KATCP float type.

    Parameters
    ----------
    min, max : float, optional
        Inclusive bounds checked on pack and unpack (ignored if None).
    **kwargs
        `default`, `optional`, `multiple` as for :class:`KatcpType`.
    """

    __slots__ = ()
    name = "float"
    _kind = "Float"
    _fmt = "%g"

    def __init__(self, min: Optional[float] = None, max: Optional[float] = None,
                 **kwargs: Any) -> None:
        super().__init__(min, max, **kwargs)

    def encode(self, value: Any, major: int) -> bytes:
        """Format a real number with ``repr`` (shortest round-tripping form)."""
        if value.__class__ is float:
            return b"%r" % (value,)
        if isinstance(value, numbers.Real):
            return b"%r" % (float(value),)
        raise ValueError(f"Could not encode value {value!r} as float.")

    def decode(self, value: bytes, major: int) -> float:
        """Parse a float."""
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"Could not parse value '{_text(value)}' as float.") from None


class Bool(KatcpType):
    """The KATCP boolean type: ``1`` (True) or ``0`` (False)."""

    __slots__ = ()
    name = "boolean"

    def encode(self, value: Any, major: int) -> bytes:
        """Format truthiness as ``1`` or ``0``."""
        return b"1" if value else b"0"

    def decode(self, value: bytes, major: int) -> bool:
        """Parse ``0`` or ``1``."""
        if value == b"1":
            return True
        if value == b"0":
            return False
        raise ValueError(f"Boolean value must be '0' or '1' but is '{_text(value)}'.")


class Str(KatcpType):
    """The KATCP string type.

    Unpacked values are ``str`` (UTF-8 decoded); packed values are bytes.
    ``bytes`` are packed unchanged, ``str`` UTF-8 encoded and other objects
    converted with ``str()`` first (a one-way conversion).
    """

    __slots__ = ()
    name = "string"

    def encode(self, value: Any, major: int) -> bytes:
        """Encode str as UTF-8; pass bytes through; str() anything else."""
        if value.__class__ is str:
            return value.encode("utf-8")
        if isinstance(value, bytes):
            return bytes(value)
        return str(value).encode("utf-8")

    def decode(self, value: bytes, major: int) -> str:
        """Decode UTF-8 bytes to str."""
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"Could not decode value '{_text(value)}' as UTF-8 "
                             f"string: {exc.reason} at byte {exc.start}.") from None
        except AttributeError:
            raise ValueError(f"Could not parse value {value!r} as string "
                             "(expected bytes).") from None


class Discrete(Str):
    """The KATCP discrete type: one of a fixed set of strings.

    Parameters
    ----------
    values : iterable of str
        The allowed values (order is preserved for messages).
    case_insensitive : bool, optional
        Match values ignoring case.
    **kwargs
        `default`, `optional`, `multiple` as for :class:`KatcpType`.
    """

    __slots__ = ("_case_insensitive", "_values", "_valid_values", "_valid_values_lower",
                 "__weakref__")
    name = "discrete"

    def __init__(self, values: Sequence[str], case_insensitive: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._case_insensitive = case_insensitive
        self._values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
        self._valid_values = frozenset(self._values)
        # Only read when case_insensitive.
        self._valid_values_lower = (frozenset(v.lower() for v in self._values)
                                    if case_insensitive else frozenset())

    def check(self, value: Any, major: int) -> None:
        """Raise ValueError if `value` is not one of the allowed values."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "backslashreplace")
        if self._case_insensitive:
            ok = isinstance(value, str) and value.lower() in self._valid_values_lower
            caseflag = " (case-insensitive)"
        else:
            try:
                ok = value in self._valid_values
            except TypeError:   # unhashable
                ok = False
            caseflag = ""
        if not ok:
            raise ValueError(f"Discrete value '{value}' is not one of "
                             f"{list(self._values)}{caseflag}.")


class DiscreteMulti(Discrete):
    """Discrete type accepting several values, packed as a separated list.

    The unpacked value is always a list sorted case-insensitively; the
    `all_keyword` unpacks to every allowed value.

    Parameters
    ----------
    values : list of str
        The allowed values.
    all_keyword : str, optional
        Keyword meaning "all allowed values" (None disables it).
    separator : str, optional
        Separator between values in the packed string.
    **kwargs
        `case_insensitive`, `default`, `optional`, `multiple`.
    """

    __slots__ = ("all_keyword", "separator")
    name = "discretemulti"

    def __init__(self, values: Sequence[str], all_keyword: Optional[str] = "all",
                 separator: str = ",", **kwargs: Any) -> None:
        self.all_keyword = all_keyword
        self.separator = separator
        super().__init__(values, **kwargs)

    def encode(self, value: Any, major: int) -> bytes:
        """Join the values with the separator."""
        return super().encode(self.separator.join(sorted(value, key=str.lower)), major)

    # katcp-python's design: a Discrete (Str) whose unpacked values are lists.
    def decode(self, value: bytes, major: int) -> List[str]:  # type: ignore[override]
        """Split the packed string into a sorted list of values."""
        joined = super().decode(value, major)
        if self.all_keyword and joined == self.all_keyword:
            return sorted(self._valid_values, key=str.lower)
        return sorted((v.strip() for v in joined.split(self.separator)), key=str.lower)

    def check(self, value: Any, major: int) -> None:
        """Raise ValueError if any item is not an allowed value."""
        for item in value:
            super().check(item, major)


class Lru(KatcpType):
    """The KATCP lru type: ``nominal`` (:attr:`LRU_NOMINAL`) or ``error``."""

    __slots__ = ()
    name = "lru"
    LRU_NOMINAL, LRU_ERROR = range(2)
    LRU_VALUES = {LRU_NOMINAL: b"nominal", LRU_ERROR: b"error"}
    LRU_CONSTANTS = {v: k for k, v in LRU_VALUES.items()}

    def encode(self, value: Any, major: int) -> bytes:
        """Format LRU_NOMINAL / LRU_ERROR."""
        try:
            return Lru.LRU_VALUES[value]
        except (KeyError, TypeError):
            raise ValueError("Lru value must be LRU_NOMINAL or LRU_ERROR.") from None

    def decode(self, value: bytes, major: int) -> int:
        """Parse ``nominal`` / ``error``."""
        try:
            return Lru.LRU_CONSTANTS[value]
        except (KeyError, TypeError):
            raise ValueError("Lru value must be 'nominal' or 'error'.") from None


class Address(KatcpType):
    """The KATCP address type: ``(host, port)`` with port possibly None.

    IPv6 hosts are written in brackets: ``[::1]:7147``.
    """

    __slots__ = ()
    name = "address"
    NULL = ("0.0.0.0", None)
    IPV4_RE = re.compile(rb"^(?P<host>[^:]*)(:(?P<port>\d+))?$")
    IPV6_RE = re.compile(rb"^\[(?P<host>[^[]*)\](:(?P<port>\d+))?$")

    def encode(self, value: Any, major: int) -> bytes:
        """Format ``(host, port)`` as ``host:port`` / ``[v6host]:port``."""
        try:
            host, port = value
            if isinstance(host, str):
                host = host.encode("ascii")
            elif not isinstance(host, bytes):
                raise TypeError
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ValueError(f"Could not extract host and port from value {value!r}") from None
        if b":" in host:
            host = b"[%s]" % host
        if port is None:
            return host
        try:
            return b"%s:%d" % (host, port)
        except TypeError:
            raise ValueError(f"Could not extract host and port from value {value!r}") from None

    def decode(self, value: bytes, major: int) -> tuple:
        """Parse ``host[:port]`` or ``[v6host][:port]``."""
        try:
            regex = self.IPV6_RE if value.startswith(b"[") else self.IPV4_RE
            match = regex.match(value)
        except (AttributeError, TypeError):
            match = None
        if match is None:
            raise ValueError(f"Could not parse '{_text(value)}' as an address.")
        port = match.group("port")
        try:
            host = match.group("host").decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"Could not parse '{_text(value)}' as an address.") from None
        return host, (int(port) if port is not None else None)


class Timestamp(KatcpType):
    """The KATCP timestamp type; Python values are float seconds since the epoch.

    KATCP v5 formats seconds with microsecond precision (``%.6f``); v4 uses
    integer milliseconds.
    """

    __slots__ = ()
    name = "timestamp"

    def encode(self, value: Any, major: int) -> bytes:
        """Format seconds for the given major version."""
        try:
            if major >= SEC_TS_KATCP_MAJOR:
                return b"%.6f" % (value,)
            return b"%d" % (round(float(value) * SEC_TO_MS_FAC),)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"Could not encode value {value!r} as timestamp.") from None

    def decode(self, value: bytes, major: int) -> float:
        """Parse a timestamp into float seconds."""
        try:
            decoded = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"Could not parse value '{_text(value)}' as timestamp.") from None
        if major < SEC_TS_KATCP_MAJOR:
            # Divide rather than multiply by MS_TO_SEC_FAC: correctly rounded.
            decoded /= SEC_TO_MS_FAC
        return decoded


class TimestampOrNow(Timestamp):
    """A :class:`Timestamp` or the special value :attr:`NOW` (packed as ``now``)."""

    __slots__ = ()
    name = "timestamp_or_now"
    NOW = object()

    def encode(self, value: Any, major: int) -> bytes:
        """Format NOW as ``now``, else as a timestamp."""
        if value is self.NOW:
            return b"now"
        return super().encode(value, major)

    def decode(self, value: bytes, major: int) -> Any:
        """Parse ``now`` to NOW, else as a timestamp."""
        if value == b"now":
            return self.NOW
        return super().decode(value, major)


class StrictTimestamp(KatcpType):
    """A non-negative timestamp strictly of the form ``XXXX[.YYY]``."""

    __slots__ = ()
    name = "strict_timestamp"

    def encode(self, value: Any, major: int) -> bytes:
        """Format a real number with ``repr``."""
        if isinstance(value, numbers.Real):
            return b"%r" % (float(value) if not isinstance(value, int) else value,)
        raise ValueError(f"Could not encode value {value!r} as strict timestamp.")

    def decode(self, value: bytes, major: int) -> float:
        """Parse digits with an optional fractional part."""
        try:
            for part in value.split(b".", 1):
                int(part)
            return float(value)
        except (TypeError, ValueError, AttributeError):
            raise ValueError(f"Could not parse value '{_text(value)}' as strict "
                             "timestamp.") from None

    def check(self, value: Any, major: int) -> None:
        """Raise ValueError for negative timestamps."""
        if float(value) < 0:
            raise ValueError("Strict timestamps may not be negative.")


class Struct(KatcpType):
    """Binary values packed with :mod:`struct`.

    Parameters
    ----------
    fmt : str
        The :func:`struct.pack` format; the Python value is the tuple of fields.
    **kwargs
        `default`, `optional`, `multiple` as for :class:`KatcpType`.
    """

    __slots__ = ("_fmt",)
    name = "struct"

    def __init__(self, fmt: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fmt = fmt

    def encode(self, value: Any, major: int) -> bytes:
        """struct.pack the fields."""
        try:
            return struct.pack(self._fmt, *value)
        except (struct.error, TypeError) as exc:
            raise ValueError(f"Could not pack {value} into struct with format "
                             f"{self._fmt}: {exc}") from None

    def decode(self, value: bytes, major: int) -> tuple:
        """struct.unpack the bytes."""
        try:
            return struct.unpack(self._fmt, value)
        except (struct.error, TypeError) as exc:
            raise ValueError(f"Could not unpack {_text(value)} from struct with format "
                             f"{self._fmt}: {exc}") from None


class Regex(Str):
    """A string that must match a regular expression (``re.match``).

    Parameters
    ----------
    regex : str or compiled pattern
        The expression values must match.
    **kwargs
        `default`, `optional`, `multiple` as for :class:`KatcpType`.
    """

    __slots__ = ("_pattern", "_compiled", "_flags")
    name = "regex"
    _re_flags = [("I", re.I), ("L", re.L), ("M", re.M), ("S", re.S), ("U", re.U),
                 ("X", re.X)]

    def __init__(self, regex: Any, **kwargs: Any) -> None:
        if hasattr(regex, "pattern"):
            self._pattern = regex.pattern
            self._compiled = regex
        else:
            self._pattern = regex
            self._compiled = re.compile(regex)
        self._flags = ",".join(name for name, flag in self._re_flags
                               if self._compiled.flags & flag)
        super().__init__(**kwargs)

    def check(self, value: Any, major: int) -> None:
        """Raise ValueError if `value` does not match."""
        try:
            matched = self._compiled.match(value)
        except TypeError:
            matched = None
        if not matched:
            raise ValueError(f"Value '{_text(value)}' does not match regex "
                             f"'{self._pattern}' with flags '{self._flags}'.")


# ---------------------------------------------------------------------------
# Parameters and (un)packing of argument lists
# ---------------------------------------------------------------------------

class Parameter:
    """A kattype at a position of a message, for error messages naming it.

    Parameters
    ----------
    position : int
        The parameter's position (starts at 1).
    name : str
        The parameter's name (introspected from the handler).
    kattype : KatcpType
        The parameter's type.
    major : int
        KATCP major version used to interpret values.
    """

    __slots__ = ("position", "name", "_kattype", "major")

    def __init__(self, position: int, name: str, kattype: KatcpType, major: int) -> None:
        self.position = position
        self.name = name
        self._kattype = kattype
        self.major = major

    def pack(self, value: Any) -> bytes:
        """Pack `value` with the kattype."""
        return self._kattype.pack(value, major=self.major)

    def unpack(self, value: Optional[bytes]) -> Any:
        """Unpack `value`; errors become a :class:`FailReply` naming the parameter."""
        try:
            return self._kattype.unpack(value, self.major)
        except ValueError as message:
            raise FailReply(f"Error in parameter {self.position} ({self.name}): "
                            f"{message}") from None


def _check_multiple(types: Sequence[KatcpType]) -> None:
    for type_ in types[:-1]:
        if type_._multiple:
            raise TypeError("Only the last parameter type can accept multiple arguments.")


def unpack_types(types: Sequence[KatcpType], args: Sequence[bytes],
                 argnames: Sequence[str], major: int) -> list:
    """Parse message arguments according to a list of types.

    Parameters
    ----------
    types : sequence of KatcpType
        The types of the arguments (in order); only the last may be multiple.
    args : sequence of bytes
        The arguments to parse.  Missing trailing arguments take defaults.
    argnames : sequence of str
        The names of the arguments (for error messages).
    major : int
        KATCP major version to interpret the arguments with.

    Returns
    -------
    unpacked_args : list
        The Python values.

    Raises
    ------
    FailReply
        ``Too many parameters given.`` or ``Error in parameter N (name): ...``.
    """
    ntypes = len(types)
    nargs = len(args)
    multiple = ntypes > 0 and types[-1]._multiple
    if nargs > ntypes and not multiple:
        raise FailReply("Too many parameters given.")
    values = []
    name = ""
    for i in range(max(ntypes, nargs)):
        if i < ntypes:
            kattype = types[i]
            name = argnames[i] if i < len(argnames) else ""
        arg = args[i] if i < nargs else None
        try:
            values.append(kattype.unpack(arg, major))
        except ValueError as message:
            raise FailReply(f"Error in parameter {i + 1} ({name}): {message}") from None
    return values


def pack_types(types: Sequence[KatcpType], args: Sequence[Any], major: int) -> List[bytes]:
    """Pack Python values according to a list of types.

    Parameters
    ----------
    types : sequence of KatcpType
        The types of the values (in order); only the last may be multiple.
    args : sequence of object
        The values; missing trailing values pack their types' defaults.
    major : int
        KATCP major version to format for.

    Returns
    -------
    packed_args : list of bytes
        The KATCP arguments.

    Raises
    ------
    ValueError
        If there are too many values or a value is invalid.
    """
    ntypes = len(types)
    multiple = ntypes > 0 and types[-1]._multiple
    if ntypes < len(args) and not multiple:
        raise ValueError("Too many arguments to pack.")
    if len(args) < ntypes:
        return [ktype.pack(arg, major=major)
                for ktype, arg in itertools.zip_longest(types, args)]
    packed = [ktype.pack(arg, major=major) for ktype, arg in zip(types, args)]
    if len(args) > ntypes:
        last = types[-1]
        packed.extend(last.pack(arg, major=major) for arg in args[ntypes:])
    return packed
