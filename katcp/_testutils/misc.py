"""General test helpers: log capture, waits on sensors and mocks, message
assertions, ioloop helpers and a time-warping AsyncTestCase."""

from __future__ import annotations

import functools
import logging
import queue
import re
import threading
import time
import unittest
from typing import TYPE_CHECKING, Any, Callable
from unittest import mock

import tornado.gen
import tornado.ioloop
import tornado.locks
import tornado.testing

from katcp._aio.loopcalls import call_blocking, loop_calls
from katcp._aio.proxies import ObjectWrapper

logger = logging.getLogger("katcp.testutils")

# The assertion mixins are combined with unittest.TestCase by their users, and use its
# assert* methods; only the type checker is told so (at run time they stay plain mixins,
# as in katcp-python).
if TYPE_CHECKING:
    _TestCaseBase = unittest.TestCase
else:
    _TestCaseBase = object


def add_mid_to_msg_str(msg_str: str, mid) -> str:
    """Insert ``[mid]`` after the name of a message string (unchanged if `mid` is falsy)."""
    if mid:
        parts = msg_str.split(" ")
        parts[0] += f"[{mid}]"
        return " ".join(parts)
    return msg_str


class TestLogHandler(logging.Handler):
    """Logging handler that keeps every record (in ``_records``)."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        super().__init__()
        self._records: list = []

    def emit(self, record: logging.LogRecord) -> None:
        """Store `record`."""
        self._records.append(record)

    def clear(self) -> None:
        """Forget the stored records."""
        self._records = []


class SensorComparisonMixin(_TestCaseBase):
    """unittest.TestCase mixin comparing Sensor objects with descriptions.

    A description is a dict with any of the keys of :attr:`key_fns`: name,
    status, type, value, timestamp, description, units, params.
    """

    key_fns = dict(
        name=lambda s: s.name,
        status=lambda s: s.read()[1],
        type=lambda s: s.SENSOR_TYPE_LOOKUP[s.stype],
        value=lambda s: s.value(),
        timestamp=lambda s: s.read()[0],
        description=lambda s: s.description,
        units=lambda s: s.units,
        params=lambda s: s.params,
    )

    def _get_sensor_description(self, sensor, desired_keys=None, ignore_keys=()) -> dict:
        keys = set(self.key_fns) if desired_keys is None else set(desired_keys)
        keys -= set(ignore_keys)
        description = {}
        for key in keys:
            try:
                key_fn = self.key_fns[key]
            except KeyError:
                raise KeyError("Unknown sensor key: " + key) from None
            description[key] = key_fn(sensor)
        return description

    def assert_sensor_equal(self, actual_sensor, desired_sensor, ignore_attributes=()) -> None:
        """Assert two sensors are equal, ignoring `ignore_attributes` (description keys)."""
        self.assertEqual(
            self._get_sensor_description(actual_sensor, ignore_keys=ignore_attributes),
            self._get_sensor_description(desired_sensor, ignore_keys=ignore_attributes))

    def assert_sensor_equal_description(self, actual_sensor, desired_description) -> None:
        """Assert a sensor matches a description dict (missing keys are not checked)."""
        if "name" not in desired_description:
            desired_description = dict(desired_description, name=actual_sensor.name)
        self.assert_sensors_equal_description([actual_sensor], [desired_description])

    def assert_sensors_equal_description(self, actual_sensors, desired_description) -> None:
        """Assert sensors match description dicts, matched up by name."""
        actual = {s.name: s for s in actual_sensors}
        desired = {d["name"]: d for d in desired_description}
        self.assertEqual(sorted(actual), sorted(desired))
        actual_description = {name: self._get_sensor_description(actual[name], list(info))
                              for name, info in desired.items()}
        self.maxDiff = None
        self.assertEqual(actual_description, desired)

    def assert_sensors_value_conditions(self, actual_sensors, value_tests) -> None:
        """Run ``value_tests[name](sensor.value())`` for each named sensor."""
        actual = {s.name: s for s in actual_sensors}
        self.assertTrue(all(name in actual for name in value_tests))
        for name, test in value_tests.items():
            test(actual[name].value())


class TestUtilMixin(_TestCaseBase):
    """unittest.TestCase mixin for assertions about lists of KATCP messages."""

    def _assert_msgs_length(self, actual_msgs, expected_number) -> None:
        num = len(actual_msgs)
        if num < expected_number:
            self.assertEqual(num, expected_number, "Too few messages received.")
        elif num > expected_number:
            self.assertEqual(num, expected_number, "Too many messages received.")

    def _assert_msgs_equal(self, actual_msgs, expected_msgs, mid=None) -> None:
        """Assert messages equal the expected strings (with `mid` added if given)."""
        for msg, msg_str in zip(actual_msgs, expected_msgs):
            self.assertEqual(str(msg), add_mid_to_msg_str(msg_str, mid))
        self._assert_msgs_length(actual_msgs, len(expected_msgs))

    def _assert_msgs_match(self, actual_msgs, expected) -> None:
        """Assert messages match the expected regex patterns."""
        for msg, pattern in zip(actual_msgs, expected):
            self.assertTrue(re.match(pattern, str(msg)),
                            f"Message did match pattern {pattern!r}: {msg}")
        self._assert_msgs_length(actual_msgs, len(expected))

    def _assert_msgs_like(self, actual_msgs, expected, mid=None) -> None:
        """Assert messages start/end with the expected ``(prefix, suffix)`` strings."""
        for msg, (prefix, suffix) in zip(actual_msgs, expected):
            str_msg = str(msg)
            prefix = add_mid_to_msg_str(prefix, mid)
            if prefix and not str_msg.startswith(prefix):
                self.assertEqual(str_msg, prefix,
                                 msg=f"Message '{str_msg}' does not start with '{prefix}'.")
            if suffix and not str_msg.endswith(suffix):
                self.assertEqual(str_msg, suffix,
                                 msg=f"Message '{str_msg}' does not end with '{suffix}'.")
        self._assert_msgs_length(actual_msgs, len(expected))


def counting_callback(event: threading.Event | None = None, number_of_calls: int = 1):
    """Decorate a callback so that `event` is set after `number_of_calls` calls.

    The decorated callback has ``done`` (the event), ``get_no_calls()``,
    ``wait(timeout)``, ``assert_wait(timeout=1)`` and ``reset()``.
    """
    if event is None:
        event = threading.Event()

    def decorator(original_callback: Callable) -> Callable:
        assert number_of_calls > 0
        calls = [0]

        @functools.wraps(original_callback)
        def wrapped_callback(*args, **kwargs):
            retval = original_callback(*args, **kwargs)
            calls[0] += 1
            if calls[0] >= number_of_calls:
                event.set()
            return retval

        def assert_wait(timeout=1):
            done = event.wait(timeout)
            assert event.is_set()
            return done

        def reset():
            calls[0] = 0
            event.clear()

        decorated: Any = wrapped_callback  # a function with attributes
        decorated.get_no_calls = lambda: calls[0]
        decorated.done = event
        decorated.wait = event.wait
        decorated.assert_wait = assert_wait
        decorated.reset = reset
        return decorated
    return decorator


def suppress_queue_repeats(suppressed_queue, initial_value, read_time=None):
    """Yield the values read from a queue, dropping runs of repeats.

    Stops when the queue stays empty until `read_time` seconds after the
    start (None: read forever).
    """
    deadline = None if read_time is None else time.monotonic() + read_time
    cur_value = initial_value
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            next_value = suppressed_queue.get(timeout=wait)
        except queue.Empty:
            return
        if next_value != cur_value:
            yield next_value
            cur_value = next_value


class SensorTransitionWaiter:
    """Wait for a sensor to go through a sequence of values.

    Parameters
    ----------
    sensor : katcp.Sensor
        Sensor to watch (observed from construction on).
    value_sequence : sequence, optional
        Values, or callables returning True for a matching value. The first
        must match the current value. Without it only
        :meth:`get_received_values` is usable.
    """

    def __init__(self, sensor, value_sequence=None) -> None:
        self.sensor = sensor
        self.desired_value_sequence = value_sequence
        self._torn_down = False
        self._done = False
        self._value_queue: queue.Queue = queue.Queue()
        self.timed_out = False
        current_value = self._get_current_sensor_value()
        if value_sequence and not self._test_value(current_value, value_sequence[0]):
            raise ValueError("Sensor value does not satisfy initial condition")
        self.received_values = [current_value]
        self._configure_sensor()

    def _get_current_sensor_value(self):
        return self.sensor.value()

    def _configure_sensor(self) -> None:
        waiter = self

        class _Observer:
            def update(self, sensor, reading):
                waiter._sensor_callback(sensor, reading)

        self._observer = _Observer()
        self.sensor.attach(self._observer)

    def _teardown_sensor(self) -> None:
        self.sensor.detach(self._observer)

    def _sensor_callback(self, sensor, reading) -> None:
        self._value_queue.put(reading[2])

    @staticmethod
    def _test_value(value, value_test) -> bool:
        return value_test(value) if callable(value_test) else value == value_test

    def wait(self, timeout: float | None = 5) -> bool:
        """Wait for the sequence; True if matched, False on mismatch or timeout.

        Sets ``timed_out`` on timeout; ``received_values`` holds what was seen.
        """
        if self._done:
            raise RuntimeError("Transition already triggered. Instantiate a new "
                               "SensorTransitionWaiter object")
        if self._torn_down:
            raise RuntimeError("This object has been torn down. Instantiate a new "
                               "SensorTransitionWaiter object")
        values = suppress_queue_repeats(self._value_queue, self.received_values[-1], timeout)
        sequence = self.desired_value_sequence
        try:
            for current_test, next_test in zip(sequence[:-1], sequence[1:]):
                if self._test_value(self.received_values[-1], next_test):
                    continue
                while True:
                    next_value = next(values)
                    self.received_values.append(next_value)
                    if self._test_value(next_value, next_test):
                        break
                    if not self._test_value(next_value, current_test):
                        return False
            return True
        except StopIteration:
            self.timed_out = True
            return False
        finally:
            self._done = True
            self.teardown()

    def get_received_values(self, stop: bool = True, reset: bool = True) -> list:
        """Return the values received so far (optionally stop watching / reset)."""
        try:
            while True:
                self.received_values.append(self._value_queue.get_nowait())
        except queue.Empty:
            pass
        received = self.received_values
        if reset:
            self.received_values = []
        if stop:
            self.teardown()
        return received

    def teardown(self) -> None:
        """Stop watching the sensor."""
        if self._torn_down:
            return
        self._teardown_sensor()
        self._torn_down = True


class SensorTransitionStatusWaiter(SensorTransitionWaiter):
    """SensorTransitionWaiter matching ``(status, value)`` tuples."""

    def _get_current_sensor_value(self):
        return tuple(self.sensor.read()[1:])

    def _sensor_callback(self, sensor, reading) -> None:
        self._value_queue.put(tuple(reading[1:]))


def wait_sensor(sensor, value, status=None, timeout: float = 5) -> bool:
    """Block until `sensor` has `value` (and `status`); return whether it did in time."""
    test_val = value if status is None else (status, value)
    tests = (lambda x: True, test_val)
    cls = SensorTransitionWaiter if status is None else SensorTransitionStatusWaiter
    return cls(sensor, tests).wait(timeout=timeout)


def wait_sensor_async(sensor, value, status=None, ioloop=None):
    """Future (on `ioloop`) resolving to True once `sensor` has `value` (and `status`)."""
    ioloop = ioloop or tornado.ioloop.IOLoop.current()
    fut = ioloop.asyncio_loop.create_future()

    def _resolve() -> None:
        if not fut.done():
            fut.set_result(True)

    class _Observer:
        def update(self, sensor, reading):
            if reading[2] == value and (status is None or reading[1] == status):
                sensor.detach(self)
                calls.post(_resolve)

    calls = loop_calls(ioloop.asyncio_loop)
    observer = _Observer()
    sensor.attach(observer)
    calls.post(observer.update, sensor, sensor.read())
    return fut


def start_thread_with_cleanup(test_instance, thread_object, timeout: float = 1,
                              start_timeout: float | None = None) -> None:
    """Start a thread/server/client and register ``stop()`` then ``join()`` as cleanups.

    Parameters
    ----------
    test_instance : unittest.TestCase
        Test whose ``addCleanup`` is used.
    thread_object : object
        Has ``start([timeout])``, ``stop()`` and ``join(timeout)``.
    timeout : float, optional
        Join timeout.
    start_timeout : float, optional
        Passed to ``start(timeout=...)`` when given.
    """
    test_instance.addCleanup(thread_object.join, timeout=timeout)
    test_instance.addCleanup(thread_object.stop)
    if start_timeout is not None:
        thread_object.start(timeout=start_timeout)
    else:
        thread_object.start()


class AtomicIaddCallback(ObjectWrapper):
    """Proxy whose ``+=`` is done under a lock and reported to `callback`."""

    _mutex = None
    _callback = None

    def __init__(self, ob, callback=lambda x: x, mutex=None) -> None:
        self._callback = callback
        self._mutex = mutex if mutex else threading.RLock()
        super().__init__(ob)

    def __iadd__(self, other):
        with self._mutex:
            self.__subject__ += other
            val = self.__subject__
        self._callback(val)
        return self


class WaitingMock(mock.Mock):
    """Mock whose call count can be waited for from another thread."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._counted_queue: queue.Queue = queue.Queue(maxsize=1)
        # A proxy of the int, so that mock's ``call_count += 1`` reports each call.
        self.call_count = AtomicIaddCallback(  # type: ignore[assignment]
            0, callback=self._call_count_callback)

    def _call_count_callback(self, call_count) -> None:
        try:
            self._counted_queue.put_nowait(call_count)
        except queue.Full:
            pass

    def reset_mock(self, visited=None, **kwargs) -> None:
        """Reset the mock, keeping the waitable call counter."""
        super().reset_mock(visited, **kwargs)
        self.call_count = AtomicIaddCallback(  # type: ignore[assignment]
            self.call_count, callback=self._call_count_callback)

    def assert_wait_call_count(self, count: int, timeout: float = 1.0):
        """Wait until called at least `count` times; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        if self.call_count >= count and len(self.call_args_list) >= count:
            return True
        while self.call_count < count:
            remaining = deadline - time.monotonic()
            if remaining < 0:
                break
            try:
                self._counted_queue.get(timeout=remaining)
            except queue.Empty:
                pass
        assert self.call_count >= count
        while len(self.call_args_list) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        if len(self.call_args_list) < count:
            raise RuntimeError("call_args_list not updated within timeout.")
        return True


class AsyncWaitingMock(mock.Mock):
    """Mock whose call count can be awaited in the ioloop."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._call_event = tornado.locks.Event()

    def _mock_call(self, *args, **kwargs):
        ret = super()._mock_call(*args, **kwargs)
        self._call_event.set()
        return ret

    async def assert_wait_call_count(self, count: int, timeout: float = 1.0):
        """Coroutine: wait until called >= `count` times; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.call_count < count:
            remaining = deadline - time.monotonic()
            if remaining < 0:
                break
            try:
                await self._call_event.wait(remaining)
                self._call_event.clear()
            except tornado.gen.TimeoutError:
                pass
        assert self.call_count >= count
        return True


def call_in_ioloop(ioloop, fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` in `ioloop` and block for its (awaited) result.

    The ``ioloop_timeout`` keyword (default 5 s) bounds the wait
    (``concurrent.futures.TimeoutError``); exceptions of `fn` are re-raised.
    """
    ioloop_timeout = kwargs.pop("ioloop_timeout", 5)
    return call_blocking(ioloop.asyncio_loop, fn, args, kwargs, ioloop_timeout)


