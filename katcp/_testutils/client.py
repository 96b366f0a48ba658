"""Test client helpers: MessageRecorder and BlockingTestClient."""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Dict, Iterable, List

from katcp._client.base import make_threadsafe
from katcp._client.requests import BlockingClient
from katcp._protocol.message import Message
from katcp._server.requests import DeviceServer


def _native(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return value if isinstance(value, str) else str(value)


def list_to_native_strings(list_to_coerce: Iterable) -> List[str]:
    """Return the items as native ``str`` (bytes decoded as UTF-8, others ``str()``).

    Parameters
    ----------
    list_to_coerce : iterable
        Items to convert.
    """
    return [_native(item) for item in list_to_coerce]


_SENSOR_STATUSES = ("unknown", "nominal", "warn", "error", "failure", "unreachable", "inactive")


class MessageRecorder:
    """Thread-safe record of the incoming messages that match a filter.

    Parameters
    ----------
    msg_types : container
        Record only messages of these types (e.g. ``[Message.INFORM]``).
    whitelist : container
        Record only messages with these names (empty: all but `blacklist`).
    regex_filter : str or None
        Record only messages whose string form matches this regex.
    blacklist : container
        Ignore messages with these names (the whitelist takes precedence).
    """

    def __init__(self, msg_types, whitelist, regex_filter, blacklist) -> None:
        self.msgs: List[Message] = []
        self.msg_types = msg_types
        self.whitelist = whitelist
        self.blacklist = blacklist
        self.regex_filter = re.compile(regex_filter) if regex_filter else None
        self._cond = threading.Condition()

    def get_msgs(self, min_number: int = 0, timeout: float = 1) -> List[Message]:
        """Return the messages recorded so far and forget them.

        Parameters
        ----------
        min_number : int, optional
            Wait (up to `timeout`) until at least this many are recorded.
        timeout : float, optional
            Seconds to wait at most.
        """
        self.wait_number(min_number, timeout)
        with self._cond:
            msgs = self.msgs[:]
            del self.msgs[:]
        return msgs

    __call__ = get_msgs

    def wait_number(self, number: int, timeout: float = 1):
        """Wait until at least `number` messages are recorded.

        Returns
        -------
        True, or None on timeout
        """
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.msgs) >= number, timeout)
        return True if ok else None

    def append_msg(self, msg: Message) -> None:
        """Record `msg` if it matches the filter."""
        if msg.mtype not in self.msg_types or not self._record_predicate(msg):
            return
        with self._cond:
            self.msgs.append(msg)
            self._cond.notify_all()

    def _record_predicate(self, msg: Message) -> bool:
        if self.whitelist and msg.name not in self.whitelist:
            return False
        if self.regex_filter:
            return bool(self.regex_filter.match(str(msg)))
        return msg.name not in self.blacklist


