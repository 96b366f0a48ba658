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
