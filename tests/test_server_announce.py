"""``#client-connected``: each client hears, once, of every client that connects after it.

The server sends these announcements in batches (``KATCPServer.announce``): bytes encoded
once for the clients whose class keeps ``ClientConnection.inform``, each message through
``inform`` for the others.  These tests hold the server's loop while clients connect, so
that several of them land in one batch, and check the plain class, a class that overrides
``inform`` and a mix of both, over real sockets.
"""

from __future__ import annotations

import itertools
import selectors
import socket
import threading
import time
from typing import Dict, List

import pytest
from test_server_support import TIMEOUT, ExampleServer, RawClient, running

from katcp.core import Message
from katcp.server import ClientConnection
from katcp.testutils import ClientConnectionTest, DeviceTestServer


class RecordingInform:
    """Mixin: a client connection class that overrides ``inform`` (and records it)."""

    seen: List[str] = []

    def inform(self, msg: Message) -> None:
        if msg.name == "client-connected":
            RecordingInform.seen.append(msg.arguments[0].decode())
        super().inform(msg)  # type: ignore[misc]


def _factory(server, kind: str):
    """A client connection factory: plain, overriding ``inform``, or alternating."""
    base = server._server.client_connection_factory
    overriding = type("Recording" + base.__name__, (RecordingInform, base), {})
    assert not overriding._direct_bytes and base._direct_bytes
    if kind == "plain":
        return base
    if kind == "overrides":
        return overriding
    alternate = itertools.cycle([base, overriding])
    return lambda srv, conn: next(alternate)(srv, conn)


def _local(client: RawClient) -> str:
    host, port = client.sock.getsockname()[:2]
    return f"{host}:{port}"


def _hold_loop(server):
    """Block the server's ioloop until the returned event is set; return (held, release)."""
    held, release = threading.Event(), threading.Event()

    def block():
        held.set()
        release.wait(TIMEOUT)

    server.ioloop.add_callback(block)
    assert held.wait(TIMEOUT)
    return release


def _read_announcements(clients: List[RawClient], total: int) -> Dict[str, List[str]]:
    """Read every client until ``total`` announcements arrived; {client: [announced]}."""
    got: Dict[str, List[str]] = {_local(c): [] for c in clients}
    count = 0
    deadline = time.monotonic() + TIMEOUT
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    try:
        while count < total:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{count} of {total} announcements: {got}"
            for key, _ in sel.select(remaining):
                c = key.data
                c.sock.settimeout(TIMEOUT)
                data = c.sock.recv(65536)
                assert data, "server closed a connection"
                c.buf += data
                *lines, c.buf = c.buf.split(b"\n")
                for line in lines:
                    if line.startswith(b"#client-connected "):
                        got[_local(c)].append(line.split()[1].decode())
                        count += 1
    finally:
        sel.close()
    return got


def _server(handler_thread: bool = True) -> ExampleServer:
    server = ExampleServer("127.0.0.1", 0)
    if not handler_thread:  # handlers in the ioloop, plain client connections
        server.set_concurrency_options(thread_safe=False, handler_thread=False)
    return server