class BlockingTestClient(BlockingClient):
    """BlockingClient with unittest assertions bound to a TestCase.

    Parameters
    ----------
    test : unittest.TestCase
        Test case whose ``assert*`` methods are used (``sensor_lag`` attribute,
        if any, is the expected delay before device changes show).
    *args, **kwargs
        Passed to :class:`katcp.client.BlockingClient`.
    """

    def __init__(self, test, *args, **kwargs) -> None:
        self.test = test
        # id(recorder) -> its append_msg, fed every message the client receives.
        self._message_recorders: Dict[int, Callable[[Message], None]] = {}
        super().__init__(*args, **kwargs)

    @make_threadsafe
    def raw_send(self, chunk: bytes) -> None:
        """Send raw bytes to the server."""
        conn = self._conn
        if conn is not None:
            conn.write_bytes(chunk)

    def _sensor_lag(self) -> float:
        return getattr(self.test, "sensor_lag", 0)

    def handle_inform(self, msg: Message):
        """Pass informs to the message recorders, then dispatch them."""
        for append_msg in list(self._message_recorders.values()):
            append_msg(msg)
        return super().handle_inform(msg)

    def handle_reply(self, msg: Message):
        """Pass replies to the message recorders, then dispatch them."""
        for append_msg in list(self._message_recorders.values()):
            append_msg(msg)
        return super().handle_reply(msg)

    def message_recorder(self, whitelist=(), blacklist=(), regex_filter=None,
                         informs: bool = True, replies: bool = False) -> MessageRecorder:
        """Record selected incoming messages.

        Parameters
        ----------
        whitelist, blacklist : sequence of str, optional
            Names to record / ignore (see :class:`MessageRecorder`).
        regex_filter : str, optional
            Regex the message string must match.
        informs, replies : bool, optional
            Which message types to record.

        Returns
        -------
        MessageRecorder
            Call it to get (and forget) the messages recorded so far.
        """
        msg_types = set()
        if informs:
            msg_types.add(Message.INFORM)
        if replies:
            msg_types.add(Message.REPLY)
        mr = MessageRecorder(msg_types, set(whitelist), regex_filter, set(blacklist))
        self._message_recorders[id(mr)] = mr.append_msg
        return mr

    @staticmethod
    def expected_sensor_value_tuple(sensorname, value, sensortype=str, places=7):
        """Complete an expected-sensor tuple: ``(name, value, sensortype, places)``."""
        return (sensorname, value, sensortype, places)

    # ------------------------------------------------------------------ sensor values
    def get_sensor(self, sensorname: str, sensortype=str):
        """Return ``(value, status, timestamp)`` of a sensor via ``?sensor-value``.

        Parameters
        ----------
        sensorname : str
            Sensor name.
        sensortype : type, optional
            Type to convert the value to (``bool`` accepts ``0``/``1``).
        """
        reply, informs = self.blocking_request(Message.request("sensor-value", sensorname))
        self.test.assertTrue(reply.reply_ok(), "Could not retrieve sensor '{}': {}".format(
            sensorname, _native(reply.arguments[1]) if len(reply.arguments) >= 2 else ""))
        self.test.assertEqual(len(informs), 1, "Expected one sensor value inform for sensor "
                              f"'{sensorname}', but received {len(informs)}.")
        inform = informs[0]
        self.test.assertEqual(len(inform.arguments), 5, "Expected sensor value inform for "
                              f"sensor '{sensorname}' to have five arguments, but received "
                              f"{len(inform.arguments)}.")
        raw_timestamp, _num, _name, raw_status, raw_value = inform.arguments
        typestr = repr(sensortype)
        value: Any = raw_value
        try:
            if sensortype is bool:
                typestr = f"{int!r} and then {bool!r}"
                value = bool(int(raw_value))
            elif sensortype is str:
                value = _native(raw_value)
            else:
                value = sensortype(raw_value)
        except ValueError as exc:
            self.test.fail(f"Could not convert value {raw_value!r} of sensor '{sensorname}' to type {typestr}: {exc}")
        status = _native(raw_status)
        self.test.assertTrue(status in _SENSOR_STATUSES,
                             f"Got invalid status value {status!r} for sensor '{sensorname}'.")
        timestamp: Any = raw_timestamp
        try:
            timestamp = float(raw_timestamp)
        except ValueError as exc:
            self.test.fail(f"Could not convert timestamp {raw_timestamp!r} of sensor '{sensorname}' to type {float!r}: {exc}")
        return value, status, timestamp

    def get_sensor_value(self, sensorname: str, sensortype=str):
        """Return the (typed) value of a sensor."""
        return self.get_sensor(sensorname, sensortype)[0]

    def get_sensor_status(self, sensorname: str) -> str:
        """Return the status of a sensor."""
        return self.get_sensor(sensorname)[1]

    def get_sensor_timestamp(self, sensorname: str) -> float:
        """Return the timestamp of a sensor."""
        return self.get_sensor(sensorname)[2]

    def assert_sensor_equals(self, sensorname, expected, sensortype=str, msg=None, places=7,
                             status=None) -> None:
        """Assert a sensor's value (and optionally status).

        Parameters
        ----------
        sensorname : str
            Sensor name.
        expected : object
            Expected value, of `sensortype`.
        sensortype : type, optional
            Type to convert the value to.
        msg : str, optional
            Failure message; ``%r`` is replaced by the value received.
        places : int, optional
            Decimal places for float comparison.
        status : str, optional
            Expected status.
        """
        if msg is None:
            places_msg = f" (within {places} decimal places)" if sensortype is float else ""
            msg = f"Value of sensor '{sensorname}' is %r. Expected {expected!r}{places_msg}."
        got, got_status, _ = self.get_sensor(sensorname, sensortype)
        if "%r" in msg:
            msg = msg % (got,)
        if sensortype is float:
            self.test.assertAlmostEqual(got, expected, places, msg)
        else:
            self.test.assertEqual(got, expected, msg)
        if status is not None:
            self.test.assertEqual(got_status, status, f"Status of sensor '{sensorname}' is {got_status!r}. Expected {status!r}.")

    def assert_sensor_status_equals(self, sensorname, expected_status, msg=None) -> None:
        """Assert a sensor's status (``%r`` in `msg` is replaced by the status)."""
        if msg is None:
            msg = f"Status of sensor '{sensorname}' is %r. Expected {expected_status!r}."
        got_status = self.get_sensor_status(sensorname)
        if "%r" in msg:
            msg = msg % (got_status,)
        self.test.assertEqual(got_status, expected_status, msg)

    def assert_sensor_not_equal(self, sensorname, expected, sensortype=str, msg=None,
                                places=7) -> None:
        """Assert a sensor's value differs from `expected`."""
        if msg is None:
            places_msg = f" (within {places} decimal places)" if sensortype is float else ""
            msg = f"Value of sensor '{sensorname}' is %r. Expected a different value{places_msg}."
        got = self.get_sensor_value(sensorname, sensortype)
        if "%r" in msg:
            msg = msg % (got,)
        if sensortype is float:
            self.test.assertNotAlmostEqual(got, expected, places, msg)
        else:
            self.test.assertNotEqual(got, expected, msg)

    def wait_until_sensors_equal(self, timeout, sensor_tuples, msg=None) -> None:
        """Wait up to `timeout` s for several sensors to reach values, else fail."""
        sensor_tuples = [self.expected_sensor_value_tuple(*t) for t in sensor_tuples]
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.assert_sensors_equal(sensor_tuples, msg)
                return
            except AssertionError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        self.assert_sensors_equal(sensor_tuples, (msg or "") + f": timed out after {timeout}s")

    def assert_sensors_equal(self, sensor_tuples, msg=None) -> None:
        """Assert the values of several sensors (see :meth:`expected_sensor_value_tuple`)."""
        for name, expected, sensortype, places in (
                self.expected_sensor_value_tuple(*t) for t in sensor_tuples):
            self.assert_sensor_equals(name, expected, sensortype, msg=msg, places=places)

    def assert_sensors_not_equal(self, sensor_tuples, msg=None) -> None:
        """Assert several sensors differ from the given values."""
        for name, expected, sensortype, places in (
                self.expected_sensor_value_tuple(*t) for t in sensor_tuples):
            self.assert_sensor_not_equal(name, expected, sensortype, msg=msg, places=places)

    def wait_condition(self, timeout, predicate, *args, **kwargs):
        """Poll ``predicate(*args, **kwargs)`` (every ``poll_period`` s) until true.

        Returns
        -------
        (bool, str)
            The last result and an explanation when it timed out.
        """
        poll_period = kwargs.pop("poll_period", 0.02)
        deadline = time.monotonic() + timeout
        cond = predicate(*args, **kwargs)
        while not cond and time.monotonic() < deadline:
            time.sleep(poll_period)
            cond = predicate(*args, **kwargs)
        return (cond, "" if cond else f"Timed out after {timeout} seconds")

    def wait_until_sensor_equals(self, timeout, sensorname, value, sensortype=str, places=7,
                                 pollperiod=0.02) -> None:
        """Poll a sensor until it equals `value`; fail after `timeout` s."""
        if sensortype is float:
            def cmpfun(got, exp):
                return abs(got - exp) < 10 ** -places
        else:
            def cmpfun(got, exp):
                return got == exp
        deadline = time.monotonic() + timeout
        lastval = self.get_sensor_value(sensorname, sensortype)
        while not cmpfun(lastval, value):
            if time.monotonic() >= deadline:
                self.test.fail(f"Timed out while waiting {timeout}s for {sensorname} sensor to become {value}. "
                               f"Last value was {lastval}.")
            time.sleep(pollperiod)
            lastval = self.get_sensor_value(sensorname, sensortype)

    # ------------------------------------------------------------------ requests
    def test_sensor_list(self, expected_sensors, ignore_descriptions=False) -> None:
        """Assert the device's ``?sensor-list`` equals `expected_sensors`.

        Parameters
        ----------
        expected_sensors : list of tuple
            ``(name, description, units, type, *params)`` per sensor.
        ignore_descriptions : bool, optional
            Leave descriptions out of the comparison.
        """
        def sensortuple(name, description, units, stype, *params):
            stype = _native(stype)
            if stype == "float":
                params = [f"{float(p)!r}" for p in params]
            return (_native(name), _native(description), _native(units), stype) + tuple(
                _native(p) for p in params)

        reply, informs = self.blocking_request(Message.request("sensor-list"))
        self.test.assertTrue(reply.reply_ok(), "Could not retrieve sensor list: %s" % (
            _native(reply.arguments[1]) if len(reply.arguments) >= 2 else ""))
        expected = [sensortuple(*t) for t in expected_sensors]
        got = [sensortuple(*m.arguments) for m in informs]
        if ignore_descriptions:
            expected = [s[:1] + s[2:] for s in expected]
            got = [s[:1] + s[2:] for s in got]
        expected_set, got_set = set(expected), set(got)
        self.test.assertEqual(got_set, expected_set, (
            "Sensor list differs from expected list.\nThese sensors are missing:\n{}\n"
            "Found these unexpected sensors:\n{}".format(
                "\n".join(sorted(str(t) for t in expected_set - got_set)),
                "\n".join(sorted(str(t) for t in got_set - expected_set)))))

    def test_help(self, expected_requests, full_descriptions=False,
                  exclude_defaults=True) -> None:
        """Assert the device's ``?help`` list equals `expected_requests`.

        Parameters
        ----------
        expected_requests : list of str or of (name, description) tuples
            Expected requests (descriptions compared up to the first newline
            unless `full_descriptions`).
        full_descriptions : bool, optional
            Compare whole descriptions.
        exclude_defaults : bool, optional
            Ignore the requests every :class:`katcp.DeviceServer` has.
        """

        def to_bytes(value):
            return value if isinstance(value, bytes) else str(value).encode("utf-8")

        descriptions = bool(expected_requests) and not isinstance(expected_requests[0], str)
        reply, informs = self.blocking_request(Message.request("help"))
        self.test.assertTrue(reply.reply_ok(), "Could not retrieve help list: %s" % (
            _native(reply.arguments[1]) if len(reply.arguments) >= 2 else ""))
        # (name, description) tuples, or just names when expected_requests has no descriptions.
        got_requests: List[Any] = [tuple(m.arguments) for m in informs]
        if descriptions:
            if not full_descriptions:
                got_requests = [(name, desc.split(b"\n")[0]) for (name, desc) in got_requests]
                expected_requests = [(to_bytes(name), to_bytes(desc).split(b"\n")[0])
                                     for (name, desc) in expected_requests]
            else:
                expected_requests = [(to_bytes(name), to_bytes(desc))
                                     for (name, desc) in expected_requests]
        else:
            got_requests = [args[0] for args in got_requests]
            expected_requests = [to_bytes(name) for name in expected_requests]
        got_set, expected_set = set(got_requests), set(expected_requests)
        if exclude_defaults:
            defaults = {to_bytes(name) for name in DeviceServer._request_handlers}
            if descriptions:
                got_set = {t for t in got_set if t[0] not in defaults}
            else:
                got_set = got_set - defaults
        self.test.assertEqual(got_set, expected_set, (
            "Help list differs from expected list.\nThese requests are missing:\n{}\n"
            "Found these unexpected requests:\n{}".format(
                "\n".join(sorted(str(t) for t in expected_set - got_set)),
                "\n".join(sorted(str(t) for t in got_set - expected_set)))))

    def assert_request_succeeds(self, requestname, *params, **kwargs) -> List[str]:
        """Assert a request succeeds; optionally check reply arguments and informs.

        Parameters
        ----------
        requestname : str
            Request name.
        *params
            Request arguments.
        args_echo : bool, optional
            Reply arguments after ``ok`` must equal `params`.
        args_equal : list, optional
            Reply arguments after ``ok`` must equal this.
        args_in : list of lists, optional
            Reply arguments after ``ok`` must be one of these.
        args_length : int, optional
            Number of reply arguments after ``ok``.
        informs_count : int, optional
            Number of informs.
        informs_args_equal : list of lists, optional
            Arguments of each inform, in order.

        Returns
        -------
        list of str
            Reply arguments after ``ok``.
        """
        reply, informs = self.blocking_request(Message.request(requestname, *params))
        self.test.assertEqual(reply.name, requestname, f"Reply to request '{requestname}' has name '{reply.name}'.")
        self.test.assertTrue(reply.reply_ok(), (
            "Expected request '{}' called with parameters {!r} to succeed, but it failed {}.".format(requestname, params, (f"with error '{_native(reply.arguments[1])}'"
                                     if len(reply.arguments) >= 2
                                     else "(with no error message)"))))
        args = list_to_native_strings(reply.arguments[1:])
        args_equal = kwargs.get("args_equal")
        args_in = kwargs.get("args_in")
        args_length = kwargs.get("args_length")
        informs_count = kwargs.get("informs_count")
        informs_args_equal = kwargs.get("informs_args_equal")
        if kwargs.get("args_echo", False):
            args_equal = params
        if args_equal is not None:
            args_equal = list_to_native_strings(args_equal)
            self.test.assertEqual(args, args_equal, (
                f"Expected reply to request '{requestname}' called with parameters {params!r} to have arguments "
                f"{args_equal}, but received {args}."))
        elif args_in is not None:
            args_in = [list_to_native_strings(a) for a in args_in]
            self.test.assertTrue(args in args_in, (
                f"Expected reply to request '{requestname}' called with parameters {params!r} to have arguments "
                f"in {args_in}, but received {args}."))
        elif args_length is not None:
            self.test.assertEqual(len(args), args_length, (
                f"Expected reply to request '{requestname}' called with parameters {params!r} "
                f"to have {args_length} arguments, but received {len(args)}: {args}."))
        if informs_count is not None:
            self.test.assertEqual(len(informs), informs_count, (
                f"Expected {informs_count} informs in reply to request '{requestname}' called "
                f"with parameters {params!r}, but received {len(informs)}."))
        if informs_args_equal is not None:
            expected_inform_args = [list_to_native_strings(i) for i in informs_args_equal]
            actual_inform_args = [list_to_native_strings(i.arguments) for i in informs]
            self.test.assertEqual(actual_inform_args, expected_inform_args, (
                f"Expected inform arguments {expected_inform_args} in reply to request "
                f"{requestname!r} called with parameters {params!r}, but received "
                f"{actual_inform_args!r}."))
        return args

    def assert_request_fails(self, requestname, *params, **kwargs):
        """Assert a request fails; optionally check status and error text.

        Parameters
        ----------
        requestname : str
            Request name.
        *params
            Request arguments.
        status_equals : str, optional
            Expected reply status (e.g. ``"fail"``, ``"invalid"``).
        error_equals : str, optional
            Expected error message.

        Returns
        -------
        (status, error)
            Status (bytes) and error message (str or None).
        """
        reply, informs = self.blocking_request(Message.request(requestname, *params))
        self.test.assertEqual(reply.name, requestname, f"Reply to request '{requestname}' has name '{reply.name}'.")
        self.test.assertFalse(reply.reply_ok(), (
            f"Expected request '{requestname}' called with parameters {params!r} to fail, but it was successful."))
        status = reply.arguments[0]
        error = _native(reply.arguments[1]) if len(reply.arguments) > 1 else None
        status_equals = kwargs.get("status_equals")
        error_equals = kwargs.get("error_equals")
        if status_equals is not None:
            self.test.assertTrue(_native(status) == _native(status_equals), (
                f"Expected request '{requestname}' called with parameters {params!r} to return status {_native(status_equals)}, but "
                f"the status was {_native(status)!r}."))
        if error_equals is not None:
            error_equals = _native(error_equals)
            self.test.assertTrue(error is not None and error == error_equals, (
                f"Expected request '{requestname}' called with parameters {params!r} to fail with error {error_equals}, but "
                f"the error was {error!r}."))
        return status, error

    def test_setter_request(self, requestname, sensorname, sensortype=str, good=(), bad=(),
                            places=7, args_echo=False) -> None:
        """Check a request that sets one sensor: `good` values stick, `bad` ones fail."""
        for value in good:
            self.assert_request_succeeds(requestname, value, args_echo=args_echo)
            time.sleep(self._sensor_lag())
            msg = ("After request '{}' was called with parameter {!r}, value of sensor '{}' is "
                   "%r. Expected {!r}{}.".format(requestname, value, sensorname, value,
                                            f" (within {places} decimal places)"
                                            if sensortype is float else ""))
            self.assert_sensor_equals(sensorname, value, sensortype, msg, places)
        for value in bad:
            self.assert_request_fails(requestname, value)

    def test_multi_setter_request(self, requestname, good=(), bad=()) -> None:
        """Check a request that changes several sensors.

        Parameters
        ----------
        requestname : str
            Request name.
        good : list of tuples
            ``(params, expected_sensor_tuples[, options])``; options may hold
            ``"statuses"`` (list of (name, status)) and ``"delay"`` (s).
        bad : list of tuples
            Parameters that must make the request fail.
        """
        for entry in good:
            params, expected_values = entry[0], entry[1]
            options = entry[2] if len(entry) > 2 else {}
            self.assert_request_succeeds(requestname, *params)
            time.sleep(self._sensor_lag() + options.get("delay", 0))
            for name, value, sensortype, places in (
                    self.expected_sensor_value_tuple(*t) for t in expected_values):
                msg = ("After request '{}' was called with parameters {!r}, value of sensor '{}' "
                       "is %r. Expected {!r}{}.".format(requestname, params, name, value,
                                                   f" (within {places} decimal places)"
                                                   if sensortype is float else ""))
                self.assert_sensor_equals(name, value, sensortype, msg, places)
            for name, status in options.get("statuses", ()):
                msg = (f"After request '{requestname}' was called with parameters {params!r}, status of sensor "
                       f"'{name}' is %r. Expected {status!r}.")
                self.assert_sensor_status_equals(name, status, msg)
        for params in bad:
            self.assert_request_fails(requestname, *params)
