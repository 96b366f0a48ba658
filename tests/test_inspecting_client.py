"""Tests for katcp.inspecting_client over loopback servers (aiokatcp and ours)."""

import asyncio
import random

import pytest
import tornado.gen
from test_resource_servers import run, start_aio, start_ours, stop_server

from katcp.core import Sensor
from katcp.inspecting_client import (
    ExponentialRandomBackoff,
    InspectingClientAsync,
    InspectingClientStateType,
    RequestType,
    SyncError,
)

STARTERS = [pytest.param(start_aio, id="aiokatcp"), pytest.param(start_ours, id="ours")]


def test_backoff_grows_and_resets():
    random.seed(1)
    b = ExponentialRandomBackoff(delay_initial=1.0, delay_max=10.0, exp_fac=2.0,
                                 randomicity=0.0)
    assert b.delay == 1.0
    b.failed()
    assert b.delay == 2.0
    for _ in range(10):
        b.failed()
    assert b.delay == 10.0
    b.success()
    assert b.delay == 1.0
    r = ExponentialRandomBackoff(delay_initial=1.0, randomicity=0.5)
    for _ in range(20):
        r.failed()
        assert 0.5 * min(r._base_delay, 90) <= r.delay <= r._base_delay
    with pytest.raises(ValueError):
        ExponentialRandomBackoff(randomicity=2)


def test_named_tuples():
    s = InspectingClientStateType(connected=True, synced=False, model_changed=True,
                                  data_synced=True)
    assert s == (True, False, True, True)
    r = RequestType("x", "desc", 1.5)
    assert (r.name, r.description, r.timeout_hint) == ("x", "desc", 1.5)
    assert issubclass(SyncError, Exception)


async def _started_client(port, **kwargs):
    ic = InspectingClientAsync("127.0.0.1", port, **kwargs)
    states = []
    ic.set_state_callback(lambda state, changes: states.append((state, changes)))
    await ic.connect()
    return ic, states


async def _stop(ic):
    ic.stop()
    await ic.until_stopped(timeout=2)


@pytest.mark.parametrize("starter", STARTERS)
def test_sync_requests_and_sensors(starter):
    async def main():
        srv = await starter()
        ic, states = await _started_client(srv.port)
        try:
            await ic.until_synced(timeout=5)
            assert ic.synced and ic.is_connected() and ic.connected
            assert ic.bind_address == ("127.0.0.1", srv.port)
            assert {"add", "help", "sensor-list", "watchdog"} <= set(ic.requests)
            assert {"int-sensor", "float.sensor"} <= set(ic.sensors)
            # The state went disconnected -> syncing -> data synced (changes) -> synced.
            seq = [s for s, _ in states]
            assert seq[-1] == InspectingClientStateType(True, True, False, True)
            data_synced = [(s, c) for s, c in states if s.data_synced and not s.synced]
            assert data_synced[0][0].model_changed
            changes = data_synced[0][1]
            assert "int-sensor" in changes.sensors.added
            assert "add" in changes.requests.added
            assert changes.sensors.removed == set()
            # Request and sensor objects.
            req = await ic.future_get_request("add")
            assert isinstance(req, RequestType) and req.name == "add"
            assert "?add" in req.description or "Add two" in req.description
            assert await ic.future_get_request("no-such-request") is None
            assert await ic.future_check_request("add")
            assert not await ic.future_check_sensor("no-such-sensor")
            sensor = await ic.future_get_sensor("int-sensor")
            assert isinstance(sensor, Sensor)
            assert sensor.name == "int-sensor"
            reply, informs = await ic.simple_request("add", 3, 4)
            assert reply.reply_ok() and reply.arguments[1] == b"7"
            reply, informs = await ic.simple_request("sensor-sampling", "int-sensor", "event")
            assert reply.reply_ok()
            await asyncio.sleep(0.05)
            assert sensor.value() == 3
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)


def test_timeout_hints_from_our_server():
    async def main():
        srv = await start_ours()
        ic, _ = await _started_client(srv.port)
        try:
            await ic.until_synced(timeout=5)
            req = await ic.future_get_request("slow-thing")
            assert req.timeout_hint == 12.5
            add = await ic.future_get_request("add")
            assert add.timeout_hint is None
            assert ic.bulk_sensor_sampling
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)


