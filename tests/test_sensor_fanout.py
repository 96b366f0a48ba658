"""The sensor's relay reports ``auto`` and ``event`` strategies itself (the fan-out).

A strategy whose class keeps the report path of `SampleAuto` or `SampleEvent`, and whose
inform callback is a `StatusWriter` (what the device server gives a client whose
connection class keeps ``ClientConnection.inform``, on a server whose class keeps
``send_message``), is reported by the relay in one loop: the reading is formatted once
and written to each connection.  These tests check that the decision is made per class,
that the shortcut reports exactly what the strategies' own path reports (changes only for
``event``, nothing after ``cancel``, errors logged), and, over real sockets, that plain
and overriding clients and servers get the same lines, from the loop thread and from
other threads.
"""

from __future__ import annotations

import logging
import re
import threading

import pytest
from test_sampling import NOMINAL, WARN, Recorder, int_sensor, run
from test_server_cross_thread import set_in_thread
from test_server_support import TIMEOUT, ExampleServer, RawClient, running

from katcp._server.connections import ClientConnection, KATCPServer
from katcp._server.strategies import _EVERY, _ON_CHANGE, StatusWriter
from katcp.core import Message, ProtocolFlags
from katcp.sampling import (
    SampleAuto,
    SampleDifferential,
    SampleEvent,
    SampleEventRate,
    SamplePeriod,
    SampleStrategy,
)
from katcp.sensor import Sensor
from katcp.server import DeviceServer

# ----------------------------------------------------------------- the per-class decision


class PlainEvent(SampleEvent):
    __slots__ = ()


class ChangedEvent(SampleEvent):
    """Counts only value changes (overrides _changed)."""

    __slots__ = ()

    def _changed(self, reading) -> bool:
        return self._last is None or reading[2] != self._last[2]


class InformOverride:
    """A mixin overriding inform: every report must pass through it."""

    def inform(self, reading) -> None:
        self.seen.append(reading[2])
        super().inform(reading)


