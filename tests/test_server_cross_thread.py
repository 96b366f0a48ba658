"""Calls handed to the ioloop from other threads (`katcp._aio.loopcalls.LoopCalls`).

The device server (replies and informs from its handler thread) and the sampling
strategies (sensors set outside the loop thread) share one queue per loop: calls run
in the order they were posted, a burst costs one wake-up of the loop, a producer that
never pauses cannot starve the loop, and a cancelled strategy reports nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from test_sampling import NOMINAL, WARN, FakeClockLoop, Recorder, int_sensor, make, run
from test_server_support import TIMEOUT, ExampleServer, RawClient, running

from katcp._aio import lowlevel
from katcp._aio.loopcalls import LoopCalls, loop_calls
from katcp._server.connections import KATCPServer
from katcp.kattypes import Int, request, return_reply
from katcp.core import Reading
from katcp.sampling import SampleAuto, SampleEvent, SampleStrategy


class WakeCountingLoop(FakeClockLoop):
    """FakeClockLoop that counts its cross-thread wake-ups."""

    def __init__(self) -> None:
        super().__init__()
        self.wakeups = 0

    def call_soon_threadsafe(self, callback, *args, context=None):
        self.wakeups += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


@pytest.mark.parametrize("name, params", [
    ("auto", ()), ("event", ()), ("differential", ("1",)), ("event-rate", ("0", "100")),
])
def test_burst_of_thread_updates_costs_one_wakeup_and_keeps_order(name, params):
    """A burst from another thread: one wake-up; each strategy sees its readings in order.

    The burst (50 readings per sensor) outruns the loop, which is blocked: each strategy
    keeps the newest ``MAX_THREAD_BACKLOG`` of them.
    """
    loop = WakeCountingLoop()
    keep = SampleStrategy.MAX_THREAD_BACKLOG
    assert keep < 50

    async def body(loop):
        sensors = [int_sensor(0) for _ in range(3)]
        made = [make(name, sensor, loop, *params) for sensor in sensors for _ in range(4)]
        for strat, _ in made:
            strat.start()

        def setter():
            for value in range(1, 51):
                for sensor in sensors:
                    sensor.set(float(value), NOMINAL, (value * 7) % 101 - 50)

        worker = threading.Thread(target=setter)
        worker.start()
        worker.join(5)  # the loop is blocked meanwhile: the whole burst is queued
        assert not worker.is_alive()
        await loop.settle()
        assert loop.wakeups == 1  # 150 updates of 12 strategies, one wake-up
        expected = [0] + [(v * 7) % 101 - 50 for v in range(1, 51)][-keep:]
        for strat, rec in made:
            assert rec.values == expected
            assert {t for t, _, _ in rec.calls} == {loop.time()}
            strat.cancel()

    try:
        loop.run_until_complete(body(loop))
    finally:
        loop.close()


def test_cancel_drops_queued_thread_updates():
    async def body(loop):
        sensor = int_sensor(0)
        kept, kept_rec = make("auto", sensor, loop)
        dropped, dropped_rec = make("auto", sensor, loop)
        kept.start()
        dropped.start()
        worker = threading.Thread(target=lambda: [sensor.set(2.0, WARN, v)
                                                  for v in range(1, 6)])
        worker.start()
        worker.join(5)
        dropped.cancel()  # updates already queued for it must not be reported
        await loop.settle()
        assert dropped_rec.values == [0]
        assert kept_rec.values == [0, 1, 2, 3, 4, 5]
        kept.cancel()
        sensor.set(3.0, WARN, 9)
        await loop.settle()
        assert kept_rec.values == [0, 1, 2, 3, 4, 5]

    run(body)


def test_thread_start_update_and_cancel_keep_their_order():
    async def body(loop):
        sensor = int_sensor(0)
        strat, rec = make("auto", sensor, loop)

        def worker():
            strat.start()  # queued: attaches (and reports 0) in the loop
            sensor.set(2.0, NOMINAL, 1)  # not attached yet: not seen
            strat.cancel()

        t = threading.Thread(target=worker)
        t.start()
        t.join(5)
        await loop.settle()
        assert rec.values == []  # cancelled before the queued start ran
        strat2, rec2 = make("auto", sensor, loop)
        t = threading.Thread(target=strat2.start)
        t.start()
        t.join(5)
        await loop.settle()
        t = threading.Thread(target=lambda: [sensor.set(3.0, NOMINAL, v) for v in (4, 5)])
        t.start()
        t.join(5)
        await loop.settle()
        assert rec2.values == [1, 4, 5]
        strat2.cancel()

    run(body)


# ------------------------------------------------------------------- LoopCalls


def on_loop(body):
    """Run ``body(loop)`` on a loop that counts its cross-thread wake-ups."""
    loop = WakeCountingLoop()
    try:
        return loop.run_until_complete(body(loop))
    finally:
        loop.close()


async def settle(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_loop_calls_is_shared_per_loop():
    async def body(loop):
        import tornado.ioloop

        calls = loop_calls(loop)
        assert loop_calls(loop) is calls
        assert isinstance(calls, LoopCalls)
        other = asyncio.new_event_loop()
        try:
            assert loop_calls(other) is not calls
        finally:
            other.close()
        # A strategy on the tornado IOLoop wrapping this loop uses the same queue.
        strategy = SampleStrategy.get_strategy("auto", lambda s, r: None, None,
                                               ioloop=tornado.ioloop.IOLoop.current())
        assert strategy._loop is loop

    on_loop(body)


def test_posts_from_threads_run_in_order_with_one_wakeup_per_burst():
    async def body(loop):
        calls = loop_calls(loop)
        seen = []
        loop_thread = threading.get_ident()

        def record(tag, i):
            assert threading.get_ident() == loop_thread
            seen.append((tag, i))

        def producer(tag):
            for i in range(500):
                if i % 2:
                    assert calls.post(record, tag, i)
                else:
                    assert calls.post_pair(record, tag, i)

        threads = [threading.Thread(target=producer, args=(tag,)) for tag in "abc"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)  # blocks the loop: everything is queued meanwhile
        await settle()
        assert loop.wakeups <= 3  # at most one per producer thread that raced
        for tag in "abc":
            assert [i for t, i in seen if t == tag] == list(range(500))
        assert len(seen) == 1500

        # A new burst after the queue ran empty wakes the loop again, once.
        before = loop.wakeups
        t = threading.Thread(target=lambda: [calls.post(record, "d", i) for i in range(100)])
        t.start()
        t.join(TIMEOUT)
        await settle()
        assert loop.wakeups == before + 1
        assert [i for tag, i in seen if tag == "d"] == list(range(100))

    on_loop(body)


def test_calls_posted_while_running_wait_for_the_next_iteration():
    async def body(loop):
        calls = loop_calls(loop)
        runs = []
        ticks = 0

        def repost(n):
            runs.append((n, ticks))
            if n < 5:
                calls.post(repost, n + 1)  # from the loop thread, during a run

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        t = threading.Thread(target=calls.post, args=(repost, 0))
        t.start()
        t.join(TIMEOUT)
        await settle(20)
        task.cancel()
        assert [n for n, _ in runs] == [0, 1, 2, 3, 4, 5]
        # Each re-posted call ran in a later loop iteration: other work ran in between.
        tick_values = [tick for _, tick in runs]
        assert all(b > a for a, b in zip(tick_values, tick_values[1:]))

    on_loop(body)


def test_failing_call_is_logged_and_the_rest_run(caplog):
    async def body(loop):
        calls = loop_calls(loop)
        seen = []

        def boom(x):
            raise RuntimeError(f"boom {x}")

        def cancelled(x):
            raise asyncio.CancelledError()

        def worker():
            calls.post(seen.append, 1)
            calls.post(boom, 2)
            calls.post(seen.append, 3)
            calls.post(cancelled, 4)  # a BaseException does not stall the queue
            calls.post(seen.append, 5)

        with caplog.at_level(logging.ERROR, logger="katcp"):
            t = threading.Thread(target=worker)
            t.start()
            t.join(TIMEOUT)
            await settle()
            assert seen == [1, 3, 5]
            t = threading.Thread(target=calls.post, args=(seen.append, 6))
            t.start()
            t.join(TIMEOUT)
            await settle()
        assert seen == [1, 3, 5, 6]
        assert "boom 2" in caplog.text
        assert "handed to the event loop" in caplog.text and "boom" in caplog.messages[0]

    on_loop(body)


def test_posting_to_a_closed_loop_drops_the_call():
    loop = asyncio.new_event_loop()
    calls = loop_calls(loop)
    loop.close()
    seen = []
    assert calls.post(seen.append, 1) is False
    assert calls.post_pair(lambda a, b: seen.append(a), 1, 2) is False
    assert len(calls._calls) == 0 and seen == []


def test_queue_of_a_loop_closed_with_a_pending_wakeup_does_not_grow():
    loop = asyncio.new_event_loop()
    calls = loop_calls(loop)
    assert calls.post(print, "never")  # wake-up scheduled, but the loop never runs
    loop.close()
    results = [calls.post_pair(max, i, i) for i in range(5000)]
    assert False in results  # noticed that the loop is closed
    assert len(calls._calls) < 3 * 4096


# ------------------------------------------------------------------------- server


class BumpServer(ExampleServer):
    @request(Int(), Int())
    @return_reply(Int())
    def request_bump(self, req, first, count):
        """Set an.int to first, first + 1, ... (count values); reply with the last."""
        sensor = self.get_sensor("an.int")
        for value in range(first, first + count):
            sensor.set_value(value % 11)
        return ("ok", (first + count - 1) % 11)


@pytest.mark.parametrize("pipelined", [1, 40])
def test_handler_thread_sensor_informs_precede_the_reply(pipelined):
    """Informs of sensors set in a handler reach the client before that handler's reply.

    Updates from the handler thread join a backlog that the loop handles before the
    replies posted after them, so with pipelined requests the informs of later
    requests may come before earlier replies; they always come in the order set.
    """
    with running(BumpServer("127.0.0.1", 0)) as srv:
        client = RawClient(srv.bind_address)
        try:
            client.skip_connect_informs()
            assert client.request(b"?sensor-sampling an.int auto")[-1].startswith(
                b"!sensor-sampling ok")
            client.send(b"".join(b"?bump[%d] %d 3\n" % (i, 3 * i)
                                 for i in range(1, pipelined + 1)))
            lines = []
            while len([line for line in lines if line.startswith(b"!bump")]) < pipelined:
                lines.append(client.readline())
        finally:
            client.close()
    set_order = [(3 * i + k) for i in range(1, pipelined + 1) for k in range(3)]
    statuses, i = [], 0
    for line in lines:
        if line.startswith(b"#sensor-status"):
            statuses.append(int(line.split()[-1]))
        else:
            i += 1
            assert line == b"!bump[%d] ok %d" % (i, (3 * i + 2) % 11)
            # the newest value set by this request (or a later one) came before its reply
            assert statuses and statuses[-1] in {v % 11 for v in set_order[3 * i - 1:]}
    assert i == pipelined
    if pipelined == 1:
        assert statuses[-3:] == [3, 4, 5]
    # in the order set: a subsequence of the values set, ending with the last one
    it = iter(v % 11 for v in set_order)
    assert all(any(s == v for v in it) for s in statuses[1:])
    assert statuses[-1] == set_order[-1] % 11


class LoopFutureServer(ExampleServer):
    @request(Int())
    @return_reply(Int())
    def request_later(self, req, value):
        """Reply with a future of the server's loop, made in the handler thread."""
        loop = self.ioloop.asyncio_loop
        fut = loop.create_future()
        loop_calls(loop).post(fut.set_result, ("ok", value * 2))
        return fut


