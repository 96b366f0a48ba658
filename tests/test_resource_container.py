"""Tests for KATCPClientResourceContainer, groups and the thread-safe wrappers."""

import asyncio
import threading

import pytest
import tornado.gen
from test_resource_client import set_value
from test_resource_servers import OurServer, run, start_aio, start_ours, stop_server

from katcp.ioloop_manager import IOLoopManager, IOLoopThreadWrapper
from katcp.resource import KATCPReply
from katcp.resource_client import (
    AttrMappingProxy,
    ClientGroup,
    GroupResults,
    KATCPClientResource,
    KATCPClientResourceContainer,
    MappingProxy,
    ThreadSafeKATCPClientResourceWrapper,
    ThreadSafeKATCPSensorWrapper,
)


def container_spec(ports, **extra):
    clients = {name: dict(address=("127.0.0.1", port), controlled=True,
                          auto_reconnect_delay=0.05)
               for name, port in ports.items()}
    return dict(name="cont", description="Two devices", clients=clients, **extra)


async def stop_container(cont):
    cont.stop()
    for f in cont.until_stopped(timeout=2).values():
        await f


def test_mapping_proxies():
    m = MappingProxy({"a": 1, "b": 2}, lambda v: v * 10)
    assert m["a"] == 10 and len(m) == 2 and set(m) == {"a", "b"} and "a" in m
    am = AttrMappingProxy({"x": 1}, str)
    assert am.x == "1" and am["x"] == "1"
    with pytest.raises(AttributeError):
        getattr(am, "y")  # noqa: B009
    assert dir(am) == ["x"]


def test_group_results():
    assert GroupResults() .succeeded
    ok = KATCPReply(_reply("ok"), [])
    fail = KATCPReply(_reply("fail"), [])
    assert GroupResults(a=ok, b=ok)
    assert not GroupResults(a=ok, b=fail)
    assert not GroupResults(a=ok, b=fail).succeeded


def _reply(code):
    from katcp.core import Message

    return Message.reply("x", code)


def test_container_aggregates_children_and_groups():
    async def main():
        s1 = await start_aio()
        s2 = await start_ours()
        cont = KATCPClientResourceContainer(
            container_spec({"dev-a": s1.port, "dev_b": s2.port},
                           groups={"both": ["dev-a", "dev_b"]}))
        assert cont.name == "cont" and cont.description == "Two devices"
        assert set(cont.children) == {"dev_a", "dev_b"}
        assert cont.parent is None and cont.address is None
        assert not cont.is_connected()
        cont.start()
        try:
            await cont.until_synced(timeout=5)
            assert cont.is_connected()
            assert cont.children.dev_a.parent is cont
            assert cont.children.dev_a.parent_name == "cont"
            assert {"dev_a_int_sensor", "dev_b_int_sensor", "dev_a_str_sensor"} <= set(cont.sensor)
            assert cont.sensors is cont.sensor
            assert {"dev_a_add", "dev_b_add", "dev_b_slow_thing"} <= set(cont.req)
            reply = await cont.req.dev_b_add(1, 2)
            assert reply.succeeded and reply.reply.arguments[1] == b"3"
            # Groups: one request goes to every member.
            assert isinstance(cont.groups.both, ClientGroup)
            assert cont.groups.both.is_connected()
            assert len(cont.groups.both) == 2
            results = await cont.groups.both.req.add(2, 2)
            assert isinstance(results, GroupResults) and results.succeeded
            assert set(results) == {"dev-a", "dev_b"}
            assert all(r.reply.arguments[1] == b"4" for r in results.values())
            # add_group after start.
            cont.add_group("only_b", ["dev_b"])
            results = await cont.groups.only_b.req.slow_thing()
            assert list(results) == ["dev_b"] and results.succeeded
            # list_sensors prefixes names with the child name.
            r = await cont.list_sensors("int_sensor")
            assert sorted(x.name for x in r) == ["dev-a.int-sensor", "dev_b.int-sensor"]
            assert sorted(x.python_identifier for x in r) == ["dev_a_int_sensor",
                                                              "dev_b_int_sensor"]
        finally:
            await stop_container(cont)
            await stop_server(s1)
            await stop_server(s2)

    run(main)


