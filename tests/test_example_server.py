"""The example instrument, over real loopback sockets.

The server runs in-process on port 0 (its managed ioloop thread, or the test's
loop for ``run_server``); clients are aiokatcp (a real peer) and a raw line
reader where message order matters.
"""

import asyncio
import os
import subprocess
import sys

import aiokatcp
import pytest

from katcp.tools.example_server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ExampleServer,
    build_parser,
    run_server,
)

TIMEOUT = 5.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENSOR_TYPES = {
    "device-status": b"discrete",
    "tick-count": b"integer",
    "temperature": b"float",
    "rf.frequency": b"float",
    "rf.gain": b"float",
    "rf.power": b"float",
    "lo.locked": b"boolean",
    "psu.state": b"lru",
    "mode": b"discrete",
    "last-request": b"string",
    "time.now": b"timestamp",
    "time.started": b"timestamp",
    "capture.destination": b"address",
    "echo.count": b"integer",
}


@pytest.fixture
def server():
    srv = ExampleServer("127.0.0.1", 0, update_period=0.05, seed=1)
    assert srv.start(timeout=TIMEOUT)
    try:
        yield srv
    finally:
        srv.stop().result(TIMEOUT)
        srv.join(timeout=TIMEOUT)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def aio_client(server):
    host, port = server.bind_address
    client = await asyncio.wait_for(
        aiokatcp.Client.connect(host, port, auto_reconnect=False), TIMEOUT)
    return client