def test_aiokatcp_has_no_timeout_hints():
    async def main():
        srv = await start_aio()
        ic, _ = await _started_client(srv.port)
        try:
            await ic.until_synced(timeout=5)
            assert (await ic.future_get_request("add")).timeout_hint is None
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)


def test_interface_changed_sensor_added_and_removed():
    async def main():
        srv = await start_aio()
        ic, states = await _started_client(srv.port)
        try:
            await ic.until_synced(timeout=5)
            states.clear()
            not_synced = ic.until_not_synced(timeout=5)
            srv.add_int_sensor("new.sensor", 5)
            await not_synced
            await ic.until_synced(timeout=5)
            assert "new.sensor" in ic.sensors
            changes = [c for s, c in states if c is not None]
            assert changes and changes[-1].sensors.added == {"new.sensor"}
            states.clear()
            not_synced = ic.until_not_synced(timeout=5)
            srv.remove_sensor("new.sensor")
            await not_synced
            await ic.until_synced(timeout=5)
            assert "new.sensor" not in ic.sensors
            changes = [c for s, c in states if c is not None]
            assert changes[-1].sensors.removed == {"new.sensor"}
            # A whole-interface change re-inspects everything (no change here).
            states.clear()
            not_synced = ic.until_not_synced(timeout=5)
            srv.mass_inform("interface-changed")
            await not_synced
            await ic.until_synced(timeout=5)
            assert [c for s, c in states if c is not None] == []
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)


def test_reconnect_resyncs_model():
    async def main():
        srv = await start_aio()
        port = srv.port
        ic, states = await _started_client(port)
        ic.katcp_client.auto_reconnect_delay = 0.05
        try:
            await ic.until_synced(timeout=5)
            not_synced = ic.until_not_synced(timeout=5)
            await stop_server(srv)
            await not_synced
            await ic.until_state(InspectingClientStateType(False, False, False, False),
                                 timeout=5)
            assert not ic.synced
            srv = await start_ours(port=port)
            await ic.until_synced(timeout=5)
            # The new device has the T-flag request and lacks aiokatcp's extras.
            assert "slow-thing" in ic.requests
            assert "str-sensor" not in ic.sensors
            assert "int-sensor" in ic.sensors
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)


def test_until_state_timeout_when_no_server():
    async def main():
        srv = await start_aio()
        port = srv.port
        await stop_server(srv)
        ic = InspectingClientAsync("127.0.0.1", port)
        await ic.connect()
        try:
            with pytest.raises(tornado.gen.TimeoutError):
                await ic.until_synced(timeout=0.1)
            assert not ic.is_connected()
        finally:
            await _stop(ic)

    run(main)


def test_malformed_sensor_status_is_logged_not_fatal(caplog):
    async def main():
        srv = await start_aio()
        ic, _ = await _started_client(srv.port)
        try:
            await ic.until_synced(timeout=5)
            await ic.future_get_sensor("int-sensor")
            srv.mass_inform("sensor-status", "123.0", "2", "int-sensor", "nominal", "4")
            srv.mass_inform("sensor-status", "123.0", "1", "int-sensor", "nominal", "not-int")
            srv.mass_inform("sensor-status", "123.0", "1", "int-sensor", "nominal", "9")
            reply, _ = await ic.simple_request("watchdog")
            assert reply.reply_ok()
            sensor = await ic.future_get_sensor("int-sensor")
            assert sensor.value() == 9
            assert ic.synced
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)
    assert "Malformed #sensor-status" in caplog.text