def test_return_reply_of_a_loop_future_from_the_handler_thread():
    """The decorator (L1) never calls into the loop: it hands the server a coroutine."""
    with running(LoopFutureServer("127.0.0.1", 0)) as srv:
        client = RawClient(srv.bind_address)
        try:
            client.skip_connect_informs()
            assert client.request(b"?later 21")[-1] == b"!later ok 42"
        finally:
            client.close()


class _PostRecorder:
    """Records which callables the server hands to its loop with ``_post``."""

    def __init__(self, monkeypatch) -> None:
        self.posted: list = []
        real = KATCPServer._post
        recorder = self

        def post(server, fn, *args):
            recorder.posted.append(getattr(fn, "__name__", fn))
            real(server, fn, *args)

        monkeypatch.setattr(KATCPServer, "_post", post)


@pytest.mark.parametrize("use_private", [True, False], ids=["private", "public"])
def test_handler_thread_writes_its_replies_itself_both_paths(use_private, monkeypatch):
    """The handler thread writes a reply on the connection itself.

    With asyncio's internals it sends on the socket; with the public API only
    (``write_threadsafe``'s fallback) the connection hands the bytes to the loop.  Either
    way a sequential request's reply is not posted as a ``send_message`` call (one
    written while another hand-over is pending is: behind it).  Replies to sequential and to pipelined
    requests arrive complete and in order.
    """
    monkeypatch.setattr(lowlevel, "USE_PRIVATE", use_private)
    recorder = _PostRecorder(monkeypatch)
    with running(ExampleServer("127.0.0.1", 0)) as srv:
        client = RawClient(srv.bind_address)
        try:
            client.skip_connect_informs()
            (conn,) = srv._server._connections
            assert conn.threadsafe_writes
            assert (conn._direct_sock is not None) is use_private
            recorder.posted.clear()
            for i in range(1, 21):
                assert client.request(b"?watchdog[%d]" % i) == [b"!watchdog[%d] ok" % i]
            assert "send_message" not in recorder.posted
            client.send(b"".join(b"?echo[%d] x%d\n" % (i, i) for i in range(1, 301)))
            replies = [client.readline() for _ in range(300)]
            assert replies == [b"!echo[%d] ok x%d" % (i, i) for i in range(1, 301)]
        finally:
            client.close()


