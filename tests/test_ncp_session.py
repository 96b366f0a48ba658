"""katcp.ncp session behaviour: bad input, errors, iteration, matching, legacy peers, blocking."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import warnings
from datetime import datetime, timezone

import ncplib
import pytest

from katcp import ncp
from katcp.ncp import blocking, packets

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
TS = datetime(2021, 2, 18, 13, 17, 20, tzinfo=timezone.utc)


def run(coro, timeout=10):
    """Run a test coroutine (bounded), then let server-side tasks and transports finish."""

    async def main():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            loop = asyncio.get_running_loop()
            end = loop.time() + 1.0
            me = asyncio.current_task()
            while loop.time() < end and any(
                t is not me and not t.done() for t in asyncio.all_tasks()
            ):
                await asyncio.sleep(0.01)
            for _ in range(3):
                await asyncio.sleep(0)

    return asyncio.run(main())


def pkt(ptype, name, fid=0, **params):
    return packets.encode_packet(ptype, 1, TS, b"", [(name, fid, params)])


async def echo(conn):
    async for field in conn:
        field.send(ACKN=1)
        field.send(**field)


async def serve(handler=echo, **kwargs):
    kwargs.setdefault("timeout", 5)
    server = await ncp.start_server(handler, HOST, 0, **kwargs)
    return server, server.sockets[0].getsockname()[1]


async def close_server(server):
    await asyncio.sleep(0.02)
    server.close()
    await server.wait_closed()


class RawPeer:
    """A hand-driven NCP client on a plain socket (asyncio streams)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.codec = packets.PacketCodec()
        self.pending = []

    @classmethod
    async def connect(cls, port, handshake=True):
        peer = cls(*await asyncio.open_connection(HOST, port))
        if handshake:
            assert (await peer.next_field())[0] == "HELO"
            peer.writer.write(pkt("LINK", "CCRE", CIW="raw", LINK=30))
            assert (await peer.next_field())[0] == "SCAR"
            peer.writer.write(pkt("LINK", "CARE", CAR="raw"))
            assert (await peer.next_field())[0] == "SCON"
        return peer

    async def next_packet(self):
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            if not data:
                return None
            self.pending += self.codec.feed(data)
        return self.pending.pop(0)

    async def next_field(self):
        while True:
            p = await self.next_packet()
            if p is None:
                return None
            if p.fields:
                return p.fields[0]


@pytest.fixture
def quiet_server_log():
    logger = logging.getLogger("katcp.ncp.server")
    logger.disabled = True
    yield
    logger.disabled = False


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\xdd\xcc\xbb\xaa" + b"LINK" + b"\x02\x00\x00\x00" + bytes(20),  # size word too small
        pkt("DSPC", "TIME", X=1)[:-4] + b"XXXX",  # bad footer
        bytes.fromhex(
            "ddccbbaa5041434b130000000700000001000000e0682e6000ca5b07494e464f4649454c"
            "090000000900000041414141000000000500000042424242030000026869000000000000aabbccdd"
        ),  # param size 0: ncplib loops for ever here
    ],
)
def test_bad_packets_close_only_that_connection(garbage, quiet_server_log):
    async def main():
        server, port = await serve()
        good = await ncp.connect(HOST, port, timeout=5)
        bad = await RawPeer.connect(port)
        bad.writer.write(garbage)
        field = await bad.next_field()
        assert field == ("ERRO", field[1], [("ERRO", "Bad request"), ("ERRC", 400)])
        assert await bad.next_packet() is None  # then EOF
        # the other client is served on
        assert (await good.send("DSPC", "TIME", X=2).recv())["X"] == 2
        good.close()
        await good.wait_closed()
        bad.writer.close()
        await close_server(server)

    run(main())


def test_garbage_before_handshake(quiet_server_log):
    async def main():
        server, port = await serve()
        raw = await RawPeer.connect(port, handshake=False)
        raw.writer.write(b"\x00" * 64)
        fields = []
        while (f := await raw.next_field()) is not None:
            fields.append(f[0])
        assert fields == ["HELO", "ERRO"]
        raw.writer.close()
        await close_server(server)

    run(main())