def test_container_strategies_listeners_wait():
    async def main():
        s1 = await start_aio()
        s2 = await start_ours()
        cont = KATCPClientResourceContainer(
            container_spec({"a": s1.port, "b": s2.port}, groups={"g": ["a", "b"]}))
        cont.start()
        try:
            await cont.until_synced(timeout=5)
            result = await cont.set_sampling_strategies("int_sensor", "event")
            assert result == {"a": {"int_sensor": "event"}, "b": {"int_sensor": "event"}}
            assert cont.sensor.a_int_sensor.sampling_strategy == ("event",)
            got = []
            res = await cont.set_sensor_listener("b_int_sensor", lambda s, r: got.append(r.value))
            assert list(res) == ["b"]
            set_value(s2, "int-sensor", 42)
            assert await cont.wait("b_int_sensor", 42, timeout=2) is True
            assert 42 in got
            assert await cont.wait("a_int_sensor", 42, timeout=0.05) is False
            result = await cont.set_sampling_strategy("a_float_sensor", "period 0.1")
            assert result == {"a": {"float_sensor": "period 0.1"}}
            with pytest.raises(Exception, match="Unknown sensor"):
                await cont.set_sampling_strategy("a_nope", "event")
            # Group wait with quorum.
            set_value(s1, "int-sensor", 5)
            set_value(s2, "int-sensor", 5)
            res = await cont.groups.g.wait("int_sensor", 5, timeout=2)
            assert res and res == {"a": True, "b": True}
            set_value(s1, "int-sensor", 6)
            res = await cont.groups.g.wait("int_sensor", 6, timeout=0.4, quorum=1,
                                           max_grace_period=0.1)
            assert res and res["a"] is True and res["b"] is False
            res = await cont.groups.g.wait("int_sensor", 6, timeout=0.2, quorum=1.0,
                                           max_grace_period=0.05)
            assert not res
            with pytest.raises(TypeError):
                await cont.groups.g.wait("int_sensor", 6, quorum=2.5)
            gres = await cont.groups.g.set_sampling_strategy("float_sensor", "event")
            assert set(gres) == {"a", "b"}
            gres = await cont.groups.g.set_sampling_strategies("float", "none")
            assert set(gres) == {"a", "b"}
        finally:
            await stop_container(cont)
            await stop_server(s1)
            await stop_server(s2)

    run(main)


def test_container_state_futures_and_add_child():
    async def main():
        s1 = await start_aio()
        s2 = await start_aio()
        port2 = s2.port
        cont = KATCPClientResourceContainer(container_spec({"a": s1.port, "b": port2}))
        cont.start()
        try:
            await cont.until_all_children_in_state("synced", timeout=5)
            await cont.until_any_child_in_state("synced", timeout=5)
            not_synced = cont.until_not_synced(timeout=5)
            await stop_server(s2)
            await not_synced
            await cont.until_any_child_in_state("disconnected", timeout=5)
            with pytest.raises(tornado.gen.TimeoutError):
                await cont.until_synced(timeout=0.05)
            s2 = await start_aio(port=port2)
            await cont.until_synced(timeout=5)
            s3 = await start_ours()
            child = cont.add_child_resource_client("c", dict(address=("127.0.0.1", s3.port),
                                                             controlled=True))
            assert isinstance(child, KATCPClientResource)
            await cont.until_synced(timeout=5)
            assert "c_slow_thing" in cont.req and "c_int_sensor" in cont.sensor
        finally:
            await stop_container(cont)
            await stop_server(s1)
            await stop_server(s2)
            await stop_server(s3)

    run(main)


