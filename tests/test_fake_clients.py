"""Tests for katcp.fake_clients (network-free fakes of the high-level clients)."""

import asyncio

import pytest
from test_resource_client import until
from test_resource_servers import run

from katcp.core import FailReply, Message, Sensor
from katcp.fake_clients import (
    FakeAsyncClient,
    FakeClientRequestConnection,
    FakeKATCPServer,
    FakeKATCPServerError,
    fake_inspecting_client_factory,
    fake_KATCP_client_resource_container_factory,
    fake_KATCP_client_resource_factory,
)
from katcp.inspecting_client import InspectingClientAsync
from katcp.kattypes import Int, request, return_reply
from katcp.resource_client import KATCPClientResource, KATCPClientResourceContainer

SENSORS = {
    "temp": ("Temperature", "degC", "float", -50, 150),
    "mode": ("Mode", "", "discrete", "idle", "busy"),
    "count": ("Counter", "", "integer", 0, 100),
}


class Handlers:
    @request(Int(), Int())
    @return_reply(Int())
    def request_add(self, req, a, b):
        """Add two integers."""
        return ("ok", a + b)

    def request_echo(self, req, msg):
        """Echo the arguments as informs."""
        for arg in msg.arguments:
            req.inform(arg)
        return req.make_reply("ok", len(msg.arguments))

    def request_refuse(self, req, msg):
        """Always fails."""
        raise FailReply("refused")

    async def request_later(self, req, msg):
        """Coroutine handler."""
        await asyncio.sleep(0)
        req.reply("ok", "later")


def test_fake_server_refuses_sending():
    srv = FakeKATCPServer()
    with pytest.raises(FakeKATCPServerError):
        srv.send_message(1, Message.inform("x"))
    with pytest.raises(FakeKATCPServerError):
        srv.mass_send_message(Message.inform("x"))
    assert "fake" in srv.get_address(3)

    async def main():
        assert srv.flush_on_close(None).done()

    run(main)


def test_fake_inspecting_client():
    async def main():
        fic, manager = fake_inspecting_client_factory(
            InspectingClientAsync, {"sensor_infos": SENSORS}, "fakehost", 1234)
        assert isinstance(fic.katcp_client, FakeAsyncClient)
        manager.add_request_handlers_object(Handlers())
        await fic.connect()
        try:
            await fic.until_synced(timeout=2)
            assert set(fic.sensors) == set(SENSORS)
            assert {"add", "echo", "help", "sensor-list"} <= set(fic.requests)
            assert (await fic.future_get_request("add")).description == "Add two integers."
            reply, informs = await fic.simple_request("add", 2, 5)
            assert reply.reply_ok() and reply.arguments == [b"ok", b"7"]
            reply, informs = await fic.simple_request("echo", "a", "b")
            assert [i.arguments for i in informs] == [[b"a"], [b"b"]]
            reply, _ = await fic.simple_request("refuse")
            assert reply.arguments == [b"fail", b"refused"]
            reply, _ = await fic.simple_request("later")
            assert reply.arguments == [b"ok", b"later"]
            reply, _ = await fic.simple_request("nope")
            assert reply.arguments[0] == b"invalid"
            # Sensors added after sync are announced and inspected.
            not_synced = fic.until_not_synced(timeout=2)
            manager.add_sensors({"late": ("Late", "", "boolean")})
            await not_synced
            await fic.until_synced(timeout=2)
            assert "late" in fic.sensors
            with pytest.raises((ValueError, KeyError, TypeError)):
                manager.add_sensors({"bad": ("Bad", "", "no-such-type")})
            with pytest.raises(ValueError):
                manager.add_request_handlers_dict({"nodoc": lambda req, msg: None})
        finally:
            fic.stop()
            await fic.until_stopped(timeout=1)

    run(main)


def test_fake_request_connection_records():
    from katcp.server import ClientConnection

    req = FakeClientRequestConnection(ClientConnection(FakeKATCPServer(), 1),
                                      Message.request("x", mid=5))
    req.inform("a")
    req.reply("ok")
    assert req.informs_sent[0].mid == b"5" or req.informs_sent[0].mid == 5
    assert req.reply_sent.arguments == [b"ok"]
    with pytest.raises(RuntimeError):
        req.reply("ok")


