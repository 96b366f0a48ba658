"""Tests for katcp.sampling: all seven strategies on a fake loop clock.

The strategies schedule on ``loop.time()``/``loop.call_at``.  Each test runs on
``FakeClockLoop``, a real asyncio loop whose clock only moves when the test
calls ``advance()``; timers fire in order at their exact due times and nothing
ever sleeps.
"""

import asyncio
import logging
import math
import threading

import pytest

from katcp.sampling import (
    AGE_OF_UNIVERSE,
    SampleAuto,
    SampleDifferential,
    SampleDifferentialRate,
    SampleEvent,
    SampleEventRate,
    SampleNone,
    SamplePeriod,
    SampleStrategy,
    format_inform_v4,
    format_inform_v5,
    update_in_ioloop,
)
from katcp.sensor import Sensor

NOMINAL = Sensor.NOMINAL
WARN = Sensor.WARN
ERROR = Sensor.ERROR


class FakeClockLoop(asyncio.SelectorEventLoop):
    """Asyncio loop with a clock that only moves in :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__()
        self._fake_now = start
        self._timers = []

    def time(self) -> float:
        return self._fake_now

    def call_at(self, when, callback, *args, context=None):
        handle = super().call_at(when, callback, *args, context=context)
        self._timers.append(handle)
        return handle

    async def settle(self) -> None:
        """Let ready callbacks (and callbacks they schedule) run."""
        for _ in range(6):
            await asyncio.sleep(0)

    def pending_timers(self):
        now = self._fake_now
        self._timers = [h for h in self._timers if not h.cancelled() and h.when() > now]
        return self._timers

    async def advance(self, dt: float) -> None:
        """Move the clock by ``dt``, firing each timer at its own due time."""
        target = self._fake_now + dt
        await self.settle()
        while True:
            due = [h.when() for h in self.pending_timers()]
            if not due or min(due) > target:
                break
            self._fake_now = min(due)
            await self.settle()
        self._fake_now = target
        await self.settle()


def run(test_coro_fn):
    """Run ``test_coro_fn(loop)`` on a fresh FakeClockLoop."""
    loop = FakeClockLoop()
    try:
        return loop.run_until_complete(test_coro_fn(loop))
    finally:
        loop.close()


class Recorder:
    """inform_callback that records (loop time, reading)."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self.calls = []

    def __call__(self, sensor, reading) -> None:
        self.calls.append((self.loop.time(), sensor, tuple(reading)))

    @property
    def values(self):
        return [reading[2] for _, _, reading in self.calls]

    @property
    def times(self):
        return [t for t, _, _ in self.calls]

    def clear(self) -> None:
        self.calls.clear()


def int_sensor(value=0):
    s = Sensor.integer("an.int", "An integer", "", [-100, 100], default=value)
    s.set(1.0, NOMINAL, value)
    return s


def float_sensor(value=0.0):
    s = Sensor.float("a.float", "A float", "V", [-100.0, 100.0], default=value)
    s.set(1.0, NOMINAL, value)
    return s


def make(strategy, sensor, loop, *params):
    rec = Recorder(loop)
    strat = SampleStrategy.get_strategy(strategy, rec, sensor, *params, ioloop=loop)
    return strat, rec


# --------------------------------------------------------------------------
# factory, constants, formatting
# --------------------------------------------------------------------------

CASES = [
    ("none", (), SampleNone, SampleStrategy.NONE),
    ("auto", (), SampleAuto, SampleStrategy.AUTO),
    ("period", (b"0.5",), SamplePeriod, SampleStrategy.PERIOD),
    ("event", (), SampleEvent, SampleStrategy.EVENT),
    ("differential", (b"2",), SampleDifferential, SampleStrategy.DIFFERENTIAL),
    ("event-rate", (b"0.1", b"10"), SampleEventRate, SampleStrategy.EVENT_RATE),
    ("differential-rate", (b"3", b"0.1", b"10"), SampleDifferentialRate,
     SampleStrategy.DIFFERENTIAL_RATE),
]