def test_child_sensor_changes_reach_container():
    async def main():
        s1 = await start_aio()
        cont = KATCPClientResourceContainer(container_spec({"a": s1.port}))
        cont.start()
        try:
            await cont.until_synced(timeout=5)
            not_synced = cont.until_not_synced(timeout=5)
            s1.add_int_sensor("extra", 1)
            await not_synced
            await cont.until_synced(timeout=5)
            assert "a_extra" in cont.sensor
            not_synced = cont.until_not_synced(timeout=5)
            s1.remove_sensor("extra")
            await not_synced
            await cont.until_synced(timeout=5)
            assert "a_extra" not in cont.sensor
        finally:
            await stop_container(cont)
            await stop_server(s1)

    run(main)


class LoopThread:
    """A managed ioloop thread with one server and one resource."""

    def __init__(self, make_resource, start_from_this_thread=False):
        self.manager = IOLoopManager(managed_default=True)
        self.ioloop = self.manager.get_ioloop()
        self.manager.start(timeout=5)
        self.wrapper = IOLoopThreadWrapper(self.ioloop)
        self.wrapper.default_timeout = 10
        # The server runs in its own managed ioloop thread (katcp-python style).
        self.server = OurServer("127.0.0.1", 0)
        self.server.start(timeout=5)
        self.resource = make_resource(self.server.port)
        self.resource.set_ioloop(self.ioloop)
        if start_from_this_thread:
            self.resource.start()  # handed over to the ioloop thread
        else:
            self.wrapper.call_in_ioloop(self.resource.start, (), {})

    def close(self):
        self.wrapper.call_in_ioloop(self.resource.stop, (), {})
        self.manager.stop(timeout=5)
        self.server.stop(timeout=5)
        self.server.join(timeout=5)
        self.manager.join(timeout=5)


def test_threadsafe_wrapper_from_plain_thread():
    lt = LoopThread(lambda port: KATCPClientResource(dict(
        name="dev", address=("127.0.0.1", port), controlled=True)))
    try:
        res = ThreadSafeKATCPClientResourceWrapper(lt.resource, lt.wrapper)
        res.until_synced(timeout=5)
        assert res.state == "synced" and res.is_connected()
        assert res.name == "dev"
        reply = res.req.add(3, 4)
        assert isinstance(reply, KATCPReply) and reply.reply.arguments[1] == b"7"
        sensor = res.sensor.int_sensor
        assert isinstance(sensor, ThreadSafeKATCPSensorWrapper)
        assert sensor.get_value() == 3
        res.set_sampling_strategy("int_sensor", "event")
        assert sensor.sampling_strategy == ("event",)
        lt.server.get_sensor("int-sensor").set_value(9)
        assert res.wait("int_sensor", 9, timeout=2) is True
        assert sensor.wait(9, timeout=2) is True
        assert [r.name for r in res.list_sensors("int")] == ["int-sensor"]
        assert res.parent is None and len(res.children) == 0
        # Timeouts surface as the call's own timeout error.
        with pytest.raises(tornado.gen.TimeoutError):
            sensor.wait(1234, timeout=0.05)

        # From the loop thread itself: a clear error instead of a deadlock.
        def in_loop():
            try:
                res.req.add(1, 1)
            except RuntimeError as exc:
                return str(exc)
            return "no error"

        message = lt.wrapper.call_in_ioloop(in_loop, (), {})
        assert "ioloop" in message
    finally:
        lt.close()


