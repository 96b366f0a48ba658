"""Device servers driven by a foreign client (aiokatcp) over loopback sockets.

Every standard request and sampling strategy, message ids and pipelining, on both the
threaded `DeviceServer` (managed ioloop thread, handler thread) and the `AsyncDeviceServer`
(handlers in the caller's asyncio loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue

import aiokatcp
import pytest
from test_server_support import TIMEOUT, ExampleAsyncServer, ExampleServer, run

from katcp.core import ProtocolFlags
from katcp.kattypes import Float, Int, Str, request, return_reply
from katcp.sensor import Sensor

KINDS = ["threaded", "async"]


@contextlib.asynccontextmanager
async def serve(kind: str, cls_threaded=ExampleServer, cls_async=ExampleAsyncServer):
    """Start a server of the given kind; yield it; stop it."""
    if kind == "threaded":
        server = cls_threaded("127.0.0.1", 0)
        assert server.start(timeout=TIMEOUT)
    else:
        server = cls_async("127.0.0.1", 0)
        await server.start()
    try:
        yield server
    finally:
        await asyncio.wait_for(asyncio.wrap_future(server.stop(timeout=None)), TIMEOUT)
        if kind == "threaded":
            server.join(timeout=TIMEOUT)


@contextlib.asynccontextmanager
async def connect(server):
    client = await asyncio.wait_for(aiokatcp.Client.connect(*server.bind_address), TIMEOUT)
    try:
        yield client
    finally:
        client.close()
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)


async def until(predicate, timeout: float = TIMEOUT) -> None:
    """Wait (bounded) until predicate() is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def args_of(informs):
    return [[bytes(a) for a in inform.arguments] for inform in informs]