@pytest.mark.parametrize("name, params, cls, const", CASES)
def test_get_strategy_classes_and_formatting(name, params, cls, const):
    async def body(loop):
        sensor = int_sensor()
        for strategy_name in (name, name.encode()):
            strat, _ = make(strategy_name, sensor, loop, *params)
            assert type(strat) is cls
            assert strat.get_sampling() == const
            assert SampleStrategy.SAMPLING_LOOKUP[const] == name.encode()
            assert SampleStrategy.SAMPLING_LOOKUP_REV[name.encode()] == const
            # parameters are echoed exactly as received
            assert strat.get_sampling_formatted() == (name.encode(), list(params))
            assert strat.ioloop is loop
            assert name in repr(strat)

    run(body)


def test_constants_match_katcp_python():
    assert (SampleStrategy.NONE, SampleStrategy.AUTO, SampleStrategy.PERIOD,
            SampleStrategy.EVENT, SampleStrategy.DIFFERENTIAL, SampleStrategy.EVENT_RATE,
            SampleStrategy.DIFFERENTIAL_RATE) == tuple(range(7))
    assert SampleStrategy.OBSERVE_UPDATES is False
    assert SampleEvent.OBSERVE_UPDATES and SampleAuto.OBSERVE_UPDATES
    assert issubclass(SampleEvent, SampleEventRate)
    assert issubclass(SampleDifferentialRate, SampleEventRate)
    assert math.isclose(AGE_OF_UNIVERSE, 4.32329886e17)


def test_formatted_params_of_python_values():
    async def body(loop):
        sensor = float_sensor()
        strat, _ = make("event-rate", sensor, loop, 0.25, 3)
        assert strat.get_sampling_formatted() == (b"event-rate", [b"0.25", b"3"])
        strat, _ = make("period", sensor, loop, "1.5")
        assert strat.get_sampling_formatted() == (b"period", [b"1.5"])

    run(body)


def test_unknown_strategy():
    async def body(loop):
        with pytest.raises(ValueError, match="Unknown sampling strategy 'bogus'.*event-rate"):
            make("bogus", int_sensor(), loop)
        with pytest.raises(ValueError, match="Unknown sampling strategy"):
            make(b"EVENT", int_sensor(), loop)

    run(body)


BAD_PARAMS = [
    ("none", ("1",), "takes no parameters"),
    ("auto", ("1",), "takes no parameters"),
    ("event", ("1",), "takes no parameters"),
    ("period", (), "one parameter"),
    ("period", ("1", "2"), "one parameter"),
    ("period", ("0",), "must be positive"),
    ("period", ("-1",), "must be positive"),
    ("period", ("abc",), "must be a number"),
    ("period", ("nan",), "finite"),
    ("period", ("inf",), "finite"),
    ("differential", (), "one parameter"),
    ("differential", ("2.5",), "must be an integer"),
    ("differential", (2.5,), "must be an integer"),
    ("differential", ("0",), "positive integer"),
    ("differential", ("-3",), "positive integer"),
    ("event-rate", ("1",), "two parameters"),
    ("event-rate", ("2", "1"), "0 <= shortest-period <= longest-period"),
    ("event-rate", ("-1", "1"), "0 <= shortest-period <= longest-period"),
    ("event-rate", ("0", "0"), "longest period must be positive"),
    ("event-rate", ("x", "1"), "shortest period must be a number"),
    ("differential-rate", ("1", "1"), "three parameters"),
    ("differential-rate", ("1", "2", "1"), "0 <= shortest-period"),
    ("differential-rate", ("0.5", "0", "1"), "must be an integer"),
]


@pytest.mark.parametrize("name, params, message", BAD_PARAMS)
def test_invalid_parameters(name, params, message):
    async def body(loop):
        with pytest.raises(ValueError, match=message):
            make(name, int_sensor(), loop, *params)

    run(body)


def test_differential_sensor_types():
    async def body(loop):
        for sensor in (Sensor.string("s", "", ""), Sensor.boolean("b", "", ""),
                       Sensor.discrete("d", "", "", ["x", "y"])):
            for name, params in (("differential", ("1",)),
                                 ("differential-rate", ("1", "0", "1"))):
                with pytest.raises(ValueError, match="only valid for integer, float and"):
                    make(name, sensor, loop, *params)
        # floats take a float difference; timestamps are allowed (katcp-python)
        assert make("differential", float_sensor(), loop, "0.5")[0]._threshold == 0.5
        with pytest.raises(ValueError, match="positive"):
            make("differential", float_sensor(), loop, "0")
        ts = Sensor.timestamp("t", "", "")
        assert make("differential", ts, loop, "1.5")[0]._threshold == 1.5

    run(body)


