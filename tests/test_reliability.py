"""One client cannot stall the others; work a request causes is bounded (issue 16).

Real loopback sockets against servers on a managed ioloop; every wait is bounded.
Figures (how long, how much memory) come from ``bench/bench_hostile.py``, not from here.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from test_server_support import TIMEOUT, RawClient, running

from katcp.sampling import SampleStrategy
from katcp.sensor import Sensor
from katcp.server import DeviceServer, construct_name_filter

N_HOSTILE = 200
#: Long enough that Python's backtracking ``re`` needs minutes for ``(a+)+$``.
HOSTILE_NAME = "a" * 30


class HostileNamesServer(DeviceServer):
    """200 sensors whose names make ``/(a+)+$/`` backtrack exponentially."""

    def setup_sensors(self) -> None:
        for i in range(N_HOSTILE):
            self.add_sensor(Sensor.integer(f"{HOSTILE_NAME}-{i:03d}", "hostile", "", default=i))
        self.add_sensor(Sensor.integer("plain.one", "plain", "", default=1))


def make_server(kind: str, cls=HostileNamesServer) -> DeviceServer:
    server = cls("127.0.0.1", 0)
    if kind == "async":
        server.set_concurrency_options(thread_safe=False, handler_thread=False)
    return server


def client(server) -> RawClient:
    c = RawClient(server.bind_address)
    c.skip_connect_informs()
    return c


# ------------------------------------------------------------ regular expressions

@pytest.mark.parametrize("kind", ["async", "threaded"])
def test_backtracking_pattern_does_not_stall_other_clients(kind):
    with running(make_server(kind)) as server:
        attacker, other = client(server), client(server)
        attacker.send(b"?sensor-value /(a+)+$/\n")
        time.sleep(0.05)
        t0 = time.monotonic()
        assert other.request(b"?watchdog")[-1] == b"!watchdog ok"
        assert time.monotonic() - t0 < 1.0
        lines = attacker.read_until(b"!sensor-value", timeout=TIMEOUT)
        assert lines[-1] == b"!sensor-value ok 0"
        # a pattern that matches still works, in RE2 syntax
        lines = attacker.request(b"?sensor-value /a{30}-19[0-9]$/")
        assert lines[-1] == b"!sensor-value ok 10"
        assert [ln.split()[3] for ln in lines[:-1]] == [
            f"{HOSTILE_NAME}-{i}".encode() for i in range(190, 200)]
        attacker.close()
        other.close()


@pytest.mark.parametrize("request_name", [b"sensor-value", b"sensor-list"])
def test_long_pattern_fails_and_says_why(request_name):
    with running(make_server("async")) as server:
        c = client(server)
        c.send(b"?" + request_name + b" /" + b"a" * (1 << 20) + b"/\n")
        reply = c.read_until(b"!" + request_name, timeout=TIMEOUT)[-1]
        assert reply.startswith(b"!" + request_name + b" fail ")
        assert b"(MAX_NAME_PATTERN_LENGTH)" in reply and len(reply) < 300
        assert c.request(b"?watchdog")[-1] == b"!watchdog ok"
        c.close()


@pytest.mark.parametrize("pattern, why", [
    (rb"/(\\w+)\\1/", b"no\\_backreferences"),
    (rb"/(?=a)/", b"lookaround"),
    (rb"/(?:[^a]{1000}){1000}/", b"RE2"),
    (rb"/(/", b"missing"),
])
def test_unsupported_or_huge_pattern_fails_with_reason(pattern, why):
    with running(make_server("async")) as server:
        c = client(server)
        reply = c.request(b"?sensor-list " + pattern)[-1]
        assert reply.startswith(b"!sensor-list fail Invalid\\_sensor\\_name\\_pattern:")
        assert why in reply
        c.close()


def test_matching_in_slices_gives_the_loop_back():
    class Sliced(HostileNamesServer):
        NAME_MATCH_SLICE_SECONDS = 0.0  # a slice per few names: the coroutine path

    with running(make_server("async", Sliced)) as server:
        c = client(server)
        lines = c.request(b"?sensor-list /-1[0-9][0-9]$/")
        assert lines[-1] == b"!sensor-list ok 100"
        assert c.request(b"?sensor-value /^plain/")[-1] == b"!sensor-value ok 1"
        assert c.request(b"?sensor-value plain.one")[-1] == b"!sensor-value ok 1"
        assert c.request(b"?sensor-value no.such")[-1].startswith(b"!sensor-value fail Unknown")
        c.close()


def test_construct_name_filter_keeps_its_api():
    assert construct_name_filter(None)[0] is False
    exact, f = construct_name_filter("a.b")
    assert exact and f("a.b") and not f("a.bc")
    exact, f = construct_name_filter("/^a\\.b/")
    assert not exact and f("a.bc") and not f("xa.b")
    with pytest.raises(re.error):
        construct_name_filter("/(/")
    with pytest.raises(re.error, match="MAX_NAME_PATTERN_LENGTH"):
        construct_name_filter("/" + "a" * 10000 + "/")


# ------------------------------------------------------------ sampling periods

@pytest.mark.parametrize("params, why", [
    (b"period 0.000001", b"SampleStrategy.MIN_PERIOD"),
    (b"period 1e-300", b"SampleStrategy.MIN_PERIOD"),
    (b"period 0.0009", b"at\\_least\\_0.001\\_s"),
    (b"period nan", b"finite"),
    (b"period inf", b"finite"),
    (b"period -1", b"positive"),
    (b"event-rate 0 0.000001", b"SampleStrategy.MIN_PERIOD"),
    (b"event-rate 0 nan", b"finite"),
    (b"event-rate -1 1", b"0\\_<=\\_shortest-period"),
    (b"event-rate 0 inf", b"finite"),
    (b"differential-rate 1 0 1e-300", b"SampleStrategy.MIN_PERIOD"),
])
def test_too_fast_or_bad_periods_fail_and_name_the_limit(params, why):
    with running(make_server("async")) as server:
        c = client(server)
        reply = c.request(b"?sensor-sampling plain.one " + params)[-1]
        assert reply.startswith(b"!sensor-sampling fail "), reply
        assert why in reply, reply
        # nothing was set: no informs follow
        assert c.request(b"?sensor-sampling plain.one") == [
            b"!sensor-sampling ok plain.one none"]
        c.close()


def test_minimum_period_is_accepted_and_configurable():
    with running(make_server("async")) as server:
        c = client(server)
        assert c.request(b"?sensor-sampling plain.one period 0.001")[-1] == \
            b"!sensor-sampling ok plain.one period 0.001"
        assert c.request(b"?sensor-sampling plain.one event-rate 0 0.001")[-1] == \
            b"!sensor-sampling ok plain.one event-rate 0 0.001"
        old = SampleStrategy.MIN_PERIOD
        SampleStrategy.MIN_PERIOD = 0.5
        try:
            reply = c.request(b"?sensor-sampling plain.one period 0.1")[-1]
            assert b"at\\_least\\_0.5\\_s\\_(SampleStrategy.MIN_PERIOD)" in reply
        finally:
            SampleStrategy.MIN_PERIOD = old
        c.close()


# ------------------------------------------------------------ updates from other threads

class SpinServer(DeviceServer):
    def setup_sensors(self) -> None:
        for i in range(100):
            self.add_sensor(Sensor.integer(f"spin.{i}", "set by threads", "", default=0))


def subscribe_all(server, strategy: bytes = b"event") -> RawClient:
    c = client(server)
    for i in range(100):
        assert c.request(b"?sensor-sampling spin.%d %s" % (i, strategy))[-1].startswith(
            b"!sensor-sampling ok")
    return c


def drain(c: RawClient, stop: threading.Event, lines: list) -> None:
    c.sock.settimeout(0.05)
    while not stop.is_set():
        try:
            data = c.sock.recv(1 << 20)
        except OSError:  # timeout, or dropped as a slow reader
            continue
        if not data:
            return
        lines.append(data)


@pytest.mark.parametrize("kind", ["async", "threaded"])
def test_flood_of_thread_updates_coalesces(kind):
    """8 threads set 100 sensors flat out: the loop's queue stays short, queries answer."""
    from katcp._aio.loopcalls import loop_calls

    with running(make_server(kind, SpinServer)) as server:
        sub = subscribe_all(server)
        other = client(server)
        stop, drained = threading.Event(), []
        drainer = threading.Thread(target=drain, args=(sub, stop, drained), daemon=True)
        drainer.start()
        sensors = [server.get_sensor(f"spin.{i}") for i in range(100)]
        setting = threading.Event()
        setting.set()

        def setter() -> None:
            v = 0
            while setting.is_set():
                v += 1
                for s in sensors:
                    s.set_value(v)

        threads = [threading.Thread(target=setter, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        calls = loop_calls(server.ioloop.asyncio_loop)
        longest = biggest_backlog = 0
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            longest = max(longest, len(calls._calls) // 3)
            for strategies in list(server._strategies.values()):
                for st in list(strategies.values()):
                    relay = st._relay
                    if relay is not None:
                        biggest_backlog = max(biggest_backlog, len(relay._pending or ()))
            time.sleep(0.01)
        setting.clear()
        for t in threads:
            t.join(TIMEOUT)
        t0 = time.monotonic()
        assert other.request(b"?watchdog")[-1] == b"!watchdog ok"
        answered = time.monotonic() - t0
        stop.set()
        drainer.join(TIMEOUT)
        # one queued call per sensor at most (plus a few of the server's own)
        assert longest <= 100 + 10, longest
        assert answered < 0.5, answered
        assert biggest_backlog <= SampleStrategy.MAX_THREAD_BACKLOG
        sub.close()
        other.close()


class Pause:
    """An observer attached before the strategies: holds one setter after its store."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.release = threading.Event()

    def update(self, sensor, reading) -> None:
        if threading.current_thread().name == "first-setter":
            self.hold.set()
            assert self.release.wait(TIMEOUT)


@pytest.mark.parametrize("strategy", [b"auto", b"event"])
def test_informs_follow_the_order_values_were_set(strategy):
    """Thread A stores 1 and is held; thread B stores 2 and notifies; then A notifies.

    The client must not get 1 after 2: readings reach strategies in store order.
    """
    with running(make_server("async", SpinServer)) as server:
        sensor = server.get_sensor("spin.0")
        pause = Pause()
        sensor.attach(pause)  # before the client's strategy: called first
        c = client(server)
        assert c.request(b"?sensor-sampling spin.0 " + strategy)[-1].startswith(
            b"!sensor-sampling ok")
        first = threading.Thread(target=sensor.set_value, args=(1,), name="first-setter")
        first.start()
        assert pause.hold.wait(TIMEOUT)
        second = threading.Thread(target=sensor.set_value, args=(2,))
        second.start()
        second.join(TIMEOUT)
        pause.release.set()
        first.join(TIMEOUT)
        values = []
        while True:
            line = c.readline(timeout=TIMEOUT)
            if line.startswith(b"#sensor-status"):
                values.append(int(line.split()[-1]))
            if values and values[-1] == 2:
                break
        # a last look: nothing (in particular no 1) after the 2
        c.send(b"?watchdog\n")
        rest = c.read_until(b"!watchdog")
        assert [ln for ln in rest if ln.startswith(b"#sensor-status")] == []
        assert values[-1] == 2 and values.count(1) <= 1 and values.index(2) == len(values) - 1
        c.close()


# ------------------------------------------------------------ arguments a request does not take

@pytest.mark.parametrize("kind", ["async", "threaded"])
def test_arguments_a_request_does_not_take_are_ignored_with_bounded_work(kind):
    """As katcp-python's hand-written handlers: extra arguments are ignored.

    The work is bounded by the line length limit (MAX_MSG_SIZE): the line is parsed
    once and the handler looks only at the arguments it takes.
    """
    with running(make_server(kind)) as server:
        c, other = client(server), client(server)
        c.request(b"?watchdog")  # (past the other's #client-connected)
        assert c.request(b"?watchdog" + b" x" * 100_000) == [b"!watchdog ok"]
        lines = c.request(b"?sensor-value" + b" plain.one" * 100_000)
        assert lines[-1] == b"!sensor-value ok 1" and len(lines) == 2
        lines = c.request(b"?sensor-list plain.one" + b" no.such" * 100_000)
        assert lines[-1] == b"!sensor-list ok 1" and len(lines) == 2
        reply = c.request(b"?sensor-sampling plain.one event" + b" 1" * 100_000)[-1]
        assert reply.startswith(b"!sensor-sampling fail") and len(reply) < 300
        assert other.request(b"?watchdog") == [b"!watchdog ok"]
        c.close()
        other.close()