class LineClient:
    """Minimal raw KATCP line client (exact bytes, message order preserved)."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server):
        host, port = server.bind_address
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        return cls(reader, writer)

    def send(self, line: bytes) -> None:
        self.writer.write(line + b"\n")

    async def readline(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert line, "connection closed"
        return line.rstrip(b"\n")

    async def read_until(self, prefix: bytes):
        lines = []
        while True:
            line = await self.readline()
            lines.append(line)
            if line.startswith(prefix):
                return lines

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def test_help_lists_every_request_with_its_docstring(server):
    async def body():
        client = await aio_client(server)
        try:
            reply, informs = await client.request("help")
            helps = {m.arguments[0].decode(): m.arguments[1] for m in informs}
            assert int(reply[0]) == len(informs)
            for name in ("echo", "add", "divide", "set-gain", "frequency", "set-mode",
                         "capture-destination", "slow-command", "countdown",
                         "sensor-value", "halt"):
                assert name in helps
            assert helps["add"].startswith(b"Add two integers.")
            reply, informs = await client.request("help", "slow-command")
            assert informs[0].arguments[1].startswith(b"Wait, then reply")
            with pytest.raises(aiokatcp.FailReply):
                await client.request("help", "no-such-request")
        finally:
            client.close()
            await client.wait_closed()

    run(body())


def test_sensor_list_and_values_cover_every_type(server):
    async def body():
        client = await aio_client(server)
        try:
            _, informs = await client.request("sensor-list")
            types = {m.arguments[0].decode(): m.arguments[3] for m in informs}
            assert types == SENSOR_TYPES
            assert set(types.values()) == {b"integer", b"float", b"boolean", b"discrete",
                                           b"lru", b"string", b"timestamp", b"address"}
            reply, informs = await client.request("sensor-value", "rf.gain")
            assert reply == [b"1"]
            assert informs[0].arguments[2:] == [b"rf.gain", b"nominal", b"30.0"]
            reply, informs = await client.request("sensor-value")
            assert int(reply[0]) == len(SENSOR_TYPES)
            with pytest.raises(aiokatcp.FailReply, match="Unknown sensor"):
                await client.request("sensor-value", "nope")
        finally:
            client.close()
            await client.wait_closed()

    run(body())


def test_typed_requests(server):
    async def body():
        client = await aio_client(server)
        try:
            assert (await client.request("add", 2, -5))[0] == [b"-3"]
            with pytest.raises(aiokatcp.FailReply, match="parameter 2"):
                await client.request("add", 2, "x")
            assert (await client.request("divide", 1, 4))[0] == [b"0.25"]
            with pytest.raises(aiokatcp.FailReply, match="divide by zero"):
                await client.request("divide", 1, 0)
            assert (await client.request("set-gain", 20.5))[0] == [b"20.5"]
            with pytest.raises(aiokatcp.FailReply, match="maximum"):
                await client.request("set-gain", 70)
            _, informs = await client.request("sensor-value", "rf.gain")
            assert informs[0].arguments[4] == b"20.5"
            assert (await client.request("frequency", "1.42e9"))[0] == [b"1420000000.0"]
            assert (await client.request("frequency"))[0] == [b"1420000000.0"]
            assert (await client.request("set-mode", "observe"))[0] == [b"observe"]
            with pytest.raises(aiokatcp.FailReply, match="not one of"):
                await client.request("set-mode", "bogus")
            reply, _ = await client.request("capture-destination", "[::1]:7148")
            assert reply == [b"[::1]:7148"]
            with pytest.raises(aiokatcp.FailReply, match="port"):
                await client.request("capture-destination", "10.0.0.1")
            assert (await client.request("echo", "hello", "a b"))[0] == [b"hello", b"a b"]
            assert (await client.request("echo"))[0] == []
            _, informs = await client.request("sensor-value", "echo.count")
            assert informs[0].arguments[4] == b"2"
            _, informs = await client.request("sensor-value", "last-request")
            assert informs[0].arguments[4] == b"echo"
            reply, informs = await client.request("request-timeout-hint", "slow-command")
            assert informs[0].arguments == [b"slow-command", b"35.0"]
        finally:
            client.close()
            await client.wait_closed()

    run(body())


def test_slow_request_replies_later_without_blocking_the_client(server):
    async def body():
        client = await LineClient.connect(server)
        try:
            await client.read_until(b"#version-connect katcp-device")
            client.send(b"?slow-command[1] 0.15")
            client.send(b"?watchdog[2]")
            lines = await client.read_until(b"!slow-command[1]")
            # the watchdog was answered while slow-command was still running
            assert lines.index(b"!watchdog[2] ok") < len(lines) - 1
            taken = float(lines[-1].split()[2])
            assert lines[-1].startswith(b"!slow-command[1] ok") and taken >= 0.15
            client.send(b"?slow-command[3] 31")
            assert (await client.read_until(b"!slow-command[3]"))[-1].startswith(
                b"!slow-command[3] fail")
        finally:
            await client.close()

    run(body())


def test_countdown_async_reply_with_informs(server):
    async def body():
        client = await aio_client(server)
        try:
            reply, informs = await client.request("countdown", 3)
            assert reply == [b"4"]
            assert [m.arguments for m in informs] == [[b"3"], [b"2"], [b"1"], [b"0"]]
            with pytest.raises(aiokatcp.FailReply):
                await client.request("countdown", 100)
        finally:
            client.close()
            await client.wait_closed()

    run(body())


def test_sensors_change_over_time_and_can_be_sampled(server):
    async def body():
        client = await LineClient.connect(server)
        try:
            await client.read_until(b"#version-connect katcp-device")
            client.send(b"?sensor-sampling tick-count event")
            lines = await client.read_until(b"!sensor-sampling")
            assert lines[-1] == b"!sensor-sampling ok tick-count event"
            first = [ln for ln in lines if ln.startswith(b"#sensor-status")]
            assert len(first) == 1  # the initial update, before the reply
            counts = [int(first[0].split()[5])]
            while len(counts) < 3:
                line = await client.readline()
                assert line.startswith(b"#sensor-status")
                counts.append(int(line.split()[5]))
            assert counts == sorted(counts) and len(set(counts)) == 3
            client.send(b"?sensor-sampling time.now,temperature period 0.05")
            lines = await client.read_until(b"!sensor-sampling")
            assert lines[-1] == b"!sensor-sampling ok time.now,temperature period 0.05"
        finally:
            await client.close()

    run(body())


def test_simulation_sets_statuses():
    srv = ExampleServer("127.0.0.1", 0, seed=3)
    for _ in range(200):
        srv.simulate()
    temp = srv.get_sensor("temperature").read()
    assert -20.0 <= temp.value <= 80.0
    assert srv.get_sensor("tick-count").value() == 200
    state = srv.get_sensor("device-status").read()
    assert state.value in ("ok", "degraded", "fail")
    worst = max(srv.get_sensor(n).status() for n in ("temperature", "rf.power", "lo.locked",
                                                      "psu.state"))
    if worst >= 3:
        expected = ("fail", 3)
    elif worst == 2:
        expected = ("degraded", 2)
    else:
        expected = ("ok", 1)
    assert (state.value, state.status) == expected
    with pytest.raises(ValueError, match="update_period"):
        ExampleServer("127.0.0.1", 0, update_period=0)


def test_run_server_stops_on_halt():
    async def body():
        started = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(run_server("127.0.0.1", 0, update_period=0.05,
                                                on_started=started.set_result))
        srv = await asyncio.wait_for(started, TIMEOUT)
        client = await LineClient.connect(srv)
        try:
            await client.read_until(b"#version-connect katcp-device")
            client.send(b"?halt")
            await client.read_until(b"!halt ok")
        finally:
            await client.close()
        await asyncio.wait_for(task, TIMEOUT)
        assert not srv.running()

    run(body())


def test_run_server_stops_on_event():
    async def body():
        stop = asyncio.Event()
        started = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(run_server("127.0.0.1", 0, stop_event=stop,
                                                on_started=started.set_result))
        srv = await asyncio.wait_for(started, TIMEOUT)
        assert srv.running()
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        assert not srv.running()

    run(body())


def test_command_line():
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.verbose) == (DEFAULT_HOST, DEFAULT_PORT, False)
    assert DEFAULT_PORT == 7147
    args = build_parser().parse_args(["--host", "::1", "--port", "0", "--verbose"])
    assert (args.host, args.port, args.verbose) == ("::1", 0, True)
    out = subprocess.run([sys.executable, "-m", "katcp.tools.example_server", "--help"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0 and "--port" in out.stdout and "7147" in out.stdout
    out = subprocess.run([sys.executable, "-m", "katcp.tools.example_server", "--port",
                          "70000"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 2 and "port must be" in out.stderr


def test_sampling_strategy_errors_and_formatting_over_the_wire(server):
    async def body():
        client = await LineClient.connect(server)
        try:
            await client.read_until(b"#version-connect katcp-device")
            exchanges = [
                (b"?sensor-sampling last-request differential 1",
                 b"!sensor-sampling fail Invalid\\_strategy\\_requested:\\_The\\_'differential'"
                 b"\\_strategy\\_is\\_only\\_valid\\_for\\_integer,\\_float\\_and\\_timestamp"),
                (b"?sensor-sampling rf.gain event-rate 2 1",
                 b"!sensor-sampling fail Invalid\\_strategy\\_requested:\\_The\\_'event-rate'"),
                (b"?sensor-sampling rf.gain period 0",
                 b"!sensor-sampling fail Invalid\\_strategy\\_requested:\\_The\\_'period'"),
                (b"?sensor-sampling rf.gain auto 1",
                 b"!sensor-sampling fail Invalid\\_strategy\\_requested:\\_The\\_'auto'"),
                (b"?sensor-sampling tick-count differential 2.5",
                 b"!sensor-sampling fail Invalid\\_strategy\\_requested:\\_The\\_'differential'"
                 b"\\_strategy's\\_difference\\_must\\_be\\_an\\_integer"),
                (b"?sensor-sampling rf.gain differential-rate 0.5 0.1 10",
                 b"!sensor-sampling ok rf.gain differential-rate 0.5 0.1 10"),
                (b"?sensor-sampling rf.gain",
                 b"!sensor-sampling ok rf.gain differential-rate 0.5 0.1 10"),
                (b"?sensor-sampling rf.gain none", b"!sensor-sampling ok rf.gain none"),
            ]
            for request, expected in exchanges:
                client.send(request)
                lines = await client.read_until(b"!sensor-sampling")
                assert lines[-1].startswith(expected), (request, lines[-1])
        finally:
            await client.close()

    run(body())