class SendRecordingServer(KATCPServer):
    """A KATCPServer whose ``send_message`` records what it sends."""

    def send_message(self, stream, msg):
        self.sent.append(bytes(msg))
        super().send_message(stream, msg)


def test_handler_thread_replies_pass_an_overridden_send_message():
    """A server class that overrides send_message sees the handler thread's replies."""
    assert KATCPServer._direct_send and not SendRecordingServer._direct_send
    srv = ExampleServer("127.0.0.1", 0)
    server = srv._server
    server.__class__ = SendRecordingServer
    server.sent = []
    with running(srv):
        client = RawClient(srv.bind_address)
        try:
            client.skip_connect_informs()
            (conn,) = server._connections
            assert not conn.threadsafe_writes
            for i in range(1, 11):
                assert client.request(b"?watchdog[%d]" % i) == [b"!watchdog[%d] ok" % i]
        finally:
            client.close()
    assert [line for line in server.sent if line.startswith(b"!watchdog")] == [
        b"!watchdog[%d] ok" % i for i in range(1, 11)]


# ------------------------------------------------------------- the sensor's relay


def set_in_thread(sensor, *values, status=NOMINAL, ts=None) -> None:
    """Set ``sensor`` to each of ``values`` from another thread (timestamps 1.0, 2.0, ...)."""
    def setter() -> None:
        for v in values:
            sensor.set(float(v) if ts is None else ts, status, v)

    t = threading.Thread(target=setter)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive()


