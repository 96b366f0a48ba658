"""Issue 11, "Clients and high-level clients": katcp-python 0.9.3 behaviours of the inspecting
client, resources and containers that existing code relies on (real loopback sockets)."""

from __future__ import annotations

import asyncio

import pytest
from test_resource_servers import run, start_ours, stop_server

from katcp.core import Message
from katcp.inspecting_client import InspectingClientAsync, InspectingClientStateType
from katcp.resource import KATCPReply
from katcp.resource_client import KATCPClientResource

DISCONNECTED = InspectingClientStateType(False, False, False, False)
CONNECTED = InspectingClientStateType(True, False, False, False)
SYNCED = InspectingClientStateType(True, True, False, True)


async def _until(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


# -- KATCPReply and the resource properties ------------------------------------------------


def test_katcp_reply_str_and_repr_match_katcp_python():
    """Forms taken from katcp-python 0.9.3 on the same messages."""
    rep = KATCPReply(Message.reply("foo", "ok", "x y", mid=3), [Message.inform("foo", "a", mid=3)])
    assert str(rep) == "!foo[3] ok x\\_y\n#foo[3] a"
    assert repr(rep) == "!foo ok x y\n#foo a"
    fail = KATCPReply(Message.reply("foo", "fail", "bad"), [])
    assert str(fail) == repr(fail) == "!foo fail bad"
    assert repr(KATCPReply(Message.reply("foo"), [])) == "!foo "


def test_resource_versions_and_last_connect_time_before_start_raise():
    res = KATCPClientResource(dict(name="dev", address=("127.0.0.1", 1), controlled=True))
    for attr in ("versions", "last_connect_time"):
        with pytest.raises(RuntimeError, match="have you called start"):
            getattr(res, attr)


def test_resource_versions_and_last_connect_time_after_start():
    async def main():
        srv = await start_ours()
        res = KATCPClientResource(dict(name="dev", address=("127.0.0.1", srv.port),
                                       controlled=True))
        res.start()
        try:
            await res.until_synced(timeout=5)
            assert "katcp-protocol" in res.versions
            assert isinstance(res.last_connect_time, float)
        finally:
            res.stop()
            await res.until_stopped(timeout=5)
            await stop_server(srv)

    run(main)


# -- inspecting client state reports --------------------------------------------------------


def test_state_callback_reports_initial_state_and_connected_before_version_connect():
    """A server that accepts but says nothing: the client reports disconnected, then connected
    (TCP is up, no #version-connect yet), as katcp-python does."""

    async def main():
        writers = []
        accepted = asyncio.Event()

        async def handle(reader, writer):
            writers.append(writer)
            accepted.set()
            await reader.read()  # keep quiet until the client goes

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ic = InspectingClientAsync("127.0.0.1", port)
        states = []
        ic.set_state_callback(lambda state, changes: states.append(state))
        try:
            await ic.connect()
            await asyncio.wait_for(accepted.wait(), 5)
            await asyncio.wait_for(ic.until_state(CONNECTED), 5)
            assert states[0] == DISCONNECTED
            assert CONNECTED in states and not ic.synced
            assert ic.katcp_client.protocol_flags is None  # no #version-connect yet
        finally:
            ic.stop()
            await asyncio.wait_for(ic.until_stopped(), 5)
            for writer in writers:
                writer.close()
            server.close()
            await server.wait_closed()

    run(main)


def test_until_state_resolves_while_the_client_is_in_that_state():
    """Each state lasts at least one loop iteration: a waiter for S wakes up while in S."""

    async def main():
        srv = await start_ours()
        ic = InspectingClientAsync("127.0.0.1", srv.port)
        seen = {}
        reported = []
        ic.set_state_callback(lambda state, changes: reported.append(state))

        async def watch(state):
            await ic.until_state(state, timeout=5)
            seen[state] = ic.state

        data_synced = InspectingClientStateType(True, False, True, True)
        watchers = [asyncio.ensure_future(watch(s)) for s in (CONNECTED, data_synced, SYNCED)]
        try:
            await ic.connect()
            await asyncio.wait_for(asyncio.gather(*watchers), 5)
            for state, current in seen.items():
                assert current == state, (state, current)
            # Disconnected (initial), connected, data synced, synced, in that order.
            assert reported[:4] == [DISCONNECTED, CONNECTED, data_synced, SYNCED]
        finally:
            ic.stop()
            await ic.until_stopped(timeout=5)
            await stop_server(srv)

    run(main)


# -- garbage collection after stop ------------------------------------------------------------


def _dead_after_stop(make, wait_ready):
    """Start the object `make(port)` builds on a loopback server, stop it, drop it, and return
    whether a weakref to it is dead after gc.collect()."""
    import gc
    import weakref

    async def main():
        srv = await start_ours()
        try:
            obj = make(srv.port)
            started = obj.start()
            if started is not None and hasattr(started, "__await__"):
                await asyncio.wait_for(started, 5)
            await asyncio.wait_for(wait_ready(obj), 5)
            stopped = obj.stop()
            if stopped is not None and hasattr(stopped, "__await__"):
                await asyncio.wait_for(stopped, 5)
            await asyncio.wait_for(_awaitable(obj.until_stopped()), 5)
            if hasattr(obj, "join"):  # clients; katcp-python's resources have no join()
                obj.join(timeout=5)
            ref = weakref.ref(obj)
            del obj, started, stopped
            gc.collect()
            return ref() is None, (gc.get_referrers(ref()) if ref() is not None else None)
        finally:
            await stop_server(srv)

    return run(main)


async def _awaitable(result):
    return await result


def _describe(referrers):
    return [type(r).__name__ + ":" + repr(r)[:150] for r in referrers or ()]


def test_device_client_is_collectable_after_stop():
    from katcp.client import AsyncClient

    import tornado.ioloop

    def make(port):
        client = AsyncClient("127.0.0.1", port)
        client.set_ioloop(tornado.ioloop.IOLoop.current())
        return client

    dead, referrers = _dead_after_stop(make, lambda c: c.until_protocol())
    assert dead, _describe(referrers)


def test_inspecting_client_is_collectable_after_stop():
    dead, referrers = _dead_after_stop(
        lambda port: InspectingClientAsync("127.0.0.1", port),
        lambda ic: ic.until_synced())
    assert dead, _describe(referrers)


def test_resource_is_collectable_after_stop():
    dead, referrers = _dead_after_stop(
        lambda port: KATCPClientResource(dict(name="dev", address=("127.0.0.1", port),
                                              controlled=True)),
        lambda res: res.until_synced())
    assert dead, _describe(referrers)


def test_container_is_collectable_after_stop():
    from katcp.resource_client import KATCPClientResourceContainer

    dead, referrers = _dead_after_stop(
        lambda port: KATCPClientResourceContainer(dict(
            name="group", clients={"dev-a": dict(address=("127.0.0.1", port), controlled=True)})),
        lambda cont: cont.until_synced())
    assert dead, _describe(referrers)


def test_threaded_clients_are_collectable_after_stop_and_join():
    """Clients with their own managed ioloop thread, driven from plain threads."""
    import gc
    import weakref

    from katcp.client import BlockingClient, CallbackClient
    from test_resource_servers import OurServer

    srv = OurServer("127.0.0.1", 0)
    srv.start(timeout=5)
    try:
        port = srv.bind_address[1]
        for cls in (BlockingClient, CallbackClient):
            client = cls("127.0.0.1", port)
            client.start(timeout=5)
            assert client.wait_protocol(timeout=5)
            reply, _informs = client.blocking_request(Message.request("watchdog"), timeout=5)
            assert reply.reply_ok()
            client.stop()
            client.until_stopped(timeout=5)  # a future of the client's loop
            client.join(timeout=5)
            ref = weakref.ref(client)
            del client, reply, _informs
            gc.collect()
            assert ref() is None, (cls.__name__, _describe(gc.get_referrers(ref())))
    finally:
        srv.stop()
        srv.join(timeout=5)


# -- containers ----------------------------------------------------------------------------


class _RecordingResource(KATCPClientResource):
    """Child resource that records calls of its public sync-state methods."""

    calls: list = []

    def until_synced(self, timeout=None):
        self.calls.append((self.name, "until_synced"))
        return super().until_synced(timeout)

    def until_not_synced(self, timeout=None):
        self.calls.append((self.name, "until_not_synced"))
        return super().until_not_synced(timeout)


def _container(port, names=("dev-a", "dev-b")):
    from katcp.resource_client import KATCPClientResourceContainer

    class Container(KATCPClientResourceContainer):
        def client_resource_factory(self, res_spec, parent, logger):
            return _RecordingResource(res_spec, parent=parent, logger=logger)

    return Container(dict(name="group", clients={
        name: dict(address=("127.0.0.1", port), controlled=True) for name in names}))


def test_container_set_active_reaches_children():
    cont = _container(1)
    cont.set_active(False)
    assert not cont.is_active()
    assert [child.is_active() for child in dict.values(cont.children)] == [False, False]
    cont.set_active(True)
    assert all(child.is_active() for child in dict.values(cont.children))


def test_container_sync_waits_use_children_methods_and_resolve_at_once():
    async def main():
        srv = await start_ours()
        cont = _container(srv.port)
        cont.start()
        try:
            await asyncio.wait_for(_awaitable(cont.until_synced()), 5)
            del _RecordingResource.calls[:]
            synced = cont.until_synced(timeout=5)
            assert synced.done()  # every child is synced already
            assert sorted(_RecordingResource.calls) == [
                ("dev-a", "until_synced"), ("dev-b", "until_synced")]
            del _RecordingResource.calls[:]
            not_synced = cont.until_not_synced(timeout=5)
            assert not not_synced.done()
            assert sorted(_RecordingResource.calls) == [
                ("dev-a", "until_not_synced"), ("dev-b", "until_not_synced")]
            cont.stop()
            stopped = cont.until_stopped(timeout=5)
            assert isinstance(stopped, dict) and sorted(stopped) == ["dev_a", "dev_b"]
            await asyncio.wait_for(_awaitable(stopped), 5)  # awaitable as a whole
            await asyncio.wait_for(not_synced, 5)
            again = cont.until_not_synced()
            assert again.done()  # every child is not synced already
        finally:
            cont.stop()
            await stop_server(srv)

    run(main)


def test_monitor_resource_sync_state_ends_in_the_iteration_exit_event_is_set():
    from katcp.core import AsyncEvent
    from katcp.resource_client import monitor_resource_sync_state

    async def main():
        srv = await start_ours()
        res = KATCPClientResource(dict(name="dev", address=("127.0.0.1", srv.port),
                                       controlled=True))
        res.start()
        seen = []
        exit_event = AsyncEvent()
        try:
            monitor = monitor_resource_sync_state(res, seen.append, exit_event)
            await res.until_synced(timeout=5)
            await _until(lambda: seen == [False, True])
            assert not monitor.done()
            exit_event.set()
            await asyncio.sleep(0)  # one loop iteration
            assert monitor.done() and monitor.result() is None
            res.stop()
            await res.until_stopped(timeout=5)
            for _ in range(5):
                await asyncio.sleep(0)
            assert seen == [False, True]  # no callback after exit
        finally:
            res.stop()
            await stop_server(srv)

    run(main)


def test_monitor_resource_sync_state_with_exit_event_already_set():
    from katcp.core import AsyncEvent
    from katcp.resource_client import monitor_resource_sync_state

    async def main():
        res = KATCPClientResource(dict(name="dev", address=("127.0.0.1", 1), controlled=True))
        exit_event = AsyncEvent()
        exit_event.set()
        seen = []
        monitor = monitor_resource_sync_state(res, seen.append, exit_event)
        assert monitor.done() and seen == [False]

    run(main)


# -- transform_future -------------------------------------------------------------------------


def test_transform_future_resolves_in_the_iteration_of_its_source():
    from tornado.concurrent import Future

    from katcp.resource_client import transform_future

    async def main():
        done_src = Future()
        done_src.set_result(1)
        assert transform_future(lambda x: x + 1, done_src).result() == 2  # at once

        src = Future()
        order = []

        async def wait(name, fut):
            await fut
            order.append(name)

        src_waiter = asyncio.ensure_future(wait("src", src))
        await asyncio.sleep(0)  # the source's waiter is registered first
        new = transform_future(lambda x: x * 10, src)
        src.set_result(4)
        assert not new.done()
        await asyncio.sleep(0)  # one iteration: the source's waiters run, and new is done
        assert order == ["src"] and new.done() and new.result() == 40
        await src_waiter

        failing = Future()
        new = transform_future(lambda x: x, failing)
        failing.set_exception(ValueError("boom"))
        await asyncio.sleep(0)
        assert isinstance(new.exception(), ValueError)

    run(main)


# -- fake clients ------------------------------------------------------------------------------


def test_fake_container_keys_children_by_escaped_name():
    """As katcp-python's fake container: child managers keyed like ``container.children``."""
    from katcp.fake_clients import fake_KATCP_client_resource_container_factory
    from katcp.resource_client import KATCPClientResourceContainer

    async def main():
        spec = dict(name="c", clients={"client-2": dict(address=("fake", 2), controlled=True),
                                       "plain": dict(address=("fake", 3), controlled=True)})
        cont, manager = fake_KATCP_client_resource_container_factory(
            KATCPClientResourceContainer, {}, spec)
        assert set(manager.child_managers) == set(cont.children) == {"client_2", "plain"}
        manager.add_sensors("client_2", {"x": ("X", "", "integer", 0, 10)})
        cont.start()
        try:
            await cont.until_synced(timeout=2)
            assert "client_2_x" in cont.sensor
        finally:
            cont.stop()
            await cont.until_stopped(timeout=2)

    run(main)