@pytest.mark.parametrize("kind", KINDS)
def test_connect_watchdog_and_version_list(kind):
    async def main():
        async with serve(kind) as server, connect(server) as client:
            assert client.protocol_flags == {ProtocolFlags.MULTI_CLIENT.decode(),
                                             ProtocolFlags.MESSAGE_IDS.decode()}
            reply, informs = await client.request("watchdog")
            assert reply == [] and informs == []
            reply, informs = await client.request("version-list")
            assert reply == [b"3"]
            rows = args_of(informs)
            assert rows[0] == [b"katcp-protocol", b"5.0-IM"]
            assert rows[1][0] == b"katcp-library"
            assert rows[2] == [b"katcp-device", b"device_stub-0.1", b"name-0.1"]
            server.extra_versions["fpga"] = ("fw-1.2", None)
            reply, informs = await client.request("version-list")
            assert reply == [b"4"] and args_of(informs)[3] == [b"fpga", b"fw-1.2"]
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_help(kind):
    async def main():
        async with serve(kind) as server, connect(server) as client:
            reply, informs = await client.request("help")
            names = [row[0] for row in args_of(informs)]
            assert names == sorted(names)
            for name in ["halt", "help", "log-level", "restart", "client-list", "sensor-list",
                         "sensor-sampling", "sensor-sampling-clear", "sensor-value",
                         "watchdog", "version-list", "echo"]:
                assert name.encode() in names
            # No T flag: ?request-timeout-hint is not offered.
            assert b"request-timeout-hint" not in names
            assert reply == [str(len(names)).encode()]
            reply, informs = await client.request("help", "echo")
            assert reply == [b"1"] and args_of(informs) == [[b"echo", b"Echo the arguments."]]
            with pytest.raises(aiokatcp.FailReply, match="Unknown request"):
                await client.request("help", "no-such-request")
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_log_level(kind):
    async def main():
        async with serve(kind) as server, connect(server) as client:
            assert (await client.request("log-level"))[0] == [b"warn"]
            assert (await client.request("log-level", "debug"))[0] == [b"debug"]
            assert (await client.request("log-level"))[0] == [b"debug"]
            assert server.log.level_name() == "debug"
            with pytest.raises(aiokatcp.FailReply, match="Unknown logging level"):
                await client.request("log-level", "loud")
            assert (await client.request("log-level"))[0] == [b"debug"]
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_client_list_and_client_connected(kind):
    async def main():
        async with serve(kind) as server, connect(server) as first:
            connected = []
            first.add_inform_callback("client-connected", lambda *args: connected.append(args))
            async with connect(server) as second:
                reply, informs = await first.request("client-list")
                assert reply == [b"2"]
                addresses = sorted(row[0] for row in args_of(informs))
                assert all(a.startswith(b"127.0.0.1:") for a in addresses)
                await until(lambda: connected)
                assert connected[0][0] in addresses
                reply, _ = await second.request("client-list")
                assert reply == [b"2"]
            await until(lambda: len(server._client_conns) == 1)
            assert (await first.request("client-list"))[0] == [b"1"]
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_sensor_list(kind):
    async def main():
        async with serve(kind) as server, connect(server) as client:
            reply, informs = await client.request("sensor-list")
            rows = args_of(informs)
            assert reply == [b"5"]
            assert [r[0] for r in rows] == sorted(r[0] for r in rows)
            by_name = {r[0]: r for r in rows}
            assert by_name[b"an.int"] == [b"an.int", b"An integer.", b"count", b"integer",
                                          b"0", b"10"]
            assert by_name[b"a.discrete"][3:] == [b"discrete", b"on", b"off"]
            assert by_name[b"a.string"][2:] == [b"", b"string"]
            reply, informs = await client.request("sensor-list", "a.float")
            assert reply == [b"1"] and args_of(informs)[0][3:] == [b"float", b"-1.5", b"2.5"]
            reply, informs = await client.request("sensor-list", "/^a\\./")
            assert reply == [b"4"]
            reply, informs = await client.request("sensor-list", "/nomatch/")
            assert reply == [b"0"] and informs == []
            with pytest.raises(aiokatcp.FailReply, match="Unknown sensor"):
                await client.request("sensor-list", "no.such")
            with pytest.raises(aiokatcp.FailReply):
                await client.request("sensor-list", "/(/")
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_sensor_value(kind):
    async def main():
        async with serve(kind) as server, connect(server) as client:
            server.get_sensor("an.int").set_value(7, timestamp=1234567890.5)
            reply, informs = await client.request("sensor-value", "an.int")
            assert reply == [b"1"]
            assert args_of(informs) == [[b"1234567890.500000", b"1", b"an.int", b"nominal",
                                         b"7"]]
            reply, informs = await client.request("sensor-value")
            assert reply == [b"5"] and len(informs) == 5
            reply, informs = await client.request("sensor-value", "/float|bool/")
            assert sorted(r[2] for r in args_of(informs)) == [b"a.bool", b"a.float"]
            with pytest.raises(aiokatcp.FailReply, match="Unknown sensor"):
                await client.request("sensor-value", "nope")
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_sensor_sampling_strategies(kind):
    async def main():
        async with serve(kind) as server, connect(server) as client:
            statuses = []
            client.add_inform_callback(
                "sensor-status", lambda *args: statuses.append([bytes(a) for a in args]))
            sensor = server.get_sensor("an.int")
            reply, _ = await client.request("sensor-sampling", "an.int")
            assert reply == [b"an.int", b"none"]
            reply, _ = await client.request("sensor-sampling", "an.int", "auto")
            assert reply == [b"an.int", b"auto"]
            # The initial #sensor-status precedes the reply.
            assert statuses and statuses[-1][2:] == [b"an.int", b"unknown", b"3"]
            statuses.clear()
            sensor.set_value(4)
            sensor.set_value(4)
            await until(lambda: len(statuses) == 2)  # auto: every update
            reply, _ = await client.request("sensor-sampling", "an.int")
            assert reply == [b"an.int", b"auto"]
            reply, _ = await client.request("sensor-sampling", "an.int", "event")
            statuses.clear()
            sensor.set_value(4)
            sensor.set_value(5)
            await until(lambda: statuses)
            await client.request("watchdog")
            assert [s[4] for s in statuses] == [b"5"]  # event: changes only
            reply, _ = await client.request("sensor-sampling", "an.int", "differential", "2")
            assert reply == [b"an.int", b"differential", b"2"]
            statuses.clear()
            sensor.set_value(6)
            sensor.set_value(8)
            await until(lambda: statuses)
            await client.request("watchdog")
            assert [s[4] for s in statuses] == [b"8"]
            reply, _ = await client.request("sensor-sampling", "a.float", "period", "0.01")
            assert reply == [b"a.float", b"period", b"0.01"]
            await until(lambda: sum(s[2] == b"a.float" for s in statuses) >= 3)
            reply, _ = await client.request("sensor-sampling", "a.float", "event-rate",
                                            "0.001", "10")
            assert reply == [b"a.float", b"event-rate", b"0.001", b"10"]
            reply, _ = await client.request("sensor-sampling", "an.int", "differential-rate",
                                            "1", "0", "10")
            assert reply == [b"an.int", b"differential-rate", b"1", b"0", b"10"]
            statuses.clear()
            sensor.set_value(9)  # differs from the last reported 8 by exactly 1: not sent
            sensor.set_value(10)
            await until(lambda: any(s[2] == b"an.int" for s in statuses))
            assert [s[4] for s in statuses if s[2] == b"an.int"] == [b"10"]
            reply, _ = await client.request("sensor-sampling", "an.int", "none")
            assert reply == [b"an.int", b"none"]
            assert (await client.request("sensor-sampling", "an.int"))[0] == [b"an.int",
                                                                              b"none"]
            # errors
            for args, match in [(("nope", "auto"), "Unknown sensor"),
                                (("an.int", "sometimes"), "Unknown strategy"),
                                (("an.int", "period"), "Invalid strategy"),
                                (("an.int", "period", "-1"), "Invalid strategy"),
                                (("an.int", "auto", "1"), "Invalid strategy"),
                                (("a.string", "differential", "1"), "Invalid strategy"),
                                (("a,b", "auto"), "Unknown sensor")]:
                with pytest.raises(aiokatcp.FailReply, match=match) as excinfo:
                    await client.request("sensor-sampling", *args)
                assert not str(excinfo.value).endswith(".."), excinfo.value
            with pytest.raises(aiokatcp.FailReply, match="No sensor name"):
                await client.request("sensor-sampling")
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_sensor_sampling_clear_and_disconnect_removes_strategies(kind):
    async def main():
        async with serve(kind) as server:
            async with connect(server) as client:
                statuses = []
                client.add_inform_callback("sensor-status", lambda *a: statuses.append(a))
                await client.request("sensor-sampling", "an.int", "auto")
                await client.request("sensor-sampling", "a.float", "event")
                (conn, strategies), = server._strategies.items()
                assert len(strategies) == 2
                reply, _ = await client.request("sensor-sampling-clear")
                assert reply == [] and strategies == {}
                statuses.clear()
                server.get_sensor("an.int").set_value(9)
                await client.request("watchdog")
                await asyncio.sleep(0.05)
                assert statuses == []
                await client.request("sensor-sampling", "an.int", "auto")
                assert server.get_sensor("an.int")._observers
            await until(lambda: not server._strategies)
            await until(lambda: not server.get_sensor("an.int")._observers)
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_pipelined_requests_with_ids(kind):
    async def main():
        async with serve(kind) as server, connect(server) as client:
            requests = []
            for i in range(60):
                if i % 3 == 0:
                    requests.append(client.request("echo", str(i)))
                elif i % 3 == 1:
                    requests.append(client.request("native", "0.001"))
                else:
                    requests.append(client.request("informs"))
            results = await asyncio.gather(*requests)
            for i, (reply, informs) in enumerate(results):
                if i % 3 == 0:
                    assert reply == [str(i).encode()] and informs == []
                elif i % 3 == 1:
                    assert reply == [b"native"]
                else:
                    assert reply == [b"2"] and args_of(informs) == [[b"one"], [b"two"]]
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_handler_kinds_and_errors(kind):
    async def main():
        async with serve(kind) as server, connect(server) as client:
            assert (await client.request("native"))[0] == [b"native"]
            assert (await client.request("tornado"))[0] == [b"tornado"]
            assert (await client.request("future"))[0] == [b"future"]
            assert (await client.request("later"))[0] == [b"later"]
            assert (await client.request("concurrent", "0"))[0] == [b"concurrent"]
            with pytest.raises(aiokatcp.FailReply, match="^this request fails$"):
                await client.request("fail")
            with pytest.raises(aiokatcp.FailReply, match="deliberate error"):
                await client.request("raise")
            with pytest.raises(aiokatcp.InvalidReply, match="Unknown request"):
                await client.request("no-such-request")
            with pytest.raises(aiokatcp.FailReply, match="No restart queue"):
                await client.request("restart")
            restarts = queue.Queue()
            server.set_restart_queue(restarts)
            assert (await client.request("restart"))[0] == []
            assert restarts.get_nowait() is server
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_interface_changed_on_sensor_add_remove(kind):
    async def main():
        async with serve(kind) as server, connect(server) as client:
            changes = []
            client.add_inform_callback("interface-changed",
                                       lambda *args: changes.append([bytes(a) for a in args]))
            await client.request("sensor-sampling", "an.int", "auto")
            new = Sensor.integer("new.sensor", "Added at run time.", "", default=1)
            server.add_sensor(new)
            await until(lambda: changes)
            assert changes == [[b"sensor-list"]]
            reply, informs = await client.request("sensor-list", "new.sensor")
            assert reply == [b"1"]
            server.remove_sensor("an.int")
            await until(lambda: len(changes) == 2)
            with pytest.raises(aiokatcp.FailReply, match="Unknown sensor"):
                await client.request("sensor-value", "an.int")
            await until(lambda: not any(server._strategies.values()))
            assert not server.has_sensor("an.int") and server.has_sensor("new.sensor")
            with pytest.raises(ValueError):
                server.get_sensor("an.int")
    run(main())