def test_client_rejects_garbage_from_server():
    async def main():
        async def bad_server(reader, writer):
            writer.write(pkt("LINK", "HELO") + b"nonsense, not NCP at all........")
            await reader.read()
            writer.close()

        server = await asyncio.start_server(bad_server, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ncp.DecodeError, match="header"):
            await ncp.connect(HOST, port, timeout=5)
        server.close()
        await server.wait_closed()

    run(main())


def test_eof_inside_packet_is_decode_error():
    async def main():
        async def server_cb(reader, writer):
            writer.write(pkt("LINK", "HELO")[:-10])
            await asyncio.sleep(0.05)
            writer.close()

        server = await asyncio.start_server(server_cb, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ncp.DecodeError, match="middle of a packet"):
            await ncp.connect(HOST, port, timeout=5)
        server.close()
        await server.wait_closed()

    run(main())


def test_connection_refused_and_closed():
    async def main():
        sock = socket.socket()
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        sock.close()
        with pytest.raises(ncp.NetworkError):
            await ncp.connect(HOST, port, timeout=5)

        async def closer(reader, writer):
            writer.close()

        server = await asyncio.start_server(closer, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ncp.ConnectionClosed):
            await ncp.connect(HOST, port, timeout=5)
        server.close()
        await server.wait_closed()
        with pytest.raises(ValueError):
            await ncp.connect(HOST, port, timeout=0)

    run(main())


def test_handshake_timeout_when_server_silent():
    async def main():
        async def silent(reader, writer):
            await reader.read()
            writer.close()

        server = await asyncio.start_server(silent, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ncp.NetworkTimeoutError):
            await ncp.connect(HOST, port, timeout=1)
        assert loop.time() - t0 < 3
        server.close()
        await server.wait_closed()

    run(main())