def test_one_handoff_per_thread_update_whatever_the_number_of_strategies():
    """Ten strategies of one sensor: one queued call per burst, one observer of the sensor."""
    loop = WakeCountingLoop()

    async def body(loop):
        sensor = int_sensor(0)
        made = [make(name, sensor, loop, *params) for name, params in
                [("auto", ()), ("event", ()), ("differential", ("1",))] * 3
                + [("event-rate", ("0", "100"))]]
        for strat, _ in made:
            strat.start()
        assert len(sensor._observers) == 1  # the relay, for all ten
        sensor.set(1.5, NOMINAL, 4)  # loop thread: no queue needed, none made
        assert made[0][0]._relay._pending is None
        calls = loop_calls(loop)
        set_in_thread(sensor, 5, status=WARN, ts=2.0)
        assert len(calls._calls) == 3  # one call (fn, a, b) for the ten strategies
        await loop.settle()
        assert loop.wakeups == 1
        for strat, rec in made:
            assert rec.values == [0, 4, 5], strat
        for strat, _ in made:
            strat.cancel()
        assert sensor._observers == ()  # the last one out detaches the relay

    try:
        loop.run_until_complete(body(loop))
    finally:
        loop.close()


def test_strategy_joining_while_readings_are_queued_gets_none_older_than_its_first():
    async def body(loop):
        sensor = int_sensor(0)
        early, early_rec = make("auto", sensor, loop)
        early.start()
        set_in_thread(sensor, 1, 2, 3)  # queued for the loop, which has not run yet
        late, late_rec = make("auto", sensor, loop)
        late.start()  # reports the current reading (3) at once
        await loop.settle()
        assert early_rec.values == [0, 1, 2, 3]
        assert late_rec.values == [3]
        set_in_thread(sensor, 4)
        await loop.settle()
        assert early_rec.values == [0, 1, 2, 3, 4] and late_rec.values == [3, 4]
        early.cancel()
        late.cancel()

    run(body)


