"""KATCP sensors: typed, time-stamped values with a status, observed by strategies.

:class:`Sensor` and :class:`Reading` are also available as
``katcp.Sensor`` / ``katcp.core.Sensor``.

Wall-clock timestamps come from the module-level function :data:`now`
(``time.time`` by default); tests may replace ``katcp.sensor.now``.
"""

import numbers
import time
import warnings
import weakref
from collections import namedtuple
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, cast

from katcp._protocol.grammar import KatcpSyntaxError
from katcp._protocol.kattypes import (
    Address,
    Bool,
    Discrete,
    Float,
    Int,
    KatcpType,
    Lru,
    Str,
    Timestamp,
)
from katcp._protocol.message import DEFAULT_KATCP_MAJOR, SEC_TS_KATCP_MAJOR, KatcpTypeError

__all__ = ["Sensor", "Reading", "now"]

#: The wall-clock function used for sensor timestamps (seconds since the epoch).
now: Callable[[], float] = time.time


class Reading(namedtuple("Reading", "timestamp status value")):
    """Sensor reading as a (timestamp, status, value) tuple.

    Attributes
    ----------
    timestamp : float
        The time (in seconds since the epoch) at which the value was determined.
    status : int
        Sensor status constant (:attr:`Sensor.NOMINAL` etc.).
    value : object
        The value, of a type appropriate to the sensor's type.
    """

    __slots__ = ()


_new_reading = tuple.__new__
_Seconds = float   # annotation alias: Sensor.float (a classmethod) shadows float in the class
_Real = numbers.Real
_Integral = numbers.Integral