def test_legacy_peer_gets_immediate_keepalive_and_invalid_link_warns():
    """A server that grants no LINK param (pre-5.0 node): legacy keep-alive mode."""
    got = []

    async def main():
        done = asyncio.Event()

        async def old_node(reader, writer):
            writer.write(pkt("LINK", "HELO", NCPV="old"))
            peer = RawPeer(reader, writer)
            assert (await peer.next_field())[0] == "CCRE"
            writer.write(pkt("LINK", "SCAR", LINK="sixty"))
            assert (await peer.next_field())[0] == "CARE"
            writer.write(pkt("LINK", "SCON"))
            got.append(await peer.next_packet())
            done.set()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(old_node, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.warns(ncp.DecodeWarning, match="Invalid LINK SCAR LINK param: 'sixty'"):
            conn = await ncp.connect(HOST, port, timeout=5)
        await asyncio.wait_for(done.wait(), 2)
        conn.close()
        await conn.wait_closed()
        server.close()
        await server.wait_closed()

    run(main())
    (keepalive,) = got
    assert keepalive.packet_type == "LINK" and keepalive.packet_id == 0 and keepalive.fields == []


def test_iteration_context_manager_and_response_matching():
    async def handler(conn):
        async for field in conn:
            if field.name == "MULT":
                conn.send(field.packet_type, "OTHR", X=0)  # not a reply: discarded by Response
                field.send(X=1)
                field.send(X=2)
            elif field.name == "A":
                field.send(N=1)
            elif field.name == "B":
                field.send(N=2)
            if field.name == "QUIT":
                break

    async def main():
        server, port = await serve(handler)
        async with await ncp.connect(HOST, port, timeout=5) as conn:
            response = conn.send("DSPC", "MULT")
            first = await response.recv()
            assert (first.name, first["X"], first.id) == ("MULT", 1, first.id)
            assert (await response.recv())["X"] == 2
            multi = conn.send_packet("DSPC", A={}, B={})
            assert (await multi.recv_field("B"))["N"] == 2
            reply = await conn.send("DSPC", "A").recv()
            assert reply["N"] == 1 and reply.connection is conn
            # Field.send from the client side, echoing type/name/id
            reply.send(Y=1)
            conn.send("DSPC", "QUIT")
            fields = [f async for f in conn]  # ends when the server closes
            assert [(f.name, f["N"]) for f in fields] == [("A", 1)]  # reply to reply.send
            assert conn.is_closing()
        assert conn.is_closing()
        await close_server(server)

    run(main())


def test_encode_errors_raise_synchronously():
    async def main():
        server, port = await serve()
        conn = await ncp.connect(HOST, port, timeout=5)
        with pytest.raises(TypeError):
            conn.send("DSPC", "TIME", X=None)
        with pytest.raises(ValueError):
            conn.send("DSPC", "TIME", X=2**40)
        assert (await conn.send("DSPC", "TIME", X=ncp.i64(2**40)).recv())["X"] == 2**40
        conn.close()
        await conn.wait_closed()
        await close_server(server)

    run(main())


def test_server_start_serving_false_and_default_port_args():
    async def main():
        server = await ncp.start_server(echo, HOST, 0, timeout=5, start_serving=False)
        port = server.sockets[0].getsockname()[1]
        assert not server.is_serving()
        await server.start_serving()
        conn = await ncplib.connect(HOST, port, timeout=5)
        assert (await conn.send("A", "B", C=1).recv())["C"] == 1
        conn.close()
        await conn.wait_closed()
        await close_server(server)

    run(main())


def test_server_handler_sees_connection_closed_at_end_of_iteration():
    ended = []

    async def handler(conn):
        async for _ in conn:
            pass
        ended.append(True)
        with pytest.raises(ncp.ConnectionClosed):
            await conn.recv()

    async def main():
        server, port = await serve(handler)
        conn = await ncplib.connect(HOST, port, timeout=5)
        conn.close()
        await conn.wait_closed()
        for _ in range(50):
            if ended:
                break
            await asyncio.sleep(0.01)
        await close_server(server)

    run(main())
    assert ended == [True]


def test_field_ids_are_unique_and_increasing():
    a, b = ncp.connection.next_field_id(), ncp.connection.next_field_id()
    assert b == (a + 1) & 0xFFFFFFFF


def test_module_is_a_drop_in_for_ncplib():
    for name in (
        ncplib.__all__
        if hasattr(ncplib, "__all__")
        else [n for n in dir(ncplib) if not n.startswith("_")]
    ):
        if name != "http":  # ncplib.http is an internal helper (our katcp.ncp.tunnel)
            assert hasattr(ncp, name), name


# ------------------------------------------------------------------ blocking façade


@pytest.fixture
def server_thread():
    """An ncplib server on its own loop in a thread (the peer of the blocking client)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box = {}

    async def handler(conn):
        async for field in conn:
            if field.name == "ERR":
                field.send(ERRO="nope", ERRC=9)
            elif field.name == "SLOW":
                pass
            elif field.name == "BYE":
                conn.close()
                return
            else:
                field.send(ACKN=1)
                field.send(**field)

    async def start():
        box["server"] = await ncplib.start_server(handler, HOST, 0, timeout=5)
        box["port"] = box["server"].sockets[0].getsockname()[1]
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()))
    thread.daemon = True
    thread.start()
    assert started.wait(5)
    yield box["port"]

    async def stop():
        box["server"].close()
        await box["server"].wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_blocking_client(server_thread):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with blocking.connect(HOST, server_thread, timeout=5) as node:
            assert node.remote_hostname == f"{HOST}:{server_thread}"
            field = node.request("DSPC", "TIME", SAMP=1024, NAME="x")
            assert dict(field) == {"SAMP": 1024, "NAME": "x"}
            response = node.send_packet("DSPC", A={"V": 1}, B={"V": 2})
            assert {response.recv()["V"], response.recv()["V"]} == {1, 2}
            with pytest.raises(ncp.CommandError):
                node.request("DSPC", "ERR")
            with pytest.raises(ncp.NetworkTimeoutError):
                node.request("DSPC", "SLOW", timeout=0.1)
            # The abandoned request is cancelled; the connection serves on.
            assert node.request("DSPC", "TIME", SAMP=7)["SAMP"] == 7
            with pytest.raises(TypeError):
                node.send("DSPC", "TIME", X=object())
            assert not node.is_closing()
        assert node.is_closing()


def test_blocking_request_direct_path_and_its_ends(server_thread):
    # request() writes from the calling thread and the loop hands the reply over.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with blocking.connect(HOST, server_thread, timeout=5) as node:
            assert node._direct and node.connection._conn.threadsafe_writes
            # fields queued before the request are passed over, as Response.recv() does
            node.send("DSPC", "TIME", Q=1)
            assert node.request("DSPC", "TIME", Q=2)["Q"] == 2
            # requests from several threads take turns and each gets its own reply
            results = {}

            def ask(i):
                results[i] = node.request("DSPC", "TIME", N=i)["N"]

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert results == {i: i for i in range(8)}
            # the peer closes while a request waits: the waiter hears it at once
            with pytest.raises(ncp.ConnectionClosed):
                node.request("DSPC", "BYE")
            # and a request on the closed connection says so (through the loop path)
            with pytest.raises(ncp.ConnectionClosed):
                node.request("DSPC", "TIME", N=1)
            assert node.connection._reply_watch is None


def test_blocking_request_keeps_an_overridden_send(server_thread):
    from katcp.ncp.connection import Connection

    sent = []

    class Recording(Connection):
        def send(self, packet_type, field_name, **params):
            sent.append(field_name)
            return super().send(packet_type, field_name, **params)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with blocking.connect(HOST, server_thread, timeout=5) as node:
            node.connection.__class__ = Recording
            subclassed = blocking.BlockingConnection(node.connection, node._runner, 5)
            assert not subclassed._direct
            assert subclassed.request("DSPC", "TIME", N=3)["N"] == 3
            assert sent == ["TIME"]


def test_blocking_connect_failure_stops_its_loop():
    sock = socket.socket()
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    sock.close()
    before = threading.active_count()
    with pytest.raises(ncp.NetworkError):
        blocking.connect(HOST, port, timeout=2)
    for _ in range(100):
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.01)
    assert threading.active_count() <= before


# ------------------------------------------------------------------ keep-alive timing (fake clock)


class FakeLoop:
    """Just enough of an event loop to drive keep-alive timing on a fake clock."""

    def __init__(self):
        self.now = 1000.0
        self.timers = []

    def time(self):
        return self.now

    def call_at(self, when, cb, *args):
        handle = asyncio.TimerHandle(when, cb, args, self)
        self.timers.append(handle)
        return handle

    def call_soon(self, cb, *args):
        return self.call_at(self.now, cb, *args)

    def _timer_handle_cancelled(self, handle):
        pass

    def get_debug(self):
        return False

    def advance(self, seconds):
        end = self.now + seconds
        while True:
            due = sorted(
                (h for h in self.timers if not h.cancelled() and h.when() <= end),
                key=lambda h: h.when(),
            )
            if not due:
                break
            handle = due[0]
            self.timers.remove(handle)
            self.now = max(self.now, handle.when())
            handle._run()
        self.now = end


class FakeTransportConn:
    closing = False

    def __init__(self, loop):
        self.loop = loop
        self.sent = []

    def write_bytes(self, data):
        self.sent.append((self.loop.now, packets.decode_packet(data)))

    def flush(self):
        pass

    def close(self):
        self.closing = True


def make_session(loop):
    conn = ncp.Connection(loop, logger=logging.getLogger("test"), remote_hostname="x", timeout=60)
    transport = FakeTransportConn(loop)
    conn.connection_made(transport)
    return conn, transport


def keepalive_times(transport, start):
    return [
        round(t - start, 3) for t, p in transport.sent if p.packet_type == "LINK" and not p.fields
    ]


def test_keepalive_interval_and_postponement():
    loop = FakeLoop()
    conn, transport = make_session(loop)
    start = loop.now
    conn._apply_timeout(60)
    assert conn._timeout == 60
    loop.advance(80)
    assert keepalive_times(transport, start) == [39, 78]
    # an ordinary send pushes the next keep-alive a full interval back
    loop.advance(10)  # t = 90
    conn.send("DSPC", "TIME", X=1)
    loop.advance(50)  # t = 140
    assert keepalive_times(transport, start) == [39, 78, 129]
    p = transport.sent[0][1]
    assert (p.packet_id, p.timestamp.microsecond) == (0, 0)
    conn.close()


def test_keepalive_no_flood_when_granted_one_second():
    loop = FakeLoop()
    conn, transport = make_session(loop)
    conn._apply_timeout(1)
    loop.advance(10)
    assert len(keepalive_times(transport, loop.now)) == 10


def test_legacy_keepalive_immediate_then_every_3s_regardless_of_traffic():
    loop = FakeLoop()
    conn, transport = make_session(loop)
    start = loop.now
    conn._apply_timeout(0)
    assert conn._timeout == 60  # the local timeout stays
    loop.advance(2)
    conn.send("DSPC", "TIME", X=1)
    loop.advance(7)
    assert keepalive_times(transport, start) == [0, 3, 6, 9]
    conn.close()
    loop.advance(10)
    assert keepalive_times(transport, start) == [0, 3, 6, 9]


def test_blocking_client_on_shared_ioloop_manager(server_thread):
    from katcp.ioloop_manager import IOLoopManager

    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=5)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            a = blocking.connect(HOST, server_thread, timeout=5, ioloop_manager=manager)
            b = blocking.connect(HOST, server_thread, timeout=5, ioloop_manager=manager)
            assert a.request("X", "Y", N=1)["N"] == 1
            assert b.request("X", "Y", N=2)["N"] == 2
            a.close()
            # the shared loop keeps running for the other connection
            assert b.request("X", "Y", N=3)["N"] == 3
            b.close()
    finally:
        manager.stop()
        manager.join(timeout=5)


def test_reading_pauses_while_application_does_not_receive():
    from katcp.ncp import connection as ncp_connection

    total = ncp_connection.RECV_HIGH_WATER * 3

    async def flood(conn):
        await conn.recv()
        for i in range(total):
            conn.send("DATA", "SWEP", N=i)
        await conn.recv()

    async def main():
        server, port = await serve(flood)
        conn = await ncp.connect(HOST, port, timeout=5)
        conn.send("DATA", "GO")
        for _ in range(200):
            if conn._paused:
                break
            await asyncio.sleep(0.01)
        assert conn._paused
        assert len(conn._items) <= ncp_connection.RECV_HIGH_WATER * 2
        got = [(await conn.recv())["N"] for _ in range(total)]
        assert got == list(range(total)) and not conn._paused
        conn.close()
        await conn.wait_closed()
        await close_server(server)

    run(main())


def test_server_legacy_mode_for_client_without_link_param():
    """A pre-5.0 client offers no timeout: SCAR LINK=0, then keep-alives at once."""

    async def handler(conn):
        await conn.recv()

    async def main():
        server, port = await serve(handler)
        peer = RawPeer(*await asyncio.open_connection(HOST, port))
        assert (await peer.next_field())[0] == "HELO"
        peer.writer.write(pkt("LINK", "CCRE", CIW="old-client"))
        scar = await peer.next_field()
        assert scar[0] == "SCAR" and scar[2] == [("LINK", 0)]
        peer.writer.write(pkt("LINK", "CARE", CAR="old-client"))
        assert (await peer.next_field())[0] == "SCON"
        keepalive = await peer.next_packet()
        assert (keepalive.packet_type, keepalive.packet_id, keepalive.fields) == ("LINK", 0, [])
        peer.writer.close()
        await close_server(server)

    run(main())