class BulkMixin:
    PROTOCOL_INFO = ProtocolFlags(5, 1, "MIBT")


class BulkServer(BulkMixin, ExampleServer):
    pass


class BulkAsyncServer(BulkMixin, ExampleAsyncServer):
    pass


@pytest.mark.parametrize("kind", KINDS)
def test_bulk_sampling_and_timeout_hints(kind):
    async def main():
        async with serve(kind, BulkServer, BulkAsyncServer) as server, \
                connect(server) as client:
            assert client.protocol_flags >= {"B", "T"}
            statuses = []
            client.add_inform_callback("sensor-status", lambda *a: statuses.append(a[2]))
            reply, _ = await client.request("sensor-sampling", "an.int,a.float", "event")
            assert reply == [b"an.int,a.float", b"event"]
            assert sorted(statuses) == [b"a.float", b"an.int"]
            # all or nothing: one unknown name changes nothing
            with pytest.raises(aiokatcp.FailReply, match="Unknown sensor"):
                await client.request("sensor-sampling", "a.bool,nope", "auto")
            assert (await client.request("sensor-sampling", "a.bool"))[0] == [b"a.bool",
                                                                              b"none"]
            # strategy invalid for one of them: nothing changes
            with pytest.raises(aiokatcp.FailReply):
                await client.request("sensor-sampling", "an.int,a.string", "differential", "1")
            assert (await client.request("sensor-sampling", "an.int"))[0] == [b"an.int",
                                                                              b"event"]
            with pytest.raises(aiokatcp.FailReply, match="Cannot query multiple"):
                await client.request("sensor-sampling", "an.int,a.float")
            reply, informs = await client.request("request-timeout-hint")
            assert reply == [b"1"] and args_of(informs) == [[b"slow", b"12.5"]]
            reply, informs = await client.request("request-timeout-hint", "watchdog")
            assert reply == [b"1"] and args_of(informs) == [[b"watchdog", b"0.0"]]
            with pytest.raises(aiokatcp.FailReply):
                await client.request("request-timeout-hint", "nope")
    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_halt(kind):
    async def main():
        async with serve(kind) as server:
            client = await aiokatcp.Client.connect(*server.bind_address,
                                                   auto_reconnect=False)
            disconnects = []
            client.add_inform_callback("disconnect", lambda *a: disconnects.append(a))
            try:
                reply, _ = await client.request("halt")
                assert reply == []
                await asyncio.wait_for(client.wait_disconnected(), TIMEOUT)
                assert disconnects and b"shutting down" in disconnects[0][0]
                await until(lambda: not server.running())
            finally:
                client.close()
                await client.wait_closed()
    run(main())