class MixedEvent(InformOverride, SampleEvent):
    __slots__ = ("seen",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen = []


class ReportedAuto(SampleAuto):
    __slots__ = ("reported",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reported = []

    def _report_now(self, reading) -> None:
        self.reported.append(reading[2])
        super()._report_now(reading)


class SubOfOverride(ChangedEvent):
    __slots__ = ()


def test_fanout_is_chosen_per_class():
    assert SampleAuto._fanout == _EVERY and SampleEvent._fanout == _ON_CHANGE
    assert PlainEvent._fanout == _ON_CHANGE
    for cls in (ChangedEvent, MixedEvent, ReportedAuto, SubOfOverride, SampleDifferential,
                SampleEventRate, SamplePeriod, SampleStrategy):
        assert cls._fanout is None, cls


# ------------------------------------------------------------------ the relay's shortcut


class Sink:
    """A connection look-alike recording the bytes written to it."""

    def __init__(self) -> None:
        self.data: list = []

    def write_bytes(self, data: bytes) -> None:
        self.data.append(data)


class Formatter:
    """A StatusWriter format that counts its calls (one per reading for all clients)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, sensor, reading) -> bytes:
        self.calls += 1
        return b"%s %d %d\n" % (sensor.name.encode(), reading[1], reading[2])


def values(sink: Sink) -> list:
    return [int(line.split()[2]) for line in sink.data]


def test_relay_reports_plain_classes_itself_and_others_through_their_methods():
    async def body(loop):
        sensor = int_sensor(0)
        fmt = Formatter()
        made = {}
        for cls in (SampleAuto, SampleEvent, PlainEvent, MixedEvent, ReportedAuto):
            sink = Sink()
            made[cls] = (cls(StatusWriter(fmt, sink), sensor, ioloop=loop), sink)
        rec = Recorder(loop)
        recorded = SampleEvent(rec, sensor, ioloop=loop)  # not a StatusWriter: slow path
        for strat, _ in made.values():
            strat.start()
        recorded.start()
        relay = recorded._relay
        fast = {entry[0] for entry in relay._fast}
        assert fast == {made[c][0] for c in (SampleAuto, SampleEvent, PlainEvent)}
        assert set(relay._slow) == {made[c][0] for c in (MixedEvent, ReportedAuto)} | {
            recorded}
        calls_before = fmt.calls
        sensor.set(2.0, NOMINAL, 0)  # no change: auto only
        sensor.set(3.0, NOMINAL, 4)  # change: all
        sensor.set(4.0, WARN, 4)  # status change: all
        set_in_thread(sensor, 4, 6, status=WARN, ts=5.0)  # through the queue: 4 then 6
        await loop.settle()
        assert values(made[SampleAuto][1]) == [0, 0, 4, 4, 4, 6]
        for cls in (SampleEvent, PlainEvent, MixedEvent):
            assert values(made[cls][1]) == [0, 4, 4, 6], cls
        assert values(made[ReportedAuto][1]) == [0, 0, 4, 4, 4, 6]
        assert made[MixedEvent][0].seen == [0, 4, 4, 6]
        assert made[ReportedAuto][0].reported == [0, 0, 4, 4, 4, 6]
        assert rec.values == [0, 4, 4, 6]
        # Each reading formatted once for the plain strategies (the slow ones call the
        # same formatter through their StatusWriter).
        slow_writes = sum(len(made[c][1].data) - 1 for c in (MixedEvent, ReportedAuto))
        assert fmt.calls - calls_before == 5 + slow_writes
        for strat, _ in made.values():
            strat.cancel()
        recorded.cancel()
        assert sensor._observers == ()

    run(body)


def test_cancel_during_fanout_stops_reports_to_the_rest():
    async def body(loop):
        sensor = int_sensor(0)
        fmt = Formatter()
        later_sink = Sink()
        later = SampleAuto(StatusWriter(fmt, later_sink), sensor, ioloop=loop)

        class Cancelling(Sink):
            armed = False

            def write_bytes(self, data: bytes) -> None:
                super().write_bytes(data)
                if self.armed:
                    later.cancel()

        first_sink = Cancelling()
        first = SampleAuto(StatusWriter(fmt, first_sink), sensor, ioloop=loop)
        first.start()
        later.start()
        assert [e[0] for e in first._relay._fast] == [first, later]
        first_sink.data.clear()
        first_sink.armed = True
        sensor.set(2.0, NOMINAL, 3)
        assert values(first_sink) == [3]
        assert values(later_sink) == [0]  # cancelled by the write before its turn
        first.cancel()

    run(body)


def test_write_errors_are_logged_and_the_other_clients_still_get_theirs(caplog):
    async def body(loop):
        sensor = int_sensor(0)
        fmt = Formatter()

        class Broken(Sink):
            def write_bytes(self, data: bytes) -> None:
                raise RuntimeError("boom")

        sinks = [Sink(), Broken(), Sink()]
        strats = [SampleEvent(StatusWriter(fmt, s), sensor, ioloop=loop) for s in sinks]
        with caplog.at_level(logging.ERROR, logger="katcp.sampling"):
            for strat in strats:
                strat.start()
            sensor.set(2.0, NOMINAL, 5)
        assert values(sinks[0]) == values(sinks[2]) == [0, 5]
        assert "boom" in caplog.text and "an.int" in caplog.text
        for strat in strats:
            strat.cancel()

    run(body)


def test_format_errors_are_logged_per_strategy(caplog):
    async def body(loop):
        sensor = int_sensor(0)

        def bad_format(sensor_, reading) -> bytes:
            if reading[2] == 5:
                raise ValueError("cannot format")
            return b"%d\n" % reading[2]

        sinks = [Sink(), Sink()]
        strats = [SampleAuto(StatusWriter(bad_format, s), sensor, ioloop=loop) for s in sinks]
        for strat in strats:
            strat.start()
        with caplog.at_level(logging.ERROR, logger="katcp.sampling"):
            sensor.set(2.0, NOMINAL, 5)
        sensor.set(3.0, NOMINAL, 6)
        assert [s.data for s in sinks] == [[b"0\n", b"6\n"]] * 2
        assert [r.exc_info[0] for r in caplog.records] == [ValueError, ValueError]
        for strat in strats:
            strat.cancel()

    run(body)


def test_strategy_joining_while_readings_are_queued_is_reported_nothing_older():
    async def body(loop):
        sensor = int_sensor(0)
        fmt = Formatter()
        early_sink, late_sink = Sink(), Sink()
        early = SampleAuto(StatusWriter(fmt, early_sink), sensor, ioloop=loop)
        early.start()
        set_in_thread(sensor, 1, 2)  # queued
        late = SampleAuto(StatusWriter(fmt, late_sink), sensor, ioloop=loop)
        late.start()  # reports 2 at once
        await loop.settle()
        set_in_thread(sensor, 3)
        await loop.settle()
        assert values(early_sink) == [0, 1, 2, 3]
        assert values(late_sink) == [2, 3]
        early.cancel()
        late.cancel()

    run(body)


# ------------------------------------------------------------ the server's formatted line


@pytest.mark.parametrize("sensor, value", [
    (Sensor.integer("an.int", "", "", [-10, 10]), -3),
    (Sensor.float("a.float", "", "", [-1.0, 1.0]), 0.25),
    (Sensor.string("a.string", "", ""), "two words\\and\ttab\nnewline\x1b\0"),
    (Sensor.string("a.string", "", ""), ""),
    (Sensor.string("a.string", "", ""), "caf\u00e9"),
    (Sensor.discrete("a.discrete", "", "", ["on", "off"]), "off"),
    (Sensor.boolean("a.bool", "", ""), True),
    (Sensor.string("caf\u00e9.name", "", ""), "x"),
    (Sensor.string("odd name", "", ""), "x"),
])
@pytest.mark.parametrize("major", [4, 5])
def test_status_line_is_the_messages_encoding(sensor, value, major):
    class Dev(DeviceServer):
        PROTOCOL_INFO = ProtocolFlags(major, 0, "M")

    dev = Dev("127.0.0.1", 0)
    sensor.set(1234.5, Sensor.WARN, value)
    reading = sensor.read()
    ts, status, formatted = sensor.format_reading(reading, major)
    expected = dev._encode(Message.inform("sensor-status", ts, "1", sensor.name, status,
                                          formatted))
    assert dev._status_bytes(sensor, reading) == expected
    assert dev._status_bytes(sensor, reading) is dev._status_bytes(sensor, reading)


# ------------------------------------------------------------------- over real sockets


class RecordingConnection(ClientConnection):
    """Overrides inform: it must see every #sensor-status its client gets."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list = []

    def inform(self, msg) -> None:
        self.seen.append(bytes(msg))
        super().inform(msg)


class RecordingSendServer(KATCPServer):
    def send_message(self, stream, msg) -> None:
        self.sent.append(bytes(msg))
        super().send_message(stream, msg)


def _status_values(lines) -> list:
    out = []
    for line in lines:
        if line.startswith(b"#sensor-status"):
            parts = line.split()
            out.append((parts[4], int(parts[5])))
    return out


def _read_statuses(client: RawClient, n: int, lines: list) -> list:
    """The (status, value) of the ``#sensor-status`` in ``lines`` and read, up to ``n``."""
    lines = list(lines)
    while len(_status_values(lines)) < n:
        lines.append(client.readline())
    return _status_values(lines)


@pytest.mark.parametrize("options", [(True, True), (False, False)],
                         ids=["handler-thread", "in-loop"])
def test_plain_and_overriding_clients_get_the_same_informs_over_sockets(options):
    dev = ExampleServer("127.0.0.1", 0)
    dev.set_concurrency_options(thread_safe=options[0], handler_thread=options[1])
    made: list = []

    def factory(server, conn):
        # Every other client overrides inform.
        cls = RecordingConnection if len(made) % 2 else ClientConnection
        client = cls(server, conn)
        made.append(client)
        return client

    dev._server.client_connection_factory = factory
    sensor = dev.get_sensor("an.int")
    with running(dev):
        clients = []
        sampled = []
        try:
            for strategy in (b"auto", b"auto", b"event", b"event", b"differential 2",
                             b"differential 2"):
                client = RawClient(dev.bind_address)
                clients.append(client)
                client.skip_connect_informs()
                sampled.append(client.request(b"?sensor-sampling an.int " + strategy))
            assert [type(c) for c in made] == [ClientConnection, RecordingConnection] * 3
            relay = dev._strategies[made[0]][sensor]._relay
            assert {e[0] for e in relay._fast} == {dev._strategies[made[i]][sensor]
                                                  for i in (0, 2)}
            # From the loop thread (at once) and from this thread (queued for the loop).
            steps = [(5, NOMINAL), (5, NOMINAL), (9, NOMINAL), (9, WARN)]
            for i, (value, status) in enumerate(steps):
                if i % 2:
                    sensor.set_value(value, status)
                else:
                    done = threading.Event()

                    def in_loop(value=value, status=status, done=done):
                        sensor.set_value(value, status)
                        done.set()

                    dev.ioloop.add_callback(in_loop)
                    assert done.wait(TIMEOUT)
            expected = {
                b"auto": [(b"unknown", 3), (b"nominal", 5), (b"nominal", 5), (b"nominal", 9),
                          (b"warn", 9)],
                b"event": [(b"unknown", 3), (b"nominal", 5), (b"nominal", 9), (b"warn", 9)],
                # (the status change from unknown counts; 5 -> 5 -> 9 moves by 4 > 2)
                b"differential 2": [(b"unknown", 3), (b"nominal", 5), (b"nominal", 9),
                                    (b"warn", 9)],
            }
            received = []
            for i, client in enumerate(clients):
                want = expected[(b"auto", b"event", b"differential 2")[i // 2]]
                received.append(_read_statuses(client, len(want), sampled[i]))
                assert received[-1] == want, i
        finally:
            for client in clients:
                client.close()
    for i in (1, 3, 5):
        assert _status_values(made[i].seen) == received[i]


def test_server_overriding_send_message_sees_the_sensor_informs():
    dev = ExampleServer("127.0.0.1", 0)
    dev._server.__class__ = RecordingSendServer
    dev._server.sent = []
    assert not RecordingSendServer._direct_send
    sensor = dev.get_sensor("an.int")
    with running(dev):
        client = RawClient(dev.bind_address)
        try:
            greeting = client.skip_connect_informs()
            sampled = client.request(b"?sensor-sampling an.int event")
            (conn,) = dev._strategies
            relay = dev._strategies[conn][sensor]._relay
            assert relay._fast == ()
            sensor.set_value(7)
            got = _read_statuses(client, 2, sampled)
        finally:
            client.close()
    assert got == [(b"unknown", 3), (b"nominal", 7)]
    sent = [line for line in dev._server.sent if line.startswith(b"#sensor-status")]
    assert _status_values(sent) == got
    assert [line for line in dev._server.sent if line.startswith(b"#version")] == [
        re.sub(rb"\s+$", b"", line) for line in greeting if line.startswith(b"#version")]


def test_server_overriding_send_message_sees_mass_informs_and_announcements():
    # Messages to all clients and the #client-connected batches are encoded once and
    # shared, unless the server's class overrides send_message: then it sees each one.
    dev = ExampleServer("127.0.0.1", 0)
    dev._server.__class__ = RecordingSendServer
    dev._server.sent = []
    with running(dev):
        first = RawClient(dev.bind_address)
        second = None
        try:
            first.skip_connect_informs()
            second = RawClient(dev.bind_address)
            second.skip_connect_informs()
            assert first.read_until(b"#client-connected")[-1].startswith(b"#client-connected")
            dev.mass_inform(Message.inform("hello", "all"))
            for client in (first, second):
                assert client.read_until(b"#hello")[-1] == b"#hello all"
        finally:
            first.close()
            if second is not None:
                second.close()
    sent = dev._server.sent
    assert len([line for line in sent if line.startswith(b"#hello all")]) == 2
    assert any(line.startswith(b"#client-connected") for line in sent)