class _SeesEveryUpdate(InspectingClientAsync):
    """Overrides update_sensor: one-sensor lines must not skip it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def update_sensor(self, name, timestamp, status, value):
        self.seen.append((name, timestamp, status, value))
        super().update_sensor(name, timestamp, status, value)


@pytest.mark.parametrize("cls", [InspectingClientAsync, _SeesEveryUpdate],
                         ids=["plain", "update_sensor-overridden"])
def test_sensor_status_lines_of_one_and_of_several_sensors(cls):
    async def main():
        srv = await start_aio()
        ic = cls("127.0.0.1", srv.port)
        await ic.connect()
        try:
            await ic.until_synced(timeout=5)
            assert cls._plain_update is (cls is InspectingClientAsync)
            ints = await ic.future_get_sensor("int-sensor")
            floats = await ic.future_get_sensor("float.sensor")
            # One sensor (the usual line), then two in one line, then an unknown one.
            srv.mass_inform("sensor-status", "100.5", "1", "int-sensor", "warn", "7")
            srv.mass_inform("sensor-status", "101.5", "2", "int-sensor", "error", "8",
                            "float.sensor", "nominal", "2.5")
            srv.mass_inform("sensor-status", "102.5", "1", "no-such-sensor", "nominal", "1")
            reply, _ = await ic.simple_request("watchdog")
            assert reply.reply_ok()
            assert ints.read() == (101.5, Sensor.ERROR, 8)
            assert floats.read() == (101.5, Sensor.NOMINAL, 2.5)
            if cls is _SeesEveryUpdate:
                assert [u[0] for u in ic.seen] == ["int-sensor", "int-sensor", "float.sensor",
                                                   "no-such-sensor"]
                assert ic.seen[0][1:] == (b"100.5", b"warn", b"7")
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)


def test_lazy_inspection_when_initial_inspection_off():
    async def main():
        srv = await start_aio()
        ic, _ = await _started_client(srv.port, initial_inspection=False)
        try:
            await ic.until_synced(timeout=5)
            assert ic.sensors == [] and ic.requests == []
            assert await ic.future_check_sensor("int-sensor")
            assert ic.sensors == ["int-sensor"]
            req = await ic.future_get_request("add")
            assert req.name == "add"
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)


def test_inform_hook():
    async def main():
        srv = await start_aio()
        ic = InspectingClientAsync("127.0.0.1", srv.port)
        got = asyncio.get_running_loop().create_future()
        ic.set_inform_hook("custom-thing", lambda msg: got.done() or got.set_result(msg))
        await ic.connect()
        try:
            await ic.until_synced(timeout=5)
            srv.mass_inform("custom-thing", "a", 1)
            msg = await asyncio.wait_for(got, 2)
            assert msg.name == "custom-thing" and msg.arguments == [b"a", b"1"]
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)


def test_sync_failure_is_retried_with_backoff(caplog):
    import aiokatcp
    from test_resource_servers import AioServer

    class FlakyServer(AioServer):
        failures = 2

        async def request_sensor_list(self, ctx, name: str = None) -> None:
            """Fails the first times."""
            if FlakyServer.failures > 0:
                FlakyServer.failures -= 1
                raise aiokatcp.FailReply("not ready yet")
            return await super().request_sensor_list(ctx, name)

    async def main():
        srv = FlakyServer("127.0.0.1", 0)
        await srv.start()
        ic = InspectingClientAsync("127.0.0.1", srv.port)
        ic.initial_resync_timeout = 0.02
        states = []
        ic.set_state_callback(lambda state, changes: states.append(state))
        await ic.connect()
        try:
            await ic.until_synced(timeout=5)
            assert FlakyServer.failures == 0
            assert "int-sensor" in ic.sensors
            assert states.count(InspectingClientStateType(True, False, False, False)) >= 3
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)
    assert "Error syncing with device" in caplog.text


def test_many_interface_changes_at_once():
    async def main():
        srv = await start_aio()
        ic, _ = await _started_client(srv.port)
        try:
            await ic.until_synced(timeout=5)
            not_synced = ic.until_not_synced(timeout=5)
            for i in range(ic.MAX_TARGETED_INSPECTIONS + 5):
                srv.add_int_sensor(f"burst.{i}", i)
            srv.add_int_sensor("single", 1)
            await not_synced
            await ic.until_synced(timeout=5)
            # Informs may be handled in several rounds; wait until all are in.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while len([s for s in ic.sensors if s.startswith("burst.")]) < 25:
                assert loop.time() < deadline
                await ic.until_synced(timeout=5)
                await asyncio.sleep(0.01)
            assert "single" in ic.sensors
        finally:
            await _stop(ic)
            await stop_server(srv)

    run(main)


def test_state_tracker_timeout_forgets_waiter():
    from katcp._resource.inspecting_state import StateTracker

    async def main():
        t = StateTracker("a")
        assert (await t.until_state("a")) == "a"
        with pytest.raises(tornado.gen.TimeoutError):
            await t.until_state("b", timeout=0.01)
        assert t._waiters == []
        f = t.until_state_in("b", "c", timeout=1)
        t.set_state("c")
        assert await f == "c"
        f = t.until_predicate(lambda s: 1 / 0 if s == "boom" else False)
        t.set_state("boom")
        with pytest.raises(ZeroDivisionError):
            await f

    run(main)