def test_log_informs_reach_clients():
    async def main():
        async with serve("async") as server, connect(server) as client:
            logs = []
            client.add_inform_callback("log", lambda *a: logs.append([bytes(x) for x in a]))
            server.log.info("not sent at level %s", "warn")
            server.log.error("value %d too big", 42, name="dev.sub")
            await until(lambda: logs)
            assert logs[0][0] == b"error" and logs[0][2:] == [b"dev.sub", b"value 42 too big"]
            await client.request("log-level", "info")
            server.log.info("now sent")
            await until(lambda: len(logs) == 2)
            assert logs[1][0] == b"info" and logs[1][2:] == [b"root", b"now sent"]
    run(main())


class TypedMixin:
    @request(Int(), Float(default=1.5))
    @return_reply(Int(), Float())
    def request_typed(self, req, number, factor):
        """?typed number [factor]"""
        return ("ok", number + 1, number * factor)

    @request(Str())
    @return_reply(Str())
    async def request_typed_async(self, req, text):
        """?typed-async text"""
        await asyncio.sleep(0)
        if text == "bad":
            return ("fail", "bad text")
        return ("ok", text.upper())


class TypedServer(TypedMixin, ExampleServer):
    pass


class TypedAsyncServer(TypedMixin, ExampleAsyncServer):
    pass


