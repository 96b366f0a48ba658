"""Abstract high-level resource API: resources, requests and client-side sensors.

A *resource* is a KATCP device (or a collection of devices) seen from a client.
It exposes its requests as callables under ``.req`` and its sensors as
:class:`KATCPSensor` objects under ``.sensor``, both keyed by Python
identifiers (see :func:`escape_name`).  The concrete network-backed resources
live in :mod:`katcp.resource_client`.
"""

from __future__ import annotations

import abc
import collections
import collections.abc
import logging
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Tuple

import tornado.gen
from tornado.concurrent import Future

from katcp._protocol.message import Message

logger = logging.getLogger(__name__)

PY2 = False

__all__ = [
    "KATCPDummyRequest",
    "KATCPReply",
    "KATCPRequest",
    "KATCPResource",
    "KATCPResourceError",
    "KATCPResourceInactive",
    "KATCPSensorError",
    "KATCPSensorReading",
    "KATCPSensorsManager",
    "SensorResultTuple",
    "escape_name",
    "normalize_strategy_parameters",
]

# Status numbers of the KATCP sensor statuses (same values as katcp.Sensor).
_STATUSES = {
    0: "unknown",
    1: "nominal",
    2: "warn",
    3: "error",
    4: "failure",
    5: "unreachable",
    6: "inactive",
}
_STATUS_NAMES = {name: num for num, name in _STATUSES.items()}
_NOMINAL = 1
_UNKNOWN = 0


def escape_name(name: str) -> str:
    """Escape a KATCP sensor or request name to a valid Python identifier.

    Parameters
    ----------
    name : str
        KATCP name, e.g. ``"pump.pressure-max"``.

    Returns
    -------
    str
        The name with ``.`` and ``-`` replaced by ``_`` (``"pump_pressure_max"``).
    """
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return name.replace(".", "_").replace("-", "_")


def normalize_strategy_parameters(params) -> Tuple[str, ...]:
    """Normalise a sampling strategy and its parameters to a tuple of str.

    Parameters
    ----------
    params : str or sequence
        Either a space-separated string such as ``"period 0.5"`` or a sequence
        such as ``("period", 0.5)``.  Numeric parameters are normalised with
        ``str(float(x))`` so that ``1``, ``"1"`` and ``1.0`` compare equal.

    Returns
    -------
    tuple of str
        For example ``("period", "0.5")``.
    """

    cacheable = params.__class__ in _CACHEABLE
    if cacheable:
        # A container syncing a fleet normalises the same few strategies for every sensor.
        try:
            return _NORMALISED[params]
        except (KeyError, TypeError):  # (TypeError: a tuple holding something unhashable)
            pass
    result = _normalize_strategy_parameters(params)
    if cacheable:
        if len(_NORMALISED) >= _NORMALISED_MAX:
            _NORMALISED.clear()
        try:
            _NORMALISED[params] = result
        except TypeError:
            pass
    return result


#: Argument types whose normalised strategies are remembered (immutable ones only).
_CACHEABLE = frozenset((str, bytes, tuple))
_NORMALISED: Dict[Any, Tuple[str, ...]] = {}
_NORMALISED_MAX = 256


def _fixup_number(val) -> str:
    if isinstance(val, bytes):
        val = val.decode("utf-8", "replace")
    try:
        return str(float(val))
    except (ValueError, TypeError):
        return str(val)


def _normalize_strategy_parameters(params) -> Tuple[str, ...]:
    if isinstance(params, bytes):
        params = params.decode("utf-8", "replace")
    if isinstance(params, str):
        params = params.split()
    elif not isinstance(params, collections.abc.Iterable):
        params = (params,)
    return tuple(_fixup_number(p) for p in params)


class KATCPResourceError(Exception):
    """Error raised for resource-related errors."""


class KATCPResourceInactive(KATCPResourceError):
    """Raised when a request is made to an inactive resource."""


class KATCPSensorError(KATCPResourceError):
    """Raised if a problem occurred dealing with a KATCPSensor operation."""