class TimewarpAsyncTestCase(tornado.testing.AsyncTestCase):
    """AsyncTestCase whose ioloop clock only moves when told to.

    Both ``io_loop.time()`` and the asyncio loop's ``time()`` (which drives
    ``call_later``/``call_at`` under tornado 6) read ``self.ioloop_time``;
    advance it with :meth:`set_ioloop_time`. Subclasses must call
    ``super().setUp()``.
    """

    def get_new_ioloop(self):
        """Create the test's ioloop with the fake clock installed."""
        ioloop = super().get_new_ioloop()
        self.ioloop_time = 0

        def fake_time() -> float:
            return self.ioloop_time

        ioloop.asyncio_loop.time = fake_time
        ioloop.time = fake_time

        def set_ioloop_thread_id():
            self.ioloop_thread_id = threading.get_ident()
        loop_calls(ioloop.asyncio_loop).post(set_ioloop_thread_id)
        return ioloop

    def wake_ioloop(self):
        """Future resolving after the ioloop has run once more."""
        fut = self.io_loop.asyncio_loop.create_future()
        loop_calls(self.io_loop.asyncio_loop).post(lambda: fut.done() or fut.set_result(None))
        return fut

    def set_ioloop_time(self, new_time: float, wake_ioloop: bool = True):
        """Move the fake clock forward to `new_time` (and wake the loop)."""
        logger.debug("setting ioloop time: %s", new_time)
        assert new_time > self.ioloop_time
        self.ioloop_time = new_time
        if wake_ioloop:
            return self.wake_ioloop()
        return None


class TimewarpAsyncTestCaseTimeAdvancer(threading.Thread):
    """Thread advancing a TimewarpAsyncTestCase's clock by `quantum` at `rate` steps/s."""

    def __init__(self, test_instance, quantum: float = 0.05, rate: float = 1000.0) -> None:
        super().__init__(daemon=True)
        self.test_instance = test_instance
        self.quantum = quantum
        self.rate = rate
        self._running = threading.Event()
        self._stop_requested = threading.Event()

    def start(self) -> None:
        """Start advancing; stopping is registered as a test cleanup."""
        self.test_instance.addCleanup(self.stop)
        super().start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop advancing."""
        if timeout:
            self._running.wait(timeout)
        self._stop_requested.set()
        self._running.clear()

    def run(self) -> None:
        self._running.set()
        while not self._stop_requested.is_set():
            done = threading.Event()

            def advance(done=done):
                test = self.test_instance
                test.set_ioloop_time(test.ioloop_time + self.quantum, wake_ioloop=False)
                done.set()
            if not loop_calls(self.test_instance.io_loop.asyncio_loop).post(advance):
                break  # the loop is closed
            while not done.wait(0.05):
                if self._stop_requested.is_set():
                    return
            time.sleep(1.0 / self.rate)
