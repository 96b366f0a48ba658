"""The NCP gateway: a node (katcp.ncp's server, and ncplib's) behind the manager."""

import asyncio
import contextlib
from array import array

import ncplib
import pytest
from manager_support import LineClient, run, running_manager, until

from katcp import ncp
from katcp.core import Sensor
from katcp.manager import DeviceSpec
from katcp.manager.ncp_device import parse_ncp_value, split_request
from katcp.ncp.values import f64, i64, u64

SERVERS = [pytest.param(ncp.start_server, id="katcp.ncp"),
           pytest.param(ncplib.start_server, id="ncplib")]


class Node:
    """A small NCP node: answers DSPC TIME, fails DSPC FAIL, never answers DSPC SLOW, sends
    NODE SPEC (an array and raw bytes) once, NODE STAT every 20 ms and a NODE WARN when asked
    with NODE HEAT."""

    def __init__(self, start_server) -> None:
        self.start_server = start_server
        self.server = None
        self.port = 0
        self.stopping = asyncio.Event()
        self.connections = 0

    async def start(self, port: int = 0) -> int:
        self.stopping = asyncio.Event()
        for _ in range(50):
            try:
                self.server = await self.start_server(self.handle, "127.0.0.1", port)
                break
            except OSError:  # the old listening socket may linger for a moment
                await asyncio.sleep(0.05)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self.stopping.set()
        self.server.close()
        await asyncio.wait_for(self.server.wait_closed(), 5)

    async def handle(self, connection) -> None:
        self.connections += 1
        tick = 0

        async def status() -> None:
            nonlocal tick
            connection.send("NODE", "SPEC", BINS=array("h", [1, -2, 3, 4]), MACR=b"\x01\xab\x02\xcd")
            while True:
                tick += 1
                connection.send("NODE", "STAT", TEMP=40 + tick % 3, LOAD=0.25, NAME="n1")
                await asyncio.sleep(0.02)

        async def serve() -> None:
            async for field in connection:
                if field.packet_type == "DSPC" and field.name == "TIME":
                    field.send(ACKN=1)
                    field.send(SAMP=field.get("SAMP", 0), TSDC=123, NOTE="ok then")
                elif field.name == "FAIL":
                    field.send(ERRO="Bad thing", ERRC=42)
                elif field.name == "HEAT":
                    connection.send("NODE", "WARN", WARN="Too hot", WARC=7)
                    field.send(DONE=1)
                elif field.name == "ECHO":
                    field.send(**field)

        tasks = [asyncio.ensure_future(status()), asyncio.ensure_future(serve()),
                 asyncio.ensure_future(self.stopping.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task


def _spec(port: int) -> DeviceSpec:
    return DeviceSpec("node1", "ncp", "127.0.0.1", port, fields=("DSPC.TIME", "DSPC.FAIL"))


@pytest.mark.parametrize("start_server", SERVERS)
def test_ncp_fields_become_requests_and_sensors(start_server):
    async def main():
        node = Node(start_server)
        port = await node.start()
        async with running_manager({"node1": _spec(port)}, request_timeout=0.5) as mgr:
            await until(lambda: mgr.has_sensor("node1.stat.temp"))
            c = await LineClient.connect(mgr.bind_address[1])
            # Configured fields are listed with help; any other field works too.
            reply, informs = await c.request("help")
            names = {line.split()[1] for line in informs}
            assert {"node1-dspc-time", "node1-dspc-fail"} <= names
            reply, _ = await c.request("node1-dspc-time SAMP=1024")
            assert reply == "!node1-dspc-time ok SAMP=1024 TSDC=123 NOTE=ok\\_then"
            assert (await c.request("node1-dspc-fail"))[0] == (
                "!node1-dspc-fail fail Bad\\_thing\\_(code\\_42)")
            reply, _ = await c.request("node1-test-echo A=1 B=2.5 C=text D=5000000000")
            assert reply == "!node1-test-echo ok A=1 B=2.5 C=text D=5000000000"
            reply, _ = await c.request("node1-dspc-slow")
            assert reply == "!node1-dspc-slow fail no\\_answer\\_from\\_NCP\\_node\\_node1\\_within\\_0.5\\_s"
            assert (await c.request("node1-dspc-time nonsense"))[0].startswith(
                "!node1-dspc-time invalid")
            assert (await c.request("node1-dspctoolong-x"))[0].startswith(
                "!node1-dspctoolong-x invalid")
            # Unasked fields: sensors <device>.<field>.<param>, typed.
            assert (await c.request("sensor-list node1.stat.load"))[1] == [
                "#sensor-list node1.stat.load NCP\\_NODE\\_STAT\\_param\\_LOAD \\@ float"]
            assert mgr.get_sensor("node1.stat.temp").value() in (40, 41, 42)
            assert mgr.get_sensor("node1.stat.name").value() == "n1"
            # Arrays and raw bytes become strings.
            await until(lambda: mgr.has_sensor("node1.spec.macr"))
            assert mgr.get_sensor("node1.spec.bins").value() == "1,-2,3,4"
            assert mgr.get_sensor("node1.spec.macr").value() == "01ab02cd"
            reply, _ = await c.request("sensor-sampling node1.stat.temp event")
            assert reply.startswith("!sensor-sampling ok")
            assert " node1.stat.temp nominal 4" in await c.wait_for("#sensor-status")
            # Unasked warnings: #log warn and a sensor with status warn.
            assert (await c.request("node1-node-heat"))[0] == "!node1-node-heat ok DONE=1"
            log_line = await c.wait_for("#log warn")
            assert log_line.endswith("node1 NODE\\_WARN\\_WARN=Too\\_hot\\_WARC=7")
            await until(lambda: mgr.has_sensor("node1.warn.warn"))
            assert mgr.get_sensor("node1.warn.warn").status() == Sensor.WARN
            await c.close()
        await node.stop()

    run(main)


@pytest.mark.parametrize("start_server", SERVERS)
def test_ncp_node_killed_and_restarted(start_server):
    async def main():
        node = Node(start_server)
        port = await node.start()
        async with running_manager({"node1": _spec(port)}, request_timeout=0.5) as mgr:
            device = mgr.devices["node1"]
            device.reconnect_delay = 0.05
            await until(lambda: mgr.has_sensor("node1.stat.temp"))
            device.max_sensors = 5  # NODE SPEC (2) and NODE STAT (3); NODE WARN is ignored
            c = await LineClient.connect(mgr.bind_address[1])
            assert (await c.request("node1-node-heat"))[0] == "!node1-node-heat ok DONE=1"
            await c.wait_for("#log warn")
            assert not mgr.has_sensor("node1.warn.warn")
            await node.stop()
            await until(lambda: mgr.get_sensor("node1.stat.temp").status()
                        == Sensor.UNREACHABLE)
            reply, _ = await c.request("node1-dspc-time")
            assert reply == "!node1-dspc-time fail device\\_node1\\_is\\_unreachable"
            _, informs = await c.request("device-list")
            assert informs == [f"#device-list node1 ncp 127.0.0.1:{port} unreachable 5"]
            await node.start(port)
            await until(lambda: mgr.get_sensor("node1.stat.temp").status() == Sensor.NOMINAL,
                        timeout=10)
            assert (await c.request("node1-dspc-time SAMP=1"))[0].startswith(
                "!node1-dspc-time ok SAMP=1")
            await c.close()
        await node.stop()

    run(main, timeout=30)


def test_value_and_name_mapping():
    assert parse_ncp_value("12") == 12 and type(parse_ncp_value("12")) is int
    assert type(parse_ncp_value("5000000000")) is i64
    assert type(parse_ncp_value("18000000000000000000")) is u64
    assert parse_ncp_value("1e400") == float("inf")
    assert type(parse_ncp_value("2.5")) is f64
    assert parse_ncp_value("hello") == "hello"
    assert parse_ncp_value("") == ""
    assert parse_ncp_value("1" * 30) == "1" * 30
    assert split_request("dspc-time") == ("DSPC", "TIME")
    for bad in ("dspc", "dspc-", "-time", "dspcx-time", "ds_c-time"):
        with pytest.raises(ValueError):
            split_request(bad)