def test_threadsafe_container_groups_from_threads():
    def make(port):
        return KATCPClientResourceContainer(
            dict(name="c", clients={"x": dict(address=("127.0.0.1", port), controlled=True),
                                    "y": dict(address=("127.0.0.1", port), controlled=True)},
                 groups={"g": ["x", "y"]}))

    lt = LoopThread(make, start_from_this_thread=True)
    try:
        cont = ThreadSafeKATCPClientResourceWrapper(lt.resource, lt.wrapper)
        cont.until_synced(timeout=5)
        assert set(cont.children) == {"x", "y"}
        assert cont.children.x.parent.name == "c"
        results = cont.groups.g.req.add(1, 1)
        assert isinstance(results, GroupResults) and results.succeeded
        assert len(cont.groups.g.clients) == 2
        # Several plain threads at once.
        errors, replies = [], []

        def worker():
            try:
                replies.append(cont.req.x_add(2, 2).reply.arguments[1])
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert errors == [] and replies == [b"4"] * 8
    finally:
        lt.close()


def test_wrapper_requires_known_attributes():
    lt = LoopThread(lambda port: KATCPClientResource(dict(
        name="dev", address=("127.0.0.1", port))))
    try:
        res = ThreadSafeKATCPClientResourceWrapper(lt.resource, lt.wrapper)
        with pytest.raises(AttributeError):
            getattr(res, "no_such_attribute")  # noqa: B009
        assert "until_synced" in dir(res)
    finally:
        lt.close()


def test_asyncio_loop_unused_warning_free():
    # The helpers must not need a running loop at construction time.
    cont = KATCPClientResourceContainer(container_spec({"a": 1}))
    assert cont.children.a.state == "disconnected"
    assert asyncio.iscoroutinefunction(stop_container)


class AuditedContainer(KATCPClientResourceContainer):
    """A katcp-python style container subclass that audits every strategy it sets."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.audited = []

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name, strategy_and_parms):
        self.audited.append(sensor_name)
        result = yield super().set_sampling_strategy(sensor_name, strategy_and_parms)
        return result


@pytest.mark.parametrize("cls", [KATCPClientResourceContainer, AuditedContainer])
def test_container_set_sampling_strategies_both_paths(cls):
    # Bulk per child only for a class that keeps set_sampling_strategy (chosen per class).
    assert cls._bulk_strategies == (cls is KATCPClientResourceContainer)

    async def main():
        s1 = await start_aio()
        s2 = await start_ours()
        cont = cls(container_spec({"a": s1.port, "b": s2.port}))
        cont.start()
        try:
            await cont.until_synced(timeout=5)
            result = await cont.set_sampling_strategies("_sensor$", "event")
            expected = {c: {k: "event" for k in dict.keys(cont.children[c].sensor)
                            if k.endswith("_sensor")} for c in ("a", "b")}
            assert result == expected
            assert cont.sensor.b_int_sensor.sampling_strategy == ("event",)
            if cls is AuditedContainer:
                assert sorted(cont.audited) == sorted(
                    f"{c}_{k}" for c in expected for k in expected[c])
        finally:
            await stop_container(cont)
            await stop_server(s1)
            await stop_server(s2)

    run(main)


def test_group_requests_follow_members_requests():
    """A group offers each request some member has; a member's update changes only its
    own part (requests other members still have stay)."""
    from types import SimpleNamespace

    def member(name, *reqs):
        return SimpleNamespace(name=name, req={r: SimpleNamespace(description=r.upper())
                                               for r in reqs})

    a, b, outsider = member("a", "x", "y"), member("b", "y", "z"), member("c", "w")
    group = ClientGroup("g", [a, b])
    assert set(group.req) == {"x", "y", "z"}
    assert group.req.x.description == "X"
    assert group.has_member(a) and group.has_member(b) and not group.has_member(outsider)
    a.req.pop("y")
    a.req["v"] = SimpleNamespace(description="V")
    group.client_updated(a)
    assert set(group.req) == {"v", "x", "y", "z"}  # b still has y
    b.req.clear()
    group.client_updated(b)
    assert set(group.req) == {"v", "x"}
    group.client_updated(b)  # no change: no harm
    a.req.clear()
    group.client_updated(a)
    assert set(group.req) == set()