def test_loop_thread_update_waits_behind_queued_ones():
    """A reading set in the loop thread while others wait to be drained goes after them."""
    async def body(loop):
        sensor = int_sensor(0)
        strat, rec = make("auto", sensor, loop)
        strat.start()
        set_in_thread(sensor, 1, 2)
        sensor.set(3.0, NOMINAL, 3)  # loop thread, before the queued drain runs
        assert rec.values == [0]
        await loop.settle()
        assert rec.values == [0, 1, 2, 3]
        sensor.set(4.0, NOMINAL, 4)  # nothing queued: at once
        assert rec.values == [0, 1, 2, 3, 4]
        strat.cancel()

    run(body)


class RecordingAuto(SampleAuto):
    """A strategy class that overrides ``update``: the relay must call it."""

    __slots__ = ("seen",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen = []

    def update(self, sensor, reading) -> None:
        self.seen.append((threading.get_ident(), reading.value))
        super().update(sensor, reading)


def test_overridden_update_is_called_in_the_loop_thread():
    async def body(loop):
        sensor = int_sensor(0)
        rec = Recorder(loop)
        strat = RecordingAuto(rec, sensor, ioloop=loop)
        plain, plain_rec = make("auto", sensor, loop)
        strat.start()
        plain.start()
        here = threading.get_ident()
        set_in_thread(sensor, 1, 2)
        sensor.set(3.0, NOMINAL, 3)
        await loop.settle()
        sensor.set(4.0, NOMINAL, 4)
        assert strat.seen == [(here, v) for v in (0, 1, 2, 3, 4)]
        assert rec.values == plain_rec.values == [0, 1, 2, 3, 4]
        strat.cancel()
        plain.cancel()

    run(body)


class LookAlike:
    """A sensor look-alike that compares equal to any other of the same name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.observers = []
        self.reading = Reading(1.0, NOMINAL, 0)

    def __eq__(self, other):
        return isinstance(other, LookAlike) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def attach(self, observer) -> None:
        self.observers.append(observer)

    def detach(self, observer) -> None:
        self.observers.remove(observer)

    def read(self):
        return self.reading

    def set(self, value) -> None:
        self.reading = Reading(1.0, NOMINAL, value)
        for observer in list(self.observers):
            observer.update(self, self.reading)


def test_look_alike_sensors_equal_to_each_other_keep_relays_of_their_own():
    async def body(loop):
        a, b = LookAlike("same"), LookAlike("same")
        sa, rec_a = make("auto", a, loop)
        sb, rec_b = make("auto", b, loop)
        sa.start()
        sb.start()
        assert len(a.observers) == len(b.observers) == 1
        assert a.observers[0] is not b.observers[0]
        t = threading.Thread(target=a.set, args=(7,))
        t.start()
        t.join(TIMEOUT)
        b.set(9)
        await loop.settle()
        assert rec_a.values == [0, 7] and rec_b.values == [0, 9]
        sa.cancel()
        sb.cancel()
        assert a.observers == [] and b.observers == []

    run(body)


def test_strategy_attached_directly_to_a_sensor_is_still_handed_to_the_loop():
    """``sensor.attach(strategy)`` (katcp-python style, not via start()) still works."""
    async def body(loop):
        sensor = int_sensor(0)
        strat, rec = make("auto", sensor, loop)
        sensor.attach(strat)
        set_in_thread(sensor, 1, 2)
        await loop.settle()
        assert rec.values == [1, 2]
        strat.cancel()
        assert sensor._observers == ()

    run(body)


class CountingEvent(SampleEvent):
    """A strategy class that overrides ``inform``: every report must go through it."""

    __slots__ = ("informed",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.informed = []

    def inform(self, reading) -> None:
        self.informed.append(reading.value)
        super().inform(reading)


def test_overridden_inform_sees_every_report_on_both_paths():
    """Our classes call the inform callback directly; a class overriding inform is called."""
    assert SampleEvent._inform_inline and SampleEvent._relay_skips_update
    assert not CountingEvent._inform_inline and CountingEvent._relay_skips_update
    assert not RecordingAuto._relay_skips_update and RecordingAuto._inform_inline

    async def body(loop):
        sensor = int_sensor(0)
        rec = Recorder(loop)
        strat = CountingEvent(rec, sensor, ioloop=loop)
        plain, plain_rec = make("event", sensor, loop)
        strat.start()
        plain.start()
        sensor.set(1.2, NOMINAL, 1)  # loop thread
        sensor.set(1.4, NOMINAL, 1)  # no change: no report
        set_in_thread(sensor, 2, 3)
        await loop.settle()
        strat.update(sensor, sensor.read())  # called directly, as a user may
        assert strat.informed == [0, 1, 2, 3]
        assert rec.values == plain_rec.values == [0, 1, 2, 3]
        strat.cancel()
        plain.cancel()

    run(body)


def test_strategies_of_one_sensor_on_two_loops_each_get_their_loops_relay():
    from katcp._server.strategies import _RELAYS

    other = asyncio.new_event_loop()
    try:
        async def body(loop):
            sensor = int_sensor(0)
            here, here_rec = make("auto", sensor, loop)
            there, there_rec = make("auto", sensor, other)
            here.start()
            there.attach()  # (its loop is not running: joins that loop's relay from here)
            assert len(sensor._observers) == 2 and len(_RELAYS[sensor]) == 2
            sensor.set(2.0, NOMINAL, 5)  # in this loop's thread: at once here only
            assert here_rec.values == [0, 5]
            await asyncio.sleep(0)
            # the other loop, run in a thread of its own, drains its queue
            t = threading.Thread(target=other.run_until_complete, args=(settle(),))
            t.start()
            t.join(TIMEOUT)
            assert there_rec.values == [0, 5]
            there.cancel()
            assert len(sensor._observers) == 1 and _RELAYS[sensor] is here._relay
            here.cancel()
            assert sensor._observers == () and sensor not in _RELAYS

        run(body)
    finally:
        other.close()


def test_reading_overtaken_by_another_threads_newer_one_is_left_out():
    """Several setters: one holding an older timestamp is left out; one thread's own go on.

    ``set_value`` takes the time before it stores the reading, so a setter held in between
    stores a reading older than one another thread stored meanwhile.
    """
    async def body(loop):
        sensor = int_sensor(0)
        strat, rec = make("auto", sensor, loop)
        strat.start()
        release = threading.Event()

        def first() -> None:
            sensor.set(20.0, NOMINAL, 2)
            assert release.wait(TIMEOUT)  # alive meanwhile: the other thread differs

        holder = threading.Thread(target=first)
        holder.start()
        set_in_thread(sensor, 1, ts=10.0)  # another thread, older: left out
        release.set()
        holder.join(TIMEOUT)
        set_in_thread(sensor, 3, ts=30.0)
        await loop.settle()
        assert rec.values == [0, 2, 3]
        # One thread's own readings all go on, in order, whatever their timestamps.
        t = threading.Thread(target=lambda: [sensor.set(t, NOMINAL, v)
                                             for t, v in ((60.0, 6), (55.0, 7))])
        t.start()
        t.join(TIMEOUT)
        await loop.settle()
        assert rec.values == [0, 2, 3, 6, 7]
        sensor.set(50.0, NOMINAL, 8)  # the loop thread, older than another's: left out
        assert rec.values == [0, 2, 3, 6, 7]
        sensor.set(70.0, NOMINAL, 9)
        sensor.set(65.0, NOMINAL, 10)  # its own: goes on
        assert rec.values == [0, 2, 3, 6, 7, 9, 10]
        strat.cancel()

    run(body)