@pytest.mark.parametrize("kind", KINDS)
def test_kattypes_decorated_handlers(kind):
    async def main():
        async with serve(kind, TypedServer, TypedAsyncServer) as server, \
                connect(server) as client:
            assert (await client.request("typed", 3))[0] == [b"4", b"4.5"]
            assert (await client.request("typed", 3, 2))[0] == [b"4", b"6.0"]
            with pytest.raises(aiokatcp.FailReply):
                await client.request("typed", "x")
            with pytest.raises(aiokatcp.FailReply):
                await client.request("typed", 1, 2, 3)
            assert (await client.request("typed-async", "abc"))[0] == [b"ABC"]
            with pytest.raises(aiokatcp.FailReply, match="bad text"):
                await client.request("typed-async", "bad")
            reply, informs = await client.request("help", "typed")
            assert args_of(informs) == [[b"typed", b"?typed number [factor]"]]
    run(main())


def test_protocol_decorators_filter_device_server_handlers():
    """Servers use core's DeviceServerMetaclass, which reads katcp-python's decorators."""
    from katcp.core import DeviceServerMetaclass
    from katcp.kattypes import has_katcp_protocol_flags, minimum_katcp_version
    from katcp.server import DeviceServer, DeviceServerBase

    assert type(DeviceServerBase) is DeviceServerMetaclass
    assert type(DeviceServer) is DeviceServerMetaclass

    class Versioned(ExampleServer):
        @minimum_katcp_version(5, 1)
        def request_newer(self, req, msg):
            """Needs KATCP 5.1."""
            return req.make_reply("ok")

        @has_katcp_protocol_flags([ProtocolFlags.REQUEST_TIMEOUT_HINTS])
        def request_hinted(self, req, msg):
            """Needs the T flag."""
            return req.make_reply("ok")

        @minimum_katcp_version(5, 0)
        @has_katcp_protocol_flags([ProtocolFlags.MULTI_CLIENT])
        def request_plain(self, req, msg):
            """Needs what every server has."""
            return req.make_reply("ok")

    assert "plain" in Versioned._request_handlers
    assert "newer" not in Versioned._request_handlers
    assert "hinted" not in Versioned._request_handlers

    class Newer(Versioned):
        PROTOCOL_INFO = ProtocolFlags(5, 1, [ProtocolFlags.MULTI_CLIENT,
                                             ProtocolFlags.MESSAGE_IDS,
                                             ProtocolFlags.REQUEST_TIMEOUT_HINTS])

    assert {"plain", "newer", "hinted"} <= set(Newer._request_handlers)

    class Katcp4(ExampleServer):
        PROTOCOL_INFO = ProtocolFlags(4, 0, [ProtocolFlags.MULTI_CLIENT])

    # ?version-list is a KATCP v5 request.
    assert "version-list" not in Katcp4._request_handlers
    assert "version-list" in ExampleServer._request_handlers