def test_unexpected_keyword():
    async def body(loop):
        with pytest.raises(TypeError, match="bogus"):
            SampleAuto(Recorder(loop), int_sensor(), ioloop=loop, bogus=1)

    run(body)


def test_format_informs():
    sensor = int_sensor()
    msg = format_inform_v5(sensor, b"1234.500000", b"nominal", b"7")
    assert bytes(msg) == b"#sensor-status 1234.500000 1 an.int nominal 7"
    msg = format_inform_v4(sensor, b"1234.5", b"warn", b"7")
    assert bytes(msg) == b"#sensor-status 1234500 1 an.int warn 7"


# --------------------------------------------------------------------------
# behaviour of each strategy
# --------------------------------------------------------------------------


def test_none_never_reports():
    async def body(loop):
        sensor = int_sensor()
        strat, rec = make("none", sensor, loop)
        strat.start()
        sensor.set(2.0, NOMINAL, 5)
        await loop.advance(100)
        assert rec.calls == []
        strat.cancel()

    run(body)


def test_auto_reports_every_update():
    async def body(loop):
        sensor = int_sensor(3)
        strat, rec = make("auto", sensor, loop)
        strat.start()
        # initial update at once, inline
        assert rec.values == [3]
        assert rec.calls[0][1] is sensor
        sensor.set(2.0, NOMINAL, 3)  # unchanged value: still reported
        sensor.set(3.0, NOMINAL, 4)
        assert rec.values == [3, 3, 4]
        await loop.advance(60)
        assert len(rec.calls) == 3
        strat.cancel()

    run(body)


def test_event_reports_value_or_status_changes_only():
    async def body(loop):
        sensor = int_sensor(1)
        strat, rec = make("event", sensor, loop)
        strat.start()
        assert [r for _, _, r in rec.calls] == [(1.0, NOMINAL, 1)]
        sensor.set(2.0, NOMINAL, 1)  # timestamp only: not a change
        assert len(rec.calls) == 1
        sensor.set(3.0, WARN, 1)  # status only
        sensor.set(4.0, WARN, 2)  # value only
        sensor.set(5.0, WARN, 2)  # nothing
        assert [r for _, _, r in rec.calls][1:] == [(3.0, WARN, 1), (4.0, WARN, 2)]
        # no periodic reports, however long we wait
        await loop.advance(1e6)
        assert len(rec.calls) == 3
        assert loop.pending_timers() == []
        strat.cancel()

    run(body)


def test_differential_strict_threshold_against_last_reported():
    async def body(loop):
        sensor = int_sensor(10)
        strat, rec = make("differential", sensor, loop, "2")
        strat.start()
        assert rec.values == [10]
        sensor.set(2.0, NOMINAL, 12)  # |12-10| = 2, not > 2
        sensor.set(2.1, NOMINAL, 8)   # |8-10| = 2
        assert rec.values == [10]
        sensor.set(2.2, NOMINAL, 13)  # 3 > 2
        assert rec.values == [10, 13]
        sensor.set(2.3, NOMINAL, 11)  # 2 from last *reported* (13)
        sensor.set(2.4, NOMINAL, 12)
        sensor.set(2.5, NOMINAL, 14)
        assert rec.values == [10, 13]
        sensor.set(2.6, ERROR, 13)    # status change reports regardless
        assert [r for _, _, r in rec.calls][-1] == (2.6, ERROR, 13)
        strat.cancel()

    run(body)


def test_differential_float():
    async def body(loop):
        sensor = float_sensor(1.0)
        strat, rec = make("differential", sensor, loop, "0.5")
        strat.start()
        sensor.set(2.0, NOMINAL, 1.5)
        sensor.set(2.0, NOMINAL, 0.6)
        assert rec.values == [1.0]
        sensor.set(2.0, NOMINAL, 1.50001)
        assert rec.values == [1.0, 1.50001]
        strat.cancel()

    run(body)