def _native_str(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


# Discrete kattypes shared by sensors with the same values (thousands of
# sensors often share a handful of value sets).
_DISCRETE_TYPES: "weakref.WeakValueDictionary[tuple, Discrete]" = weakref.WeakValueDictionary()


def _shared_discrete(values: Sequence[str]) -> Discrete:
    key = tuple(values)
    try:
        kattype = _DISCRETE_TYPES.get(key)
    except TypeError:   # unhashable values: do not share
        return Discrete(key)
    if kattype is None:
        kattype = _DISCRETE_TYPES[key] = Discrete(key)
    return kattype


class _Never:
    """Placeholder fast-path type that no value has."""


# --- value validators: (sensor, value) -> accepted value, or ValueError -----

def _bad(sensor: "Sensor", value: Any, expected: str) -> ValueError:
    return ValueError(f"Invalid value {value!r} for {sensor.stype} sensor "
                      f"{sensor.name!r}: expected {expected}.")


def _valid_int(sensor: "Sensor", value: Any) -> Any:
    if isinstance(value, _Integral):
        return value
    raise _bad(sensor, value, "an integer")


def _valid_float(sensor: "Sensor", value: Any) -> Any:
    if isinstance(value, _Real) and not isinstance(value, bool):
        return float(value)
    raise _bad(sensor, value, "a real number")


def _valid_bool(sensor: "Sensor", value: Any) -> Any:
    if isinstance(value, _Integral) or type(value).__name__ in ("bool_", "bool"):
        if value == 1 or value == 0:
            return bool(value)
    raise _bad(sensor, value, "a boolean")


def _valid_lru(sensor: "Sensor", value: Any) -> Any:
    if isinstance(value, _Integral) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    raise _bad(sensor, value, "Sensor.LRU_NOMINAL or Sensor.LRU_ERROR")


def _valid_discrete(sensor: "Sensor", value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    kattype = cast(Discrete, sensor._kattype)
    try:
        if value in kattype._valid_values:
            return value
    except TypeError:   # unhashable
        pass
    raise _bad(sensor, value, f"one of {kattype._values}")


def _valid_string(sensor: "Sensor", value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        return value
    raise _bad(sensor, value, "str or bytes")


def _valid_timestamp(sensor: "Sensor", value: Any) -> Any:
    if isinstance(value, _Real) and not isinstance(value, bool):
        return float(value)
    raise _bad(sensor, value, "seconds since the epoch (a real number)")


def _valid_address(sensor: "Sensor", value: Any) -> Any:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        host, port = value
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if (isinstance(host, str) and host.isascii()
                and (port is None or (isinstance(port, _Integral) and not isinstance(port, bool)
                                      and 0 <= int(port) <= 65535))):
            return (host, port if port is None else int(port))
    raise _bad(sensor, value, "a (host, port) tuple with port an integer or None")


def _deprecated_reading_attr(i: int, attr: str) -> property:
    """A read-only property for katcp-python's deprecated ``Sensor._timestamp`` etc."""
    def getter(self: "Sensor") -> Any:
        warnings.warn(f"Use of katcp.Sensor.{attr} attribute is deprecated",
                      DeprecationWarning, stacklevel=2)
        return self._current_reading[i]
    return property(getter)


class Sensor:
    """A sensor: a typed value with a status and a timestamp, observable.

    Parameters
    ----------
    sensor_type : int or type
        One of the type constants (:attr:`INTEGER`, :attr:`FLOAT`,
        :attr:`BOOLEAN`, :attr:`LRU`, :attr:`DISCRETE`, :attr:`STRING`,
        :attr:`TIMESTAMP`, :attr:`ADDRESS`) or ``int``, ``float``, ``str``,
        ``bool`` as shortcuts.
    name : str
        The sensor's name.
    description : str, optional
        A short description; by default one is made up from type, name and units.
    units : str, optional
        Units of the value ('' if none).  Not allowed for TIMESTAMP sensors,
        whose units the protocol fixes.
    params : list, optional
        For INTEGER and FLOAT, optionally ``[min, max]`` (informational); for
        DISCRETE, the allowed values (required, at least one).  Otherwise omit.
    default : object, optional
        The initial value.  By default 0, 0.0, False, LRU_NOMINAL, the first
        discrete value, '', 0.0 or ``("0.0.0.0", None)`` by type; for INTEGER
        and FLOAT with ``[min, max]`` not containing that, `min`.
    initial_status : int, optional
        The initial status (default :attr:`UNKNOWN`).

    Notes
    -----
    Values are validated on every :meth:`set_value` / :meth:`set`: a value
    of the wrong type (or outside the discrete set) raises ValueError naming
    the sensor and leaves the sensor unchanged.  Integer and float ranges are
    informational, as in KATCP v5, and are not enforced.
    """

    __slots__ = ("name", "units", "_description", "_params", "_sensor_type", "_kattype",
                 "_observers", "_current_reading", "__weakref__")

    # The shared kattypes instance that checks and formats values (a Discrete of the
    # sensor's values for discrete sensors).
    _kattype: KatcpType

    (INTEGER, FLOAT, BOOLEAN, LRU, DISCRETE, STRING, TIMESTAMP, ADDRESS) = range(8)

    SENSOR_TYPES: Dict[int, Tuple[Type[KatcpType], Any]] = {
        INTEGER: (Int, 0),
        FLOAT: (Float, 0.0),
        BOOLEAN: (Bool, False),
        LRU: (Lru, Lru.LRU_NOMINAL),
        DISCRETE: (Discrete, "unknown"),
        STRING: (Str, ""),
        TIMESTAMP: (Timestamp, 0.0),
        ADDRESS: (Address, Address.NULL),
    }

    SENSOR_SHORTCUTS = {int: INTEGER, float: FLOAT, str: STRING, bool: BOOLEAN}

    SENSOR_TYPE_LOOKUP = {v[0].name: k for k, v in SENSOR_TYPES.items()}

    UNKNOWN, NOMINAL, WARN, ERROR, FAILURE, UNREACHABLE, INACTIVE = range(7)

    STATUSES_RAW = {
        UNKNOWN: b"unknown",
        NOMINAL: b"nominal",
        WARN: b"warn",
        ERROR: b"error",
        FAILURE: b"failure",
        UNREACHABLE: b"unreachable",
        INACTIVE: b"inactive",
    }
    STATUSES = {k: v.decode("ascii") for k, v in STATUSES_RAW.items()}
    STATUS_NAMES = {v: k for k, v in STATUSES.items()}
    STATUS_NAMES_RAW = {v: k for k, v in STATUSES_RAW.items()}

    LRU_NOMINAL, LRU_ERROR = Lru.LRU_NOMINAL, Lru.LRU_ERROR
    LRU_VALUES = Lru.LRU_VALUES
    LRU_CONSTANTS = {v: k for k, v in LRU_VALUES.items()}

    TIMESTAMP_TYPE = Timestamp()

    # Per-type tables indexed by the type constant (hot path: no dict work).
    _FAST_TYPES = (int, float, bool, _Never, _Never, str, float, _Never)
    _VALIDATORS = (_valid_int, _valid_float, _valid_bool, _valid_lru, _valid_discrete,
                   _valid_string, _valid_timestamp, _valid_address)
    # Stateless kattypes shared by all sensors of a type (DISCRETE gets its own).
    # Indexed by sensor type; discrete sensors get their own (see _shared_discrete).
    _SHARED_KATTYPES: Tuple[Any, ...] = (Int(), Float(), Bool(), Lru(), None, Str(),
                                         Timestamp(), Address())
    _STATUS_SET = frozenset(range(7))

    def __init__(self, sensor_type: Any, name: Any, description: Optional[str] = None,
                 units: Optional[str] = None, params: Optional[Sequence[Any]] = None,
                 default: Any = None, initial_status: Optional[int] = None) -> None:
        units = "" if units is None else _native_str(units)
        params = [] if params is None else list(params)
        if initial_status is None:
            initial_status = Sensor.UNKNOWN
        sensor_type = self.SENSOR_SHORTCUTS.get(sensor_type, sensor_type)
        if sensor_type not in self.SENSOR_TYPES:
            raise ValueError(f"Invalid sensor type {sensor_type!r}")
        self._sensor_type = sensor_type
        self.name = _native_str(name)
        if not isinstance(self.name, str) or not isinstance(units, str):
            raise TypeError(f"Sensor name and units must be str (or bytes), not "
                            f"{type(self.name).__name__} and {type(units).__name__}")
        default_value = self.SENSOR_TYPES[sensor_type][1]
        if sensor_type in (Sensor.INTEGER, Sensor.FLOAT):
            # [min, max] is informational (KATCP v5); other params are ignored,
            # as katcp-python does, so that odd peers' sensor lists still load.
            if len(params) == 2:
                if not params[0] <= default_value <= params[1]:
                    default_value = params[0]
            self._kattype = self._SHARED_KATTYPES[sensor_type]
        elif sensor_type == Sensor.DISCRETE:
            params = [_native_str(p) for p in params]
            if not params:
                raise ValueError(f"Discrete sensor {self.name!r} needs at least one value "
                                 "in params")
            default_value = params[0]
            self._kattype = _shared_discrete(params)
        else:
            if sensor_type == Sensor.TIMESTAMP and units:
                raise ValueError(
                    "Units cannot be specified for TIMESTAMP sensors since their units is "
                    "defined by the KATCP spec as either seconds or, for katcp versions 4 "
                    "and below, milliseconds")
            self._kattype = self._SHARED_KATTYPES[sensor_type]
        if default is not None:
            default_value = default
        if default_value.__class__ is not self._FAST_TYPES[sensor_type]:
            default_value = self._VALIDATORS[sensor_type](self, default_value)
        if initial_status not in self._STATUS_SET:
            raise ValueError(f"Invalid initial status {initial_status!r} for sensor "
                             f"{self.name!r}: expected one of {sorted(self.STATUSES)}")
        self.units = units
        self._description = None if description is None else _native_str(description)
        # DISCRETE keeps its values in its (shared) kattype only.
        self._params = tuple(params) if params and sensor_type != Sensor.DISCRETE else None
        self._observers: Tuple[Any, ...] = ()
        self._current_reading = _new_reading(Reading, (now(), initial_status, default_value))

    # -- descriptive attributes ------------------------------------------------

    @property
    def stype(self) -> str:
        """KATCP name of the sensor type ('integer', 'float', ...)."""
        return self._kattype.name

    type = stype

    @property
    def description(self) -> str:
        """Description of the sensor."""
        if self._description is None:
            unit_description = f"in unit {self.units}" if self.units else "with no unit"
            return f"{self.stype.capitalize()} sensor {self.name!r} {unit_description}"
        return self._description

    @description.setter
    def description(self, value: str) -> None:
        self._description = _native_str(value)

    @property
    def params(self) -> List[Any]:
        """Type parameters: ``[min, max]`` or the discrete values (else ``[]``)."""
        if self._sensor_type == Sensor.DISCRETE:
            return list(cast(Discrete, self._kattype)._values)
        return list(self._params) if self._params else []

    @params.setter
    def params(self, value: Sequence[Any]) -> None:
        if self._sensor_type == Sensor.DISCRETE:
            values = [_native_str(v) for v in value]
            if not values:
                raise ValueError(f"Discrete sensor {self.name!r} needs at least one value")
            self._kattype = _shared_discrete(values)
        else:
            self._params = tuple(value) if value else None

    @property
    def formatted_params(self) -> List[bytes]:
        """:attr:`params` formatted as KATCP byte strings (for ``#sensor-list``)."""
        pack = self._kattype.pack
        return [pack(p, True) for p in self.params]

    @property
    def sensor_type(self) -> int:
        """The sensor type constant."""
        return self._sensor_type

    def __repr__(self) -> str:
        cls = type(self)
        return f"<{cls.__module__}.{cls.__name__} object name={self.name!r} at 0x{id(self):x}>"

    # Deprecated katcp-python attributes.
    _timestamp = _deprecated_reading_attr(0, "_timestamp")
    _status = _deprecated_reading_attr(1, "_status")
    _value = _deprecated_reading_attr(2, "_value")

    # -- constructors ----------------------------------------------------------

    @classmethod
    def integer(cls, name: str, description: Optional[str] = None, unit: str = "",
                params: Optional[Sequence[int]] = None, default: Optional[int] = None,
                initial_status: Optional[int] = None) -> "Sensor":
        """Create an integer sensor.

        Parameters
        ----------
        name : str
            The sensor's name.
        description : str, optional
            A short description.
        unit : str, optional
            Units of the value.
        params : [min, max], optional
            Informational range.
        default : int, optional
            Initial value (default 0, or min if 0 is outside the range).
        initial_status : int, optional
            Initial status (default UNKNOWN).
        """
        return cls(cls.INTEGER, name, description, unit, params, default, initial_status)

    @classmethod
    def float(cls, name: str, description: Optional[str] = None, unit: str = "",
              params: Optional[Sequence[Any]] = None, default: Optional[Any] = None,
              initial_status: Optional[int] = None) -> "Sensor":
        """Create a float sensor.

        Parameters
        ----------
        name : str
            The sensor's name.
        description : str, optional
            A short description.
        unit : str, optional
            Units of the value.
        params : [min, max], optional
            Informational range.
        default : float, optional
            Initial value (default 0.0, or min if 0.0 is outside the range).
        initial_status : int, optional
            Initial status (default UNKNOWN).
        """
        return cls(cls.FLOAT, name, description, unit, params, default, initial_status)

    @classmethod
    def boolean(cls, name: str, description: Optional[str] = None, unit: str = "",
                default: Optional[bool] = None,
                initial_status: Optional[int] = None) -> "Sensor":
        """Create a boolean sensor.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str, optional
            A short description of the sensor.
        unit : str, optional
            The units of the sensor value ('' if none).
        default : bool, optional
            An initial value for the sensor. Defaults to False.
        initial_status : int, optional
            An initial status, one of the keys of :attr:`STATUSES`
            (default :attr:`UNKNOWN`).
        """
        return cls(cls.BOOLEAN, name, description, unit, None, default, initial_status)

    @classmethod
    def lru(cls, name: str, description: Optional[str] = None, unit: str = "",
            default: Optional[int] = None, initial_status: Optional[int] = None) -> "Sensor":
        """Create an lru sensor (deprecated sensor type, kept for compatibility).

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str, optional
            A short description of the sensor.
        unit : str, optional
            The units of the sensor value ('' if none).
        default : int, optional
            An initial value for the sensor. Defaults to :attr:`LRU_NOMINAL` (or :attr:`LRU_ERROR`).
        initial_status : int, optional
            An initial status, one of the keys of :attr:`STATUSES`
            (default :attr:`UNKNOWN`).
        """
        return cls(cls.LRU, name, description, unit, None, default, initial_status)

    @classmethod
    def string(cls, name: str, description: Optional[str] = None, unit: str = "",
               default: Optional[str] = None, initial_status: Optional[int] = None) -> "Sensor":
        """Create a string sensor.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str, optional
            A short description of the sensor.
        unit : str, optional
            The units of the sensor value ('' if none).
        default : str, optional
            An initial value for the sensor. Defaults to the empty string.
        initial_status : int, optional
            An initial status, one of the keys of :attr:`STATUSES`
            (default :attr:`UNKNOWN`).
        """
        return cls(cls.STRING, name, description, unit, None, default, initial_status)

    @classmethod
    def discrete(cls, name: str, description: Optional[str] = None, unit: str = "",
                 params: Optional[Sequence[str]] = None, default: Optional[str] = None,
                 initial_status: Optional[int] = None) -> "Sensor":
        """Create a discrete sensor.

        Parameters
        ----------
        name : str
            The sensor's name.
        description : str, optional
            A short description.
        unit : str, optional
            Units of the value.
        params : list of str
            All allowed values (at least one).
        default : str, optional
            Initial value (default the first of `params`).
        initial_status : int, optional
            Initial status (default UNKNOWN).
        """
        return cls(cls.DISCRETE, name, description, unit, params, default, initial_status)

    @classmethod
    def timestamp(cls, name: str, description: Optional[str] = None, unit: str = "",
                  default: Optional[Any] = None,
                  initial_status: Optional[int] = None) -> "Sensor":
        """Create a timestamp sensor (values in seconds since the Unix epoch).

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str, optional
            A short description of the sensor.
        unit : str, optional
            Must be empty: the protocol fixes the unit (seconds in KATCP v5,
            milliseconds on the wire in v4).
        default : float, optional
            An initial value for the sensor. Defaults to 0.0.
        initial_status : int, optional
            An initial status, one of the keys of :attr:`STATUSES`
            (default :attr:`UNKNOWN`).
        """
        return cls(cls.TIMESTAMP, name, description, unit, None, default, initial_status)

    @classmethod
    def address(cls, name: str, description: Optional[str] = None, unit: str = "",
                default: Optional[Tuple[str, Optional[int]]] = None,
                initial_status: Optional[int] = None) -> "Sensor":
        """Create an IP address sensor; values are ``(host, port)`` tuples.

        The port may be None.  IPv6 hosts are formatted as ``[host]:port``.

        Parameters
        ----------
        name : str
            The name of the sensor.
        description : str, optional
            A short description of the sensor.
        unit : str, optional
            The units of the sensor value ('' if none).
        default : (str, int or None), optional
            An initial value for the sensor. Defaults to ``("0.0.0.0", None)``.
        initial_status : int, optional
            An initial status, one of the keys of :attr:`STATUSES`
            (default :attr:`UNKNOWN`).
        """
        return cls(cls.ADDRESS, name, description, unit, None, default, initial_status)

    # -- observers ------------------------------------------------------------

    def attach(self, observer: Any) -> None:
        """Attach an observer whose ``update(sensor, reading)`` is called on every set.

        Attaching the same observer twice has no extra effect.
        """
        if observer not in self._observers:
            self._observers = self._observers + (observer,)

    def detach(self, observer: Any) -> None:
        """Detach an observer (no error if it is not attached)."""
        if observer in self._observers:
            self._observers = tuple(o for o in self._observers if o != observer)

    def notify(self, reading: Reading) -> None:
        """Call ``update(self, reading)`` on every observer."""
        for observer in self._observers:
            observer.update(self, reading)

    # -- setting --------------------------------------------------------------

    def _bad_status(self, status: Any) -> ValueError:
        return ValueError(f"Invalid status {status!r} for sensor {self.name!r}: expected "
                          f"one of {sorted(self.STATUSES)} (Sensor.NOMINAL etc.)")

    def set(self, timestamp: _Seconds, status: int, value: Any) -> None:
        """Set the reading and notify observers.

        Parameters
        ----------
        timestamp : float
            Seconds since the epoch at which the value was determined.
        status : int
            Status constant.
        value : object
            Value of the sensor's type.

        Raises
        ------
        ValueError
            If value, status or timestamp is invalid (the sensor is unchanged).
        """
        stype = self._sensor_type
        if value.__class__ is not self._FAST_TYPES[stype]:
            value = self._VALIDATORS[stype](self, value)
        if status not in self._STATUS_SET:
            raise self._bad_status(status)
        if timestamp.__class__ is not float and not isinstance(timestamp, _Real):
            raise ValueError(f"Invalid timestamp {timestamp!r} for sensor {self.name!r}")
        reading = self._current_reading = _new_reading(Reading, (timestamp, status, value))
        for observer in self._observers:
            observer.update(self, reading)

    def set_value(self, value: Any, status: int = NOMINAL, timestamp: Optional[_Seconds] = None,
                  major: int = DEFAULT_KATCP_MAJOR) -> None:
        """Check and set the value (status NOMINAL, time now by default); notify.

        Parameters
        ----------
        value : object
            Value of the sensor's type.
        status : int, optional
            Status constant (default :attr:`NOMINAL`).
        timestamp : float, optional
            Seconds since the epoch; :data:`katcp.sensor.now()` if None.
        major : int, optional
            Unused; kept for compatibility.

        Raises
        ------
        ValueError
            If the value is of the wrong type or not an allowed discrete value,
            or the status is invalid.  The sensor is then unchanged.
        """
        # Through set(), as katcp-python does: one validation, and a subclass that
        # overrides set() sees every update.
        self.set(now() if timestamp is None else timestamp, status, value)

    def set_formatted(self, raw_timestamp: bytes, raw_status: bytes, raw_value: bytes,
                      major: int = DEFAULT_KATCP_MAJOR) -> None:
        """Set the reading from KATCP byte strings (as in ``#sensor-status``).

        Parameters
        ----------
        raw_timestamp, raw_status, raw_value : bytes
            KATCP formatted timestamp, status name and value.
        major : int, optional
            KATCP major version the strings are formatted for.

        Raises
        ------
        ValueError
            If any of them does not parse (the sensor is unchanged).
        """
        timestamp = self.TIMESTAMP_TYPE.decode(raw_timestamp, major)
        try:
            status = self.STATUS_NAMES_RAW[raw_status]
        except (KeyError, TypeError):
            raise ValueError(f"Invalid status {raw_status!r} for sensor {self.name!r}: "
                             f"expected one of {list(self.STATUS_NAMES)}") from None
        self.set(timestamp, status, self.parse_value(raw_value, major))

    # -- reading --------------------------------------------------------------

    def read(self) -> Reading:
        """Return the current :class:`Reading` (timestamp, status, value)."""
        return self._current_reading

    def value(self) -> Any:
        """Return the current value."""
        return self._current_reading[2]

    def status(self) -> int:
        """Return the current status constant."""
        return self._current_reading[1]

    def format_reading(self, reading: Reading,
                       major: int = DEFAULT_KATCP_MAJOR) -> Tuple[bytes, bytes, bytes]:
        """Format a reading of this sensor as KATCP byte strings.

        Parameters
        ----------
        reading : Reading
            A reading of this sensor (as from :meth:`read`).
        major : int, optional
            KATCP major version: 5 formats timestamps as float seconds
            (``%.6f``), 4 as integer milliseconds.

        Returns
        -------
        timestamp, status, value : bytes
        """
        timestamp, status, value = reading
        if major >= SEC_TS_KATCP_MAJOR:
            ts = b"%.6f" % (timestamp,)
        else:
            ts = self.TIMESTAMP_TYPE.encode(timestamp, major)
        return ts, self.STATUSES_RAW[status], self._kattype.encode(value, major)

    def read_formatted(self, major: int = DEFAULT_KATCP_MAJOR) -> Tuple[bytes, bytes, bytes]:
        """Return the current reading formatted by :meth:`format_reading`."""
        return self.format_reading(self._current_reading, major)

    # -- parsing --------------------------------------------------------------

    def parse_value(self, s_value: bytes, katcp_major: int = DEFAULT_KATCP_MAJOR) -> Any:
        """Parse a KATCP byte string into a value for this sensor.

        Raises
        ------
        KatcpTypeError
            If `s_value` is not bytes.
        ValueError
            If it does not parse as this sensor's type.
        """
        if not isinstance(s_value, bytes):
            raise KatcpTypeError(f"Sensor value type must be bytes - not {type(s_value)}")
        return self._kattype.unpack(s_value, katcp_major)

    @classmethod
    def parse_type(cls, type_string: Any) -> int:
        """Return the type constant for a KATCP type name (e.g. ``'integer'``).

        Raises
        ------
        KatcpSyntaxError
            For an unknown type name.
        """
        key = _native_str(type_string) if isinstance(type_string, bytes) else type_string
        try:
            return cls.SENSOR_TYPE_LOOKUP[key]
        except (KeyError, TypeError):
            raise KatcpSyntaxError(f"Invalid sensor type string {_native_str(type_string)}") \
                from None

    @classmethod
    def parse_params(cls, sensor_type: int, formatted_params: Sequence[bytes],
                     major: int = DEFAULT_KATCP_MAJOR) -> List[Any]:
        """Parse KATCP formatted type parameters (from ``#sensor-list``).

        Parameters
        ----------
        sensor_type : int
            The sensor type constant.
        formatted_params : list of bytes
            The parameters.
        major : int, optional
            KATCP major version.

        Returns
        -------
        params : list
            Python values (numbers for INTEGER/FLOAT, str for DISCRETE).
        """
        typeclass = cls.SENSOR_TYPES[sensor_type][0]
        kattype = typeclass([]) if sensor_type == cls.DISCRETE else typeclass()
        return [kattype.decode(x, major) for x in formatted_params]