class SensorResultTuple(
    collections.namedtuple(
        "SensorResultTuple",
        "object name python_identifier description type units reading",
    )
):
    """Per-sensor result of :meth:`KATCPResource.list_sensors`.

    Attributes
    ----------
    object : :class:`KATCPSensor`
        The sensor object.
    name : str
        KATCP name of the sensor.
    python_identifier : str
        Python identifier under which the sensor appears in ``.sensor``.
    description : str
        Description text.
    type : str
        KATCP sensor type name.
    units : str
        Units.
    reading : :class:`KATCPSensorReading`
        Most recent reading.
    """

    __slots__ = []


class KATCPSensorReading(
    collections.namedtuple("KATCPSensorReading", "received_timestamp timestamp istatus value")
):
    """Sensor reading as a (received_timestamp, timestamp, istatus, value) tuple.

    ``received_timestamp`` is the client's time when the reading arrived,
    ``timestamp`` the device's time of the reading, ``istatus`` the integer
    status (``katcp.Sensor.NOMINAL`` ...) and ``value`` the parsed value.
    """

    __slots__ = []

    @property
    def status(self) -> str:
        """Status name of the reading, e.g. ``"nominal"``."""
        return _STATUSES.get(self.istatus, "unknown")


_KATCPReplyTuple = collections.namedtuple("_KATCPReplyTuple", "reply informs")


class KATCPReply(_KATCPReplyTuple):
    """Container for the result of a KATCP request: ``(reply, informs)``.

    A reply is truthy if and only if the request succeeded (``!name ok``).
    """

    __slots__ = []

    def __repr__(self) -> str:
        """Readable form, as katcp-python: ``!name arg1 arg2`` lines, unescaped, no ids."""
        return "\n".join(
            "{}{} {}".format(
                Message.TYPE_SYMBOLS[m.mtype].decode("ascii"),
                m.name,
                " ".join(arg.decode("utf-8", "backslashreplace") for arg in m.arguments),
            )
            for m in self.messages
        )

    def __str__(self) -> str:
        """The messages in KATCP wire format, one per line."""
        return "\n".join(str(m) for m in self.messages)

    def __bool__(self) -> bool:
        return bool(self.reply.reply_ok())

    @property
    def messages(self) -> list:
        """List of all messages returned: the reply first, then the informs."""
        return [self.reply] + list(self.informs)

    @property
    def succeeded(self) -> bool:
        """True if the request succeeded (the reply is ``ok``)."""
        return bool(self)