def test_period_reports_regularly_regardless_of_change():
    async def body(loop):
        sensor = int_sensor(1)
        t0 = loop.time()
        strat, rec = make("period", sensor, loop, "0.5")
        strat.start()
        assert rec.times == [t0] and rec.values == [1]
        await loop.advance(0.5)
        sensor.set(5.0, NOMINAL, 2)
        sensor.set(5.1, NOMINAL, 3)  # changes are not reported in between
        await loop.advance(0.4)
        assert rec.values == [1, 1]
        await loop.advance(1.1)
        assert rec.times == [t0, t0 + 0.5, t0 + 1.0, t0 + 1.5, t0 + 2.0]
        assert rec.values == [1, 1, 3, 3, 3]
        strat.cancel()
        await loop.advance(10)
        assert len(rec.calls) == 5

    run(body)


def test_period_does_not_burst_after_stall():
    async def body(loop):
        sensor = int_sensor(1)
        strat, rec = make("period", sensor, loop, "1")
        strat.start()
        # The loop stalls for 10 periods (clock jumps without running timers).
        loop._fake_now += 10.0
        await loop.settle()
        await loop.advance(0.5)
        # one late sample, then regular ones from there: no burst of 10
        assert len(rec.calls) == 2
        await loop.advance(1.0)
        assert len(rec.calls) == 3
        strat.cancel()

    run(body)


def test_event_rate_collapses_changes_and_sends_latest_at_earliest_time():
    async def body(loop):
        sensor = int_sensor(0)
        t0 = loop.time()
        strat, rec = make("event-rate", sensor, loop, "1", "10")
        strat.start()
        assert rec.times == [t0]
        await loop.advance(0.2)
        sensor.set(2.0, NOMINAL, 1)
        sensor.set(2.1, NOMINAL, 2)
        await loop.advance(0.3)
        sensor.set(2.2, WARN, 3)
        assert len(rec.calls) == 1  # held back
        await loop.advance(0.5)  # t0 + 1.0: earliest allowed time
        assert rec.times == [t0, t0 + 1.0]
        assert rec.calls[-1][2] == (2.2, WARN, 3)  # latest reading, one update
        # a change after shortest-period has passed goes out at once
        await loop.advance(1.5)
        sensor.set(3.0, WARN, 4)
        assert rec.times[-1] == t0 + 2.5 and rec.values[-1] == 4
        # unchanged readings do not count
        await loop.advance(2)
        sensor.set(3.5, WARN, 4)
        assert len(rec.calls) == 3
        strat.cancel()

    run(body)


def test_event_rate_longest_period_and_clock_restart():
    async def body(loop):
        sensor = int_sensor(7)
        t0 = loop.time()
        strat, rec = make("event-rate", sensor, loop, "0", "2")
        strat.start()
        await loop.advance(4.5)
        assert rec.times == [t0, t0 + 2, t0 + 4]
        assert rec.values == [7, 7, 7]
        # a change report at t0+5 restarts the longest-period clock
        await loop.advance(0.5)
        sensor.set(9.0, NOMINAL, 8)
        assert rec.times[-1] == t0 + 5
        await loop.advance(1.9)
        assert len(rec.calls) == 4
        await loop.advance(0.1)  # t0 + 7
        assert rec.times[-1] == t0 + 7 and rec.values[-1] == 8
        # timers stay bounded however many reports happen
        for i in range(50):
            sensor.set(10.0 + i, NOMINAL, 100 + i)
        assert len(loop.pending_timers()) <= 1
        strat.cancel()
        assert loop.pending_timers() == []

    run(body)


def test_event_rate_equal_periods_behaves_like_period_with_events():
    async def body(loop):
        sensor = int_sensor(1)
        t0 = loop.time()
        strat, rec = make("event-rate", sensor, loop, "1", "1")
        strat.start()
        await loop.advance(0.3)
        sensor.set(2.0, NOMINAL, 2)
        await loop.advance(2.8)
        assert rec.times == [t0, t0 + 1, t0 + 2, t0 + 3]
        assert rec.values == [1, 2, 2, 2]
        strat.cancel()

    run(body)


