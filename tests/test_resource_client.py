"""Tests for katcp.resource_client.KATCPClientResource over loopback servers."""

import asyncio
from typing import Optional

import aiokatcp
import pytest
import tornado.gen
from test_resource_servers import AioServer, run, start_aio, start_ours, stop_server

from katcp.core import Sensor
from katcp.resource import KATCPReply, KATCPResourceInactive, KATCPSensor, SensorResultTuple
from katcp.resource_client import (
    KATCPClientResource,
    KATCPClientResourceRequest,
    ReplyWrappedInspectingClientAsync,
    monitor_resource_sync_state,
)

STARTERS = [pytest.param(start_aio, id="aiokatcp"), pytest.param(start_ours, id="ours")]


def make_resource(port, **spec):
    spec.setdefault("name", "dev")
    spec.setdefault("controlled", True)
    spec.setdefault("auto_reconnect_delay", 0.05)
    return KATCPClientResource(dict(address=("127.0.0.1", port), **spec))


async def stop_resource(res):
    res.stop()
    await res.until_stopped(timeout=2)


async def until(predicate, timeout=2.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("starter", STARTERS)
def test_sync_requests_and_sensors(starter):
    async def main():
        srv = await starter()
        res = make_resource(srv.port)
        assert res.state == "disconnected" and not res.is_connected()
        res.start()
        try:
            await res.wait_connected(timeout=5)
            await res.until_synced(timeout=5)
            assert res.synced and res.state == "synced" and res.is_connected()
            assert res.name == "dev" and res.address == ("127.0.0.1", srv.port)
            assert res.address_string == f"127.0.0.1:{srv.port}"
            assert (res.host, res.port) == res.address
            assert res.parent is None and res.parent_name is None
            assert len(res.children) == 0
            assert {"int_sensor", "float_sensor"} <= set(res.sensor)
            assert {"add", "watchdog", "sensor_value"} <= set(res.req)
            assert isinstance(res.req.add, KATCPClientResourceRequest)
            reply = await res.req.add(5, 6)
            assert isinstance(reply, KATCPReply) and reply.succeeded
            assert reply.reply.arguments[1] == b"11"
            bad = await res.req.add("x", 1)
            assert not bad.succeeded
            reply = await res.req.help("add")
            assert reply.succeeded and len(reply.informs) == 1
            sensor = res.sensor.int_sensor
            assert isinstance(sensor, KATCPSensor)
            assert sensor.name == "int-sensor" and sensor.parent_name == "dev"
            assert sensor.type == "integer" and sensor.units == "u"
            assert await sensor.get_value() == 3
            assert await sensor.get_status() == "nominal"
            assert (await res.sensor.float_sensor.get_reading()).status == "warn"
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def test_timeout_hint_used_by_requests():
    async def main():
        srv = await start_ours()
        res = make_resource(srv.port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            assert res.req.slow_thing.timeout_hint == 12.5
            assert (await res.req.slow_thing()).succeeded
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def test_request_exposure_rules():
    async def main():
        srv = await start_aio()
        res = make_resource(srv.port, controlled=False,
                            always_allowed_requests=["sensor_value", "add", "watchdog"],
                            always_excluded_requests=["watchdog"],
                            dummy_unknown_requests=True)
        res.start()
        try:
            await res.until_synced(timeout=5)
            assert set(res.req) == {"sensor_value", "add"}
            assert not res.controlled and res.dummy_unknown_requests
            dummy = await res.req.not_a_real_request(1)
            assert dummy.succeeded and dummy.reply.name == "not-a-real-request"
            res.set_active(False)
            with pytest.raises(KATCPResourceInactive):
                res.req.add(1, 2)
            res.set_active(True)
            assert (await res.req.add(1, 2)).succeeded
        finally:
            await stop_resource(res)
            await stop_server(srv)
        strict = make_resource(1, controlled=False)
        with pytest.raises(AttributeError):
            getattr(strict.req, "add")  # noqa: B009

    run(main)


@pytest.mark.parametrize("starter", STARTERS)
def test_strategies_listeners_and_wait(starter):
    async def main():
        srv = await starter()
        res = make_resource(srv.port)
        got = []
        # Set before start: remembered and applied when the sensor appears.
        await res.set_sampling_strategy("int-sensor", "event")
        await res.set_sensor_listener("int_sensor", lambda s, r: got.append(r.value))
        res.start()
        try:
            await res.until_synced(timeout=5)
            sensor = res.sensor.int_sensor
            assert sensor.sampling_strategy == ("event",)
            await until(lambda: got == [3])
            set_value(srv, "int-sensor", 8)
            assert await res.wait("int_sensor", 8, timeout=2) is True
            assert got == [3, 8]
            assert await res.wait("int_sensor", lambda r: r.value > 100, timeout=0.05) is False
            loop = asyncio.get_running_loop()
            loop.call_later(0.01, set_value, srv, "int-sensor", 200)
            assert await res.wait("int-sensor", lambda r: r.value > 100, timeout=2)
            # Sensor without strategy cannot be waited on.
            with pytest.raises(Exception, match="strategy"):
                await res.wait("float_sensor", 1.5, timeout=0.1)
            result = await res.set_sampling_strategy("float_sensor", ("period", 0.5))
            assert result == {"float_sensor": ("period", 0.5)}
            assert res.sensor.float_sensor.sampling_strategy == ("period", "0.5")
            bad = await res.set_sampling_strategy("float_sensor", "bogus-strategy")
            assert isinstance(bad["float_sensor"], str)
            res.drop_sampling_strategy("float_sensor")
            assert res.sensor.float_sensor.sampling_strategy == ("none",)
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def set_value(srv, name, value):
    if isinstance(srv, AioServer):
        srv.sensors[name].value = value
    else:
        srv.get_sensor(name).set_value(value)


@pytest.mark.parametrize("starter", STARTERS)
def test_list_sensors_filters(starter):
    async def main():
        srv = await starter()
        res = make_resource(srv.port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            names = [r.python_identifier for r in await res.list_sensors()]
            assert names == sorted(names) and "int_sensor" in names
            r = await res.list_sensors("int")
            assert len(r) == 1 and isinstance(r[0], SensorResultTuple)
            assert r[0].name == "int-sensor" and r[0].object is res.sensor.int_sensor
            assert await res.list_sensors("int-sensor") == []
            r = await res.list_sensors("int-sensor", use_python_identifiers=False)
            assert [x.name for x in r] == ["int-sensor"]
            assert await res.list_sensors(strategy=True) == []
            await res.set_sampling_strategy("int_sensor", "event")
            await res.sensor.int_sensor.wait(3, timeout=2)
            r = await res.list_sensors(strategy=True)
            assert [x.python_identifier for x in r] == ["int_sensor"]
            r = await res.list_sensors(status="nominal")
            assert [x.python_identifier for x in r] == ["int_sensor"]
            r = await res.list_sensors("float", refresh=True)
            assert r[0].reading.value == 1.5 and r[0].reading.status == "warn"
            r = await res.list_sensors(status="warn|error")
            assert [x.python_identifier for x in r] == ["float_sensor"]
            t = await res.list_sensors("int", tuple=True)
            assert t[0][0] == "int-sensor" and t[0][1] == 3 and t[0][6] == "nominal"
            assert t[0][7] == ("event",)
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def test_bulk_strategies_and_unseen_sensors():
    async def main():
        srv = await start_aio(n_sensors=50)
        res = make_resource(srv.port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            srv.sampling_requests.clear()
            result = await res.set_sampling_strategies(r"^many_", "event")
            assert len(result) == 50 and set(result.values()) == {"event"}
            # aiokatcp has the B flag: one bulk request.
            assert len(srv.sampling_requests) == 1 and "," in srv.sampling_requests[0]
            await until(lambda: res.sensor.many_s49.value == 49)
            # A sensor that appears later and matches the filter gets the strategy.
            got = []
            await res.set_sensor_listener("many.s50", lambda s, r: got.append(r.value))
            not_synced = res.until_not_synced(timeout=5)
            srv.add_int_sensor("many.s50", 77)
            await not_synced
            await res.until_synced(timeout=5)
            assert res.sensor.many_s50.sampling_strategy == ("event",)
            await until(lambda: got == [77])
            set_value(srv, "many.s50", 78)
            await until(lambda: got == [77, 78])
            # Removal.
            not_synced = res.until_not_synced(timeout=5)
            srv.remove_sensor("many.s50")
            await not_synced
            await res.until_synced(timeout=5)
            assert "many_s50" not in res.sensor
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


@pytest.mark.parametrize("restart", ["aio-to-aio", "ours-to-ours"])
def test_server_restart_reapplies_strategies_and_listeners(restart):
    async def main():
        starter = start_aio if restart.startswith("aio") else start_ours
        srv = await starter()
        port = srv.port
        res = make_resource(port)
        got = []
        res.start()
        try:
            await res.until_synced(timeout=5)
            await res.set_sampling_strategy("int_sensor", "event")
            await res.set_sensor_listener("int_sensor", lambda s, r: got.append(r.value))
            set_value(srv, "int-sensor", 10)
            await until(lambda: 10 in got)
            sensor_obj = res.sensor.int_sensor
            not_synced = res.until_not_synced(timeout=5)
            await stop_server(srv)
            await not_synced
            await res.until_state("disconnected", timeout=5)
            assert not res.is_connected()
            srv = await starter(port=port)
            await res.until_synced(timeout=5)
            # Same object, strategy re-applied (device sends the current value).
            assert res.sensor.int_sensor is sensor_obj
            await until(lambda: got[-1] == 3)
            set_value(srv, "int-sensor", 11)
            await until(lambda: got[-1] == 11)
            assert await res.wait("int_sensor", 11, timeout=1)
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def test_restart_to_a_different_device_updates_model():
    async def main():
        srv = await start_aio()
        port = srv.port
        res = make_resource(port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            assert "str_sensor" in res.sensor and "slow_thing" not in res.req
            not_synced = res.until_not_synced(timeout=5)
            await stop_server(srv)
            await not_synced
            srv = await start_ours(port=port)
            await res.until_synced(timeout=5)
            assert "str_sensor" not in res.sensor and "slow_thing" in res.req
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def test_monitor_resource_sync_state():
    async def main():
        srv = await start_aio()
        res = make_resource(srv.port)
        seen = []
        stop = asyncio.Event()
        monitor = monitor_resource_sync_state(res, seen.append, stop)
        assert seen == [False]
        res.start()
        try:
            await res.until_synced(timeout=5)
            await until(lambda: seen == [False, True])
            await stop_server(srv)
            await until(lambda: seen == [False, True, False])
            stop.set()
            await asyncio.wait_for(monitor, 2)
        finally:
            await stop_resource(res)

    run(main)


def test_until_state_validation_and_timeout():
    async def main():
        srv = await start_aio()
        port = srv.port
        await stop_server(srv)
        res = make_resource(port)
        res.start()
        try:
            with pytest.raises(ValueError):
                res.until_state("bogus")
            with pytest.raises(tornado.gen.TimeoutError):
                await res.until_synced(timeout=0.05)
        finally:
            await stop_resource(res)

    run(main)


def test_sensor_reading_types():
    async def main():
        srv = await start_aio()
        res = make_resource(srv.port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            assert await res.sensor.str_sensor.get_value() == "hello"
            reading = await res.sensor.float_sensor.get_reading()
            assert reading.istatus == Sensor.WARN and reading.value == 1.5
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def test_katcp_v4_device_millisecond_timestamps():
    from test_resource_servers import OurServer

    from katcp.core import ProtocolFlags

    class V4Server(OurServer):
        PROTOCOL_INFO = ProtocolFlags(4, 0, set())

    async def main():
        import time

        import tornado.ioloop

        srv = V4Server("127.0.0.1", 0)
        srv.set_ioloop(tornado.ioloop.IOLoop.current())
        started = srv.start()
        if started is not None:
            await started
        res = make_resource(srv.port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            await res.set_sampling_strategy("int_sensor", "event")
            set_value(srv, "int-sensor", 5)
            assert await res.wait("int_sensor", 5, timeout=2)
            # v4 sends milliseconds; readings hold seconds.
            assert abs(res.sensor.int_sensor.reading.timestamp - time.time()) < 60
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def test_strategies_without_bulk_flag_are_pipelined():
    from test_resource_servers import OurServer

    from katcp.core import ProtocolFlags

    class NoBulkServer(OurServer):
        PROTOCOL_INFO = ProtocolFlags(5, 0, set("MI"))

    async def main():
        import tornado.ioloop

        srv = NoBulkServer("127.0.0.1", 0, n_sensors=30)
        srv.set_ioloop(tornado.ioloop.IOLoop.current())
        started = srv.start()
        if started is not None:
            await started
        res = make_resource(srv.port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            assert not res._inspecting_client.bulk_sensor_sampling
            result = await res.set_sampling_strategies("^many_", "event")
            assert len(result) == 30 and set(result.values()) == {"event"}
            await until(lambda: all(res.sensor[f"many_s{i}"].value == i for i in range(30)))
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def test_sensor_level_strategy_survives_sensor_removal():
    async def main():
        srv = await start_aio()
        res = make_resource(srv.port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            await res.sensor.int_sensor.set_strategy("event")
            assert await res.sensor.int_sensor.wait(3, timeout=2)
            not_synced = res.until_not_synced(timeout=5)
            srv.remove_sensor("int-sensor")
            await not_synced
            await res.until_synced(timeout=5)
            assert "int_sensor" not in res.sensor
            not_synced = res.until_not_synced(timeout=5)
            srv.add_int_sensor("int-sensor", 42)
            await not_synced
            await res.until_synced(timeout=5)
            sensor = res.sensor.int_sensor
            assert sensor.sampling_strategy == ("event",)
            assert await sensor.wait(42, timeout=2)
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


class AuditedResource(KATCPClientResource):
    """A katcp-python style subclass that audits every strategy it sets."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.audited = []

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name, strategy_and_parms):
        self.audited.append((sensor_name, strategy_and_parms))
        result = yield super().set_sampling_strategy(sensor_name, strategy_and_parms)
        return result


def test_set_sampling_strategies_goes_through_overridden_set_sampling_strategy():
    # The bulk path is chosen per class: only for classes keeping set_sampling_strategy.
    assert KATCPClientResource._bulk_strategies
    assert not AuditedResource._bulk_strategies

    async def main():
        srv = await start_aio(n_sensors=5)
        res = AuditedResource(dict(address=("127.0.0.1", srv.port), name="dev",
                                   controlled=True, auto_reconnect_delay=0.05))
        res.start()
        try:
            await res.until_synced(timeout=5)
            srv.sampling_requests.clear()
            result = await res.set_sampling_strategies(r"^many_", "event")
            assert result == {f"many_s{i}": "event" for i in range(5)}
            assert sorted(res.audited) == [(f"many_s{i}", "event") for i in range(5)]
            # One request per sensor (through the override), no bulk request.
            assert len(srv.sampling_requests) == 5
            assert not any("," in r for r in srv.sampling_requests)
            assert res.sensor.many_s3.sampling_strategy == ("event",)
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def resource_with(inspecting_client_class, port):
    """A controlled resource ``dev`` whose inspecting client is of the given class."""

    class Resource(KATCPClientResource):
        def inspecting_client_factory(self, host, port, ioloop_set_to):
            return inspecting_client_class(host, port, ioloop=ioloop_set_to,
                                           logger=self._logger)

    return Resource(dict(name="dev", address=("127.0.0.1", port), controlled=True))


def test_bulk_strategy_timed_out_is_not_retried_sensor_by_sensor():
    """A bulk ?sensor-sampling that times out is not repeated one request per sensor (a
    device too slow for one request gains nothing from twenty more); a later one works."""

    class SlowOnce(AioServer):
        slow = True

        async def request_sensor_sampling(
            self, ctx, name: str,
            strategy: Optional[aiokatcp.SensorSampler.Strategy] = None, *args: bytes
        ) -> tuple:
            """Set sampling strategy (the first bulk one answers late)."""
            if "," in name and self.slow:
                self.slow = False
                await asyncio.sleep(0.6)
            return await super().request_sensor_sampling(ctx, name, strategy, *args)

    class ShortTimeouts(ReplyWrappedInspectingClientAsync):
        def inform_hook_client_factory(self, host, port, *args, **kwargs):
            return super().inform_hook_client_factory(host, port, *args, timeout=0.2,
                                                      **kwargs)

    async def main():
        srv = SlowOnce("127.0.0.1", 0, n_sensors=20)
        await srv.start()
        res = resource_with(ShortTimeouts, srv.port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            srv.sampling_requests.clear()
            result = await res.set_sampling_strategies(r"^many_", "event")
            assert len(result) == 20
            assert all(value != "event" for value in result.values())  # each failed
            await asyncio.sleep(0.6)  # the late reply comes and goes
            assert srv.sampling_requests and all("," in r for r in srv.sampling_requests)
            result = await res.set_sampling_strategies(r"^many_", "event")
            assert set(result.values()) == {"event"}
            await until(lambda: all(res.sensor[f"many_s{i}"].value == i for i in range(20)))
            assert all("," in r for r in srv.sampling_requests)
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)


def test_sync_that_fails_half_way_reports_everything_on_the_retry():
    """?help times out while ?sensor-list succeeds: that sync fails as a whole, and the
    retry still reports every sensor (the index the first attempt updated is restored)."""

    class SlowHelpOnce(AioServer):
        slow = True

        async def request_help(self, ctx, name: Optional[str] = None) -> None:
            """Help (the first time only after a while)."""
            if self.slow:
                self.slow = False
                await asyncio.sleep(0.5)
            await super().request_help(ctx, name)

    class QuickRetries(ReplyWrappedInspectingClientAsync):
        sync_timeout = 0.3
        initial_resync_timeout = 0.05

    async def main():
        srv = SlowHelpOnce("127.0.0.1", 0, n_sensors=5)
        await srv.start()
        res = resource_with(QuickRetries, srv.port)
        res.start()
        try:
            await res.until_synced(timeout=5)
            assert not srv.slow  # the first sync did meet the slow ?help
            assert {f"many_s{i}" for i in range(5)} <= set(res.sensor)
            assert "add" in res.req
        finally:
            await stop_resource(res)
            await stop_server(srv)

    run(main)