class KATCPResource(abc.ABC):
    """Base class of a KATCP resource: a device or a collection of devices.

    Subclasses expose ``name``, ``description``, ``address``, ``is_connected``,
    ``req``, ``sensor``, ``parent`` and ``children`` and implement
    :meth:`list_sensors`.
    """

    #: Whether :meth:`list_sensors` names each sensor after the child it comes from
    #: (``child.sensor``), as a container of resources does.
    _names_sensors_by_child = False

    def __init__(self) -> None:
        self._active = True

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Name of this KATCP resource."""

    @property
    def description(self) -> str:
        """Description of this KATCP resource."""
        return getattr(self, "_description", "")

    @property
    @abc.abstractmethod
    def address(self):
        """Address of the underlying client/device as a (host, port) tuple."""

    @property
    @abc.abstractmethod
    def is_connected(self):
        """Indicate whether the underlying client/device is connected."""

    @property
    @abc.abstractmethod
    def req(self):
        """Attribute root/container for all KATCP request wrappers."""

    @property
    @abc.abstractmethod
    def sensor(self):
        """Attribute root/container for all KATCP sensors."""

    @property
    @abc.abstractmethod
    def parent(self):
        """Parent :class:`KATCPResource` object of this one, or None if at the top."""

    @property
    @abc.abstractmethod
    def children(self):
        """AttrDict of subordinate :class:`KATCPResource` objects keyed by name."""

    def is_active(self) -> bool:
        """True if the resource is active (inactive resources refuse requests)."""
        return self._active

    def set_active(self, active: bool) -> None:
        """Mark the resource active or inactive.

        Requests on an inactive resource raise :class:`KATCPResourceInactive`.
        """
        self._active = bool(active)

    @tornado.gen.coroutine
    def wait(self, sensor_name, condition_or_value, timeout=5):
        """Wait for a sensor in this resource to satisfy a condition.

        Parameters
        ----------
        sensor_name : str
            The name of the sensor to check (KATCP name or Python identifier).
        condition_or_value : obj or callable, or seq of objs or callables
            If obj, sensor.value is compared with obj.  If callable,
            ``condition_or_value(reading)`` is called and must return True if
            its condition is satisfied.  A sequence means the conditions must
            be satisfied one after the other, in order.
        timeout : float or None
            The timeout in seconds (None means wait forever).

        Returns
        -------
        tornado Future
            Resolves with True when the sensor value satisfies the condition,
            or False if it is still not satisfied after `timeout` seconds.

        Raises
        ------
        :class:`KATCPSensorError`
            If the sensor does not have a strategy set, or if the named sensor
            is not present.
        """
        sensor_name = escape_name(sensor_name)
        sensor = self.sensor.get(sensor_name)
        if sensor is None:
            raise KATCPSensorError(f"Sensor {sensor_name!r} not found on resource {self.name!r}")
        try:
            yield sensor.wait(condition_or_value, timeout)
        except tornado.gen.TimeoutError:
            return False
        return True

    @abc.abstractmethod
    def list_sensors(
        self,
        filter="",
        strategy=False,
        status="",
        use_python_identifiers=True,
        tuple=False,
        refresh=False,
    ):
        """List sensors available on this resource matching certain criteria.

        Parameters
        ----------
        filter : str, optional
            Regular expression searched in each sensor's name (Python identifier
            unless `use_python_identifiers` is False).
        strategy : bool, optional
            Only list sensors with a sampling strategy set if True.
        status : str, optional
            Regular expression searched in each sensor's status name.
        use_python_identifiers : bool, optional
            Match on Python identifiers rather than KATCP names.
        tuple : bool, optional
            Return plain tuples instead of :class:`SensorResultTuple`.
        refresh : bool, optional
            Poll every matching sensor's value before returning.

        Returns
        -------
        tornado Future
            Resolves with a list of :class:`SensorResultTuple` (or tuples).
        """

    @tornado.gen.coroutine
    def set_sampling_strategies(self, filter, strategy_and_params):
        """Set a sampling strategy for all sensors that match the filter.

        Parameters
        ----------
        filter : str
            Regular expression filter on sensor names (see :meth:`list_sensors`).
        strategy_and_params : seq of str or str
            ``(<strat_name>, [<strat_parm1>, ...])`` or the same space-separated.

        Returns
        -------
        tornado Future
            Resolves with a dict ``{sensor_name: (success, info)}``.
        """
        sensors_strategies = {}
        sensor_results = yield self.list_sensors(filter)
        for sensor_result in sensor_results:
            norm_name = sensor_result.object.normalised_name
            try:
                sensor_strat = yield self.set_sampling_strategy(norm_name, strategy_and_params)
                sensors_strategies.update(sensor_strat)
            except Exception:
                sensors_strategies[norm_name] = (False, sys.exc_info())
        return sensors_strategies

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name, strategy_and_params):
        """Set a sampling strategy for one sensor.

        Parameters
        ----------
        sensor_name : str
            Name (or Python identifier) of the sensor.
        strategy_and_params : seq of str or str
            ``(<strat_name>, [<strat_parm1>, ...])`` or the same space-separated.

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_name: (success, info)}``.
        """
        sensor_name = escape_name(sensor_name)
        sensor_obj = self.sensor.get(sensor_name)
        if sensor_obj is None:
            return {sensor_name: (False, f"Unknown sensor {sensor_name!r}")}
        try:
            result = yield sensor_obj.set_sampling_strategy(strategy_and_params)
            ok = True
            if isinstance(result, dict) and result:
                ok = all(r[0] for r in result.values())
                if not ok:
                    return {sensor_obj.normalised_name: next(iter(result.values()))}
            return {sensor_obj.normalised_name: (True, sensor_obj.sampling_strategy)}
        except Exception:
            return {sensor_obj.normalised_name: (False, sys.exc_info())}


class KATCPRequest(abc.ABC):
    """Abstract base class for a callable KATCP request.

    Calling the object issues the request: ``req.foo(arg1, arg2, timeout=10,
    mid=None)`` returns a future that resolves with a :class:`KATCPReply`.

    Parameters
    ----------
    request_description : dict
        ``{"name": ..., "description": ..., "timeout_hint": ...}``.
    is_active : callable
        Returns True while the owning resource is active.
    """

    def __init__(self, request_description: Dict[str, Any], is_active: Callable[[], bool] = lambda: True):
        self._request_description = request_description
        self._is_active = is_active
        self.__doc__ = request_description.get("description") or ""

    @property
    def name(self) -> str:
        """Name of the KATCP request."""
        return self._request_description["name"]

    @property
    def description(self) -> str:
        """Description of the KATCP request (its ``?help`` text)."""
        return self._request_description.get("description", "")

    @property
    def timeout_hint(self) -> float | None:
        """Request timeout suggested by the server, or None."""
        return self._request_description.get("timeout_hint")

    def __call__(self, *args, **kwargs):
        """Issue the request; see :meth:`issue_request`.

        Raises
        ------
        :class:`KATCPResourceInactive`
            If the owning resource is inactive.
        """
        if not self.is_active():
            raise KATCPResourceInactive(
                f"Can't make request {self.name!r}: resource is inactive"
            )
        return self.issue_request(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @abc.abstractmethod
    def issue_request(self, *args, **kwargs):
        """Issue the request to the KATCP device.

        Parameters
        ----------
        *args : objects
            Request arguments.
        timeout : float, optional (keyword)
            Timeout in seconds; defaults to the timeout hint or the client default.
        mid : int, optional (keyword)
            Message identifier to use.

        Returns
        -------
        tornado Future
            Resolves with a :class:`KATCPReply`.
        """

    def is_active(self) -> bool:
        """True if the owning resource is active."""
        return bool(self._is_active())


class KATCPDummyRequest(KATCPRequest):
    """Dummy request that answers ``ok`` without contacting any device.

    Used for requests of uncontrolled resources or unknown requests when dummy
    requests are wanted.
    """

    def issue_request(self, *args, **kwargs):
        """Return a future already resolved with an ``ok`` :class:`KATCPReply`."""
        f = Future()
        mid = kwargs.get("mid")
        req = Message.request(self.name, *args, mid=mid)
        f.set_result(KATCPReply(Message.reply_to_request(req, "ok"), []))
        return f


class KATCPSensorsManager(abc.ABC):
    """Sensor management backend used by :class:`KATCPSensor` objects.

    It stores sampling strategies, sets them on the device and polls values.

    Attributes
    ----------
    resource_name : str
        Name of the resource whose sensors are managed (each sensor's ``parent_name``);
        concrete managers provide it.
    """

    if TYPE_CHECKING:  # provided by concrete managers (katcp-python declares none)

        @property
        def resource_name(self) -> str: ...

    @abc.abstractmethod
    def time(self) -> float:
        """Current time in seconds since the epoch (used for received timestamps)."""

    @abc.abstractmethod
    def get_sampling_strategy(self, sensor_name):
        """Return the current sampling strategy of the named sensor as a tuple of str."""

    @abc.abstractmethod
    def set_sampling_strategy(self, sensor_name, strategy_and_parms):
        """Set the sampling strategy of the named sensor.

        Returns
        -------
        tornado Future
            Resolves with ``{sensor_name: (success, info)}``.
        """

    @abc.abstractmethod
    def drop_sampling_strategy(self, sensor_name):
        """Forget the cached sampling strategy of the named sensor."""

    @abc.abstractmethod
    def poll_sensor(self, sensor_name):
        """Poll the sensor (``?sensor-value``) and update the sensor object.

        Returns
        -------
        tornado Future
            Resolves when the sensor object holds the new reading.
        """

    @abc.abstractmethod
    def reapply_sampling_strategies(self):
        """Reapply all cached sampling strategies (e.g. after a reconnect)."""