def test_differential_rate():
    async def body(loop):
        sensor = float_sensor(0.0)
        t0 = loop.time()
        strat, rec = make("differential-rate", sensor, loop, "1.0", "0.5", "5")
        strat.start()
        sensor.set(2.0, NOMINAL, 0.9)   # not > 1.0: ignored
        await loop.advance(0.7)
        assert rec.values == [0.0]
        sensor.set(2.1, NOMINAL, 1.2)   # > 1.0 and shortest passed: at once
        assert rec.times[-1] == t0 + 0.7 and rec.values[-1] == 1.2
        await loop.advance(0.1)
        sensor.set(2.2, NOMINAL, 3.0)   # too soon: held back
        sensor.set(2.3, NOMINAL, 3.5)
        assert len(rec.calls) == 2
        await loop.advance(0.4)         # t0 + 1.2 = 0.7 + 0.5
        assert rec.times[-1] == t0 + 1.2 and rec.values[-1] == 3.5
        sensor.set(2.4, WARN, 3.5)      # status change counts as a change
        await loop.advance(0.5)
        assert rec.calls[-1][2] == (2.4, WARN, 3.5)
        await loop.advance(5.0)         # longest period
        assert rec.times[-1] == t0 + 6.7
        strat.cancel()

    run(body)


# --------------------------------------------------------------------------
# cancel, threads, errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name, params", [
    ("auto", ()), ("period", ("1",)), ("event", ()), ("differential", ("1",)),
    ("event-rate", ("1", "3")), ("differential-rate", ("1", "1", "3")),
])
def test_cancel_stops_callbacks(name, params):
    async def body(loop):
        sensor = int_sensor(0)
        strat, rec = make(name, sensor, loop, *params)
        strat.start()
        await loop.advance(0.5)
        sensor.set(2.0, NOMINAL, 10)  # may be pending for the rate strategies
        n = len(rec.calls)
        strat.cancel()
        assert strat.cancelled
        sensor.set(3.0, WARN, 20)
        await loop.advance(30)
        assert len(rec.calls) == n
        assert loop.pending_timers() == []
        strat.cancel()  # twice is harmless

    run(body)


def test_cancel_before_deferred_start():
    async def body(loop):
        sensor = int_sensor(0)
        strat, rec = make("event", sensor, loop)
        t = threading.Thread(target=strat.start)
        t.start()
        t.join(5)
        strat.cancel()
        await loop.settle()
        sensor.set(2.0, NOMINAL, 1)
        assert rec.calls == []

    run(body)


def test_updates_from_other_threads_run_in_loop_thread():
    async def body(loop):
        sensor = int_sensor(0)
        loop_thread = threading.get_ident()
        threads = []

        def callback(sensor_, reading):
            threads.append(threading.get_ident())

        strat = SampleStrategy.get_strategy("auto", callback, sensor, ioloop=loop)
        starter = threading.Thread(target=strat.start)
        starter.start()
        starter.join(5)
        assert threads == []  # start was handed to the loop
        await loop.settle()
        assert threads == [loop_thread]

        def setter():
            for i in range(1, 6):
                sensor.set(float(i), NOMINAL, i)

        worker = threading.Thread(target=setter)
        worker.start()
        worker.join(5)
        await loop.settle()
        assert threads == [loop_thread] * 6
        strat.cancel()

    run(body)


def test_update_from_thread_after_loop_closed_is_dropped():
    loop = FakeClockLoop()
    sensor = int_sensor(0)
    rec = Recorder(loop)
    strat = SampleEvent(rec, sensor, ioloop=loop)
    loop.run_until_complete(asyncio.sleep(0))

    async def start():
        strat.start()

    loop.run_until_complete(start())
    loop.close()
    sensor.set(2.0, NOMINAL, 5)  # not in the loop, loop closed: no exception
    strat.cancel()
    assert rec.values == [0]


def test_callback_errors_are_logged_not_raised(caplog):
    async def body(loop):
        sensor = int_sensor(0)

        def bad(sensor_, reading):
            raise RuntimeError("boom")

        for name in ("auto", "event", "differential", "event-rate"):
            params = {"differential": ("1",), "event-rate": ("0", "1")}.get(name, ())
            strat = SampleStrategy.get_strategy(name, bad, sensor, *params, ioloop=loop)
            with caplog.at_level(logging.ERROR, logger="katcp.sampling"):
                strat.start()
                sensor.set(2.0, WARN, 5)
            strat.cancel()
        assert "boom" in caplog.text and "an.int" in caplog.text

    run(body)


def test_default_loop_is_running_loop():
    async def body(loop):
        strat = SampleAuto(Recorder(loop), int_sensor())
        assert strat.ioloop is loop

    run(body)