@pytest.mark.parametrize("handler_thread", [True, False])
@pytest.mark.parametrize("kind", ["plain", "overrides", "mixed"])
def test_each_client_hears_of_every_later_client_once(handler_thread, kind):
    RecordingInform.seen = []
    server = _server(handler_thread)
    server._server.client_connection_factory = _factory(server, kind)
    with running(server):
        first = [RawClient(server.bind_address) for _ in range(2)]
        burst: List[RawClient] = []
        try:
            for c in first:
                c.skip_connect_informs()
            # While the loop is held the system completes the connections; the server then
            # accepts them all in one pass, and announces them in one batch.
            release = _hold_loop(server)
            try:
                burst = [RawClient(server.bind_address) for _ in range(5)]
            finally:
                release.set()
            clients = first + burst
            n = len(clients)
            got = _read_announcements(clients, n * (n - 1) // 2)
            names = [_local(c) for c in clients]
            # The first two connected one after the other: exact lists, in order.
            assert got[names[0]][0] == names[1]
            assert sorted(got[names[0]][1:]) == sorted(names[2:])
            assert sorted(got[names[1]]) == sorted(names[2:])
            # Within the batch: of every two clients, exactly one hears of the other.
            for a, b in itertools.combinations(names, 2):
                assert (b in got[a]) != (a in got[b]), (a, b, got)
            for name in names:
                assert name not in got[name]
                assert len(set(got[name])) == len(got[name])
            # Nothing more is on its way: the next line each client reads is its reply.
            for c in clients:
                c.send(b"?watchdog\n")
                assert c.readline() == b"!watchdog ok"
        finally:
            for c in first + burst:
                c.close()
    if kind == "plain":
        assert RecordingInform.seen == []
    else:
        # The overriding class got each of its announcements through inform().
        assert RecordingInform.seen
        assert set(RecordingInform.seen) <= set(names)


def test_batches_are_cut_at_max_announcements():
    server = _server()
    server._server.MAX_ANNOUNCEMENTS = 2
    with running(server):
        clients: List[RawClient] = []
        try:
            release = _hold_loop(server)
            try:
                clients = [RawClient(server.bind_address) for _ in range(7)]
            finally:
                release.set()
            n = len(clients)
            got = _read_announcements(clients, n * (n - 1) // 2)
            names = [_local(c) for c in clients]
            for a, b in itertools.combinations(names, 2):
                assert (b in got[a]) != (a in got[b]), (a, b, got)
            for c in clients:
                c.send(b"?watchdog\n")
                assert c.readline() == b"!watchdog ok"
        finally:
            for c in clients:
                c.close()


def test_a_device_driven_without_its_server_announces_at_once():
    server = DeviceTestServer("", 0)
    first, second = ClientConnectionTest(), ClientConnectionTest()
    server.on_client_connect(first)
    server.on_client_connect(second)
    assert [str(m) for m in first.informs if m.name == "client-connected"] == [
        "#client-connected <ClientConnectionTest>"]
    assert not [m for m in second.informs if m.name == "client-connected"]


def test_an_idle_connection_keeps_no_message_queues():
    """What an idle client costs: its backlog and early-message list are made on use."""
    server = _server(handler_thread=False)
    with running(server):
        c = RawClient(server.bind_address)
        try:
            c.skip_connect_informs()
            assert c.request(b"?watchdog") == [b"!watchdog ok"]
            (client,) = server._server._connections.values()
            assert isinstance(client, ClientConnection)
            assert "_backlog" not in vars(client) and client._early is None
            # A request that holds back the next ones makes the backlog, which then works.
            c.send(b"?native 0.05\n?echo x\n")
            assert c.readline() == b"!native ok native"
            assert c.readline() == b"!echo ok x"
        finally:
            c.close()


def test_listening_socket_queues_a_burst_of_connections():
    """The listen backlog is the system's largest: a burst waits in the queue."""
    server = _server()
    with running(server):
        release = _hold_loop(server)
        socks: List[socket.socket] = []
        try:
            # More than the old backlog of 128, while the server accepts nothing.
            for _ in range(200):
                socks.append(socket.create_connection(server.bind_address[:2],
                                                      timeout=TIMEOUT))
        finally:
            release.set()
        try:
            for s in socks:
                s.settimeout(TIMEOUT)
                assert s.recv(100).startswith(b"#version-connect")
        finally:
            for s in socks:
                s.close()


class FailingInform(ClientConnection):
    def inform(self, msg: Message) -> None:
        if msg.name == "client-connected":
            raise RuntimeError("deliberate")
        super().inform(msg)


def test_an_inform_that_raises_does_not_stop_the_announcements(caplog):
    server = _server(handler_thread=False)
    made = itertools.count()
    # The first client's class raises on announcements; the second hears of the third.
    classes = [FailingInform, ClientConnection, ClientConnection]
    server._server.client_connection_factory = lambda srv, conn: classes[next(made)](srv, conn)
    with running(server):
        clients = [RawClient(server.bind_address) for _ in range(2)]
        try:
            for c in clients:
                c.skip_connect_informs()
            third = RawClient(server.bind_address)
            clients.append(third)
            third.skip_connect_informs()
            assert clients[1].readline() == f"#client-connected {_local(third)}".encode()
            for c in clients:
                assert c.request(b"?watchdog") == [b"!watchdog ok"]
        finally:
            for c in clients:
                c.close()
    assert "Error announcing new clients" in caplog.text