def test_fake_resource_strategies_listeners_and_requests():
    async def main():
        res, manager = fake_KATCP_client_resource_factory(
            KATCPClientResource, {},
            dict(name="dev", address=("fake", 1), controlled=True))
        manager.add_sensors(SENSORS)  # before start: kept until the fake exists
        assert set(manager.fake_sensor_infos) == set(SENSORS)
        manager.add_request_handlers_object(Handlers())
        got = []
        await res.set_sampling_strategy("temp", "event")
        await res.set_sensor_listener("temp", lambda s, r: got.append(r.value))
        res.start()
        try:
            await res.until_synced(timeout=2)
            assert set(res.sensor) == {"temp", "mode", "count"}
            assert (await res.req.add(1, 2)).reply.arguments[1] == b"3"
            manager.set_sensor_reading("temp", 21.5)
            assert await res.wait("temp", 21.5, timeout=1)
            assert got[-1] == 21.5
            manager.set_sensor_reading("count", 7, status=Sensor.WARN)
            assert await res.sensor.count.get_value() == 7
            assert res.sensor.count.status == "warn"
            # Bulk strategy on the fake (it has the B flag).
            result = await res.set_sampling_strategies(".", "event")
            assert set(result) == {"temp", "mode", "count"}
            manager.set_sensor_reading("mode", "busy")
            await until(lambda: res.sensor.mode.value == "busy")
            # Reconnect: strategies re-applied to the fake device.
            fkc = res._inspecting_client.katcp_client
            mgr = res.fake_inspecting_client_manager
            assert mgr.fake_sensor_strategies["temp"] == ("event",)
            fkc.fake_disconnect()
            assert mgr.fake_sensor_strategies == {}
            await until(lambda: mgr.fake_sensor_strategies.get("temp") == ("event",))
            await res.until_synced(timeout=2)
            assert set(mgr.fake_sensor_strategies) == {"temp", "mode", "count"}
            manager.set_sensor_reading("temp", 30.0)
            assert await res.wait("temp", 30.0, timeout=1)
        finally:
            res.stop()
            await res.until_stopped(timeout=1)

    run(main)


def test_fake_container():
    async def main():
        spec = dict(name="c", clients={"a": dict(address=("fake", 1), controlled=True),
                                       "b": dict(address=("fake", 2), controlled=True)},
                    groups={"all": ["a", "b"]})
        cont, manager = fake_KATCP_client_resource_container_factory(
            KATCPClientResourceContainer, {}, spec)
        assert set(manager.child_managers) == {"a", "b"}
        manager.add_sensors("a", {"x": ("X", "", "integer", 0, 10)})
        manager.add_request_handlers_object("a", Handlers())
        manager.add_request_handlers_dict("b", {"add": Handlers().request_add})
        cont.start()
        try:
            await cont.until_synced(timeout=2)
            assert "a_x" in cont.sensor
            results = await cont.groups.all.req.add(3, 3)
            assert results.succeeded and set(results) == {"a", "b"}
        finally:
            cont.stop()
            for f in cont.until_stopped(timeout=1).values():
                await f

    run(main)


def test_fake_container_agg_sensors_progress_log_and_new_requests(caplog, monkeypatch):
    from katcp._resource import container as _resource_container

    monkeypatch.setattr(_resource_container, "PROGRESS_LOG_MIN_CHILDREN", 2)
    monkeypatch.setattr(_resource_container, "PROGRESS_LOG_INTERVAL", 0.0)
    caplog.set_level("INFO", logger="katcp.resource_client")

    async def main():
        spec = dict(name="c", clients={f"d{i}": dict(address=("fake", i), controlled=True)
                                       for i in range(3)})
        cont, manager = fake_KATCP_client_resource_container_factory(
            KATCPClientResourceContainer, {}, spec)
        manager.add_sensors("d0", {"agg_total": ("Aggregate", "", "integer", 0, 10),
                                   "plain": ("Plain", "", "integer", 0, 10)})
        cont.start()
        try:
            await cont.until_synced(timeout=2)
            assert "agg_total" in cont.sensor and "d0_plain" in cont.sensor
            assert "d0_agg_total" not in cont.sensor
            names = [r.name for r in await cont.list_sensors("total")]
            assert names == ["agg_total"]
            await until(lambda: "3/3 children synced" in caplog.text)
            # A request added at run time reaches the child and the container.
            not_synced = cont.children.d1.until_not_synced(timeout=2)
            manager.add_request_handlers_dict("d1", {"add": Handlers().request_add})
            await not_synced
            await cont.until_synced(timeout=2)
            assert "d1_add" in cont.req
            assert (await cont.req.d1_add(1, 1)).succeeded
        finally:
            cont.stop()
            for f in cont.until_stopped(timeout=1).values():
                await f

    run(main)