def test_tornado_ioloop_accepted():
    from tornado.ioloop import IOLoop

    async def body(loop):
        tloop = IOLoop.current()
        sensor = int_sensor(4)
        rec = Recorder(loop)
        strat = SampleStrategy.get_strategy("period", rec, sensor, "1", ioloop=tloop)
        assert strat.ioloop is tloop
        strat.start()
        await loop.advance(1)
        assert rec.values == [4, 4]
        strat.cancel()

    run(body)


def test_update_in_ioloop_decorator():
    async def body(loop):
        seen = []

        class Custom(SampleStrategy):
            @update_in_ioloop
            def update(self, sensor, reading):
                seen.append(threading.get_ident())

        strat = Custom(Recorder(loop), int_sensor(), ioloop=loop)
        strat.update(None, None)
        t = threading.Thread(target=strat.update, args=(None, None))
        t.start()
        t.join(5)
        await loop.settle()
        assert seen == [threading.get_ident()] * 2
        assert strat.get_sampling() is None

    run(body)


def test_strategies_are_small():
    async def body(loop):
        sensor = int_sensor()
        for name, params, _, _ in CASES:
            strat, _ = make(name, sensor, loop, *params)
            assert not hasattr(strat, "__dict__"), name

    run(body)


def test_event_rate_longest_period_does_not_drift_when_loop_is_late():
    async def body(loop):
        sensor = int_sensor(1)
        t0 = loop.time()
        strat, rec = make("event-rate", sensor, loop, "0", "2")
        strat.start()
        # the loop is 0.3 s late reaching the first deadline
        loop._fake_now += 2.3
        await loop.settle()
        assert rec.times == [t0, t0 + 2.3]
        await loop.advance(1.7)  # next report keeps the original cadence
        assert rec.times[-1] == t0 + 4
        strat.cancel()

    run(body)


# --------------------------------------------------------------------------
# property test: rate-limit invariants under random update sequences
# --------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_updates = st.lists(
    st.tuples(st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.7, 1.3, 2.9]),  # gap before update
              st.integers(0, 3),                                       # value
              st.sampled_from([NOMINAL, WARN])),                       # status
    max_size=25)


@settings(max_examples=60, deadline=None)
@given(updates=_updates, shortest=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
       extra=st.sampled_from([0.0, 0.5, 2.0]), differential=st.booleans())
def test_rate_strategies_invariants(updates, shortest, extra, differential):
    longest = shortest + extra if shortest + extra > 0 else 1.0

    async def body(loop):
        sensor = int_sensor(0)
        history = [(loop.time(), tuple(sensor.read()))]  # (loop time, reading set)
        reports = []  # (loop time, reading reported, index of the latest update then)

        def callback(sensor_, reading):
            assert tuple(reading) == tuple(sensor_.read())  # the then-current reading
            reports.append((loop.time(), tuple(reading), len(history) - 1))

        if differential:
            params = ("1", repr(shortest), repr(longest))
            strat = SampleDifferentialRate(callback, sensor, *params, ioloop=loop)
        else:
            strat = SampleEventRate(callback, sensor, repr(shortest), repr(longest),
                                    ioloop=loop)
        strat.start()
        for i, (gap, value, status) in enumerate(updates):
            await loop.advance(gap)
            history.append((loop.time(), (float(i + 2), status, value)))
            sensor.set(float(i + 2), status, value)
        await loop.advance(shortest + 0.01)
        end = loop.time()
        strat.cancel()

        def differs(a, b):
            if a[1] != b[1]:
                return True
            return abs(a[2] - b[2]) > 1 if differential else a[2] != b[2]

        assert reports[0][0] == history[0][0]
        for (t1, r1, k1), (t2, _r2, k2) in zip(reports, reports[1:]):
            assert t2 - t1 >= shortest - 1e-9            # never sooner than shortest
            assert t2 - t1 <= longest + 1e-9             # never later than longest
            if t2 - t1 < longest - 1e-9:                 # early report: caused by a change
                assert any(differs(r, r1) for _, r in history[k1 + 1:k2 + 1])
        assert end - reports[-1][0] <= longest + 1e-9
        # the final state has been reported (changes are never lost)
        assert not differs(tuple(sensor.read()), reports[-1][1])

    run(body)
