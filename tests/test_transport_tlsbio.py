"""The in-memory TLS layer (katcp._transport.tlsbio) over real loopback sockets.

Peers that the regular client cannot play are driven by hand here: a raw socket with an
:class:`ssl.SSLObject` of its own (in a thread), which can feed records byte by byte, send
garbage, never speak, or read the server's ``close_notify``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading

import pytest

from katcp._aio import lowlevel
from katcp._security.access import AccessControl
from katcp._security.passwords import ScryptParams
from katcp._security.tls import client_context, server_context
from katcp._security.userstore import UserStore
from katcp._server.connections import KATCPServer
from katcp._transport.protocol import Connection, WriteBufferOverflow
from katcp._transport.tlsbio import TLSHandshakeTimeout, TLSTransport
from katcp.client import BlockingClient
from katcp.codec import LineCodec
from katcp.connection import create_server, open_connection
from katcp.core import Message
from katcp.server import DeviceServer

from _security_pki import make_pki
from test_security_tls import Handler

TIMEOUT = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT * 3))


class RawTLSClient:
    """A blocking TLS client on a raw socket, driven by hand (use from a thread)."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionError("closed during the handshake") from None

    def send_bytewise(self, plaintext: bytes) -> int:
        """Send the records of ``plaintext`` one byte per segment; return the count."""
        self.obj.write(plaintext)
        records = self.outgoing.read()
        for i in range(len(records)):
            self.sock.send(records[i:i + 1])
        return len(records)

    def send(self, plaintext: bytes) -> None:
        self.obj.write(plaintext)
        self._flush()

    def read_until(self, terminator: bytes) -> bytes:
        """Plaintext up to and including ``terminator`` (or up to the end of the stream)."""
        got = b""
        while terminator not in got:
            try:
                data = self.obj.read(65536)
            except ssl.SSLWantReadError:
                if not self._fill():
                    break
                continue
            if not data:
                break
            got += data
        return got

    def read_to_close(self) -> tuple:
        """(plaintext, how it ended: "close_notify" or "eof") until the server closes."""
        got = b""
        while True:
            try:
                data = self.obj.read(65536)
            except ssl.SSLWantReadError:
                if not self._fill():
                    return got, "eof"
                continue
            except ssl.SSLZeroReturnError:
                return got, "close_notify"
            except ssl.SSLEOFError:
                return got, "eof"
            if not data:
                return got, "close_notify"
            got += data

    def close_notify(self) -> None:
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def close(self) -> None:
        self.sock.close()


async def _serve(pki, handler, **kwargs):
    ctx = server_context(pki.server_cert, pki.server_key)
    server = await create_server(handler, LineCodec, "127.0.0.1", 0, ssl=ctx, **kwargs)
    return server, server.sockets[0].getsockname()[1]


async def _stop(server):
    server.close()
    await server.wait_closed()


async def _dial(pki, port, handler, **kwargs):
    return await open_connection(handler, LineCodec(), "127.0.0.1", port,
                                 ssl=client_context(cafile=pki.ca_cert), timeout=TIMEOUT,
                                 **kwargs)


async def _finish(conn, server):
    conn.close()
    await conn.wait_closed()
    await _stop(server)


def test_records_fed_byte_by_byte(pki):
    async def main():
        shandler = Handler(echo=True)
        server, port = await _serve(pki, shandler)

        def client():
            c = RawTLSClient(port, client_context(cafile=pki.ca_cert))
            try:
                c.handshake()
                count = c.send_bytewise(b"?one a\n?two b\n?three " + b"c" * 40000 + b"\n")
                assert count > 40000  # several records, split at every byte
                return c.read_until(b"!three ok")
            finally:
                c.close()

        got = await asyncio.to_thread(client)
        assert got.startswith(b"!one ok a\n!two ok b\n!three ok c")
        await shandler.wait(lambda: len(shandler.messages) == 3)
        assert [m.name for m in shandler.messages] == ["one", "two", "three"]
        assert shandler.messages[2].arguments == [b"c" * 40000]
        await _stop(server)

    run(main())


def test_large_messages_both_ways(pki):
    async def main():
        shandler = Handler(echo=True)
        server, port = await _serve(pki, shandler)
        chandler = Handler()
        conn = await _dial(pki, port, chandler)
        big = bytes(range(33, 127)) * 6000  # 564 KB: dozens of 16 KiB records
        for i in range(3):
            conn.write(Message.request("big", str(i), big))
        await chandler.wait(lambda: len(chandler.messages) == 3)
        assert [m.arguments for m in chandler.messages] == [
            [b"ok", str(i).encode(), big] for i in range(3)]
        await _finish(conn, server)

    run(main())


def test_server_close_sends_close_notify_after_its_output(pki):
    async def main():
        class Closer(Handler):
            def message_received(self, conn, msg):
                super().message_received(conn, msg)
                conn.write(Message.reply_to_request(msg, "ok"))
                conn.close()

        shandler = Closer()
        server, port = await _serve(pki, shandler)

        def client():
            c = RawTLSClient(port, client_context(cafile=pki.ca_cert))
            try:
                c.handshake()
                c.send(b"?bye\n")
                return c.read_to_close()
            finally:
                c.close()

        got, how = await asyncio.to_thread(client)
        assert (got, how) == (b"!bye ok\n", "close_notify")
        await shandler.wait(lambda: shandler.lost)
        assert shandler.lost == [None]
        await _stop(server)

    run(main())


def test_client_close_notify_is_a_clean_end(pki):
    async def main():
        shandler = Handler(echo=True)
        server, port = await _serve(pki, shandler)

        def client():
            c = RawTLSClient(port, client_context(cafile=pki.ca_cert))
            try:
                c.handshake()
                c.send(b"?last\n")
                c.close_notify()  # right behind the request, maybe in the same segment
                return c.read_to_close()
            finally:
                c.close()

        got, how = await asyncio.to_thread(client)
        # The request sent before close_notify is still answered, then ours comes.
        assert (got, how) == (b"!last ok\n", "close_notify")
        await shandler.wait(lambda: shandler.lost)
        assert [m.name for m in shandler.messages] == ["last"]
        assert shandler.lost == [None]
        await _stop(server)

    run(main())


def test_silent_peer_dropped_after_handshake_timeout(pki):
    async def main():
        shandler = Handler()
        server, port = await _serve(pki, shandler, tls_handshake_timeout=0.2)

        def silent():
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                return sock.recv(100)  # a plaintext client waiting for a greeting

        assert await asyncio.to_thread(silent) == b""
        assert shandler.made == [] and shandler.lost == []
        await _stop(server)

    run(main())


@pytest.mark.parametrize("garbage", [b"?watchdog\n", b"\x16\x03\x01\x00\x05hello" * 3,
                                     b"\x00" * 10000])
def test_garbage_instead_of_a_handshake(pki, garbage):
    async def main():
        shandler = Handler()
        server, port = await _serve(pki, shandler)

        def client():
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                sock.sendall(garbage)
                got = b""
                try:
                    while True:
                        data = sock.recv(100)
                        if not data:
                            return got
                        got += data
                except ConnectionResetError:
                    return got

        got = await asyncio.to_thread(client)
        assert not got or got[0] == 0x15  # nothing, or a TLS alert record
        assert shandler.made == []
        # The server is fine afterwards.
        chandler = Handler()
        conn = await _dial(pki, port, chandler)
        conn.write(Message.request("ping"))
        conn.close()
        await shandler.wait(lambda: shandler.messages)
        await _stop(server)

    run(main())


def test_client_handshake_timeout_without_connect_timeout(pki, monkeypatch):
    async def main():
        from katcp._transport import dial
        monkeypatch.setattr(dial, "CLIENT_HANDSHAKE_TIMEOUT", 0.2)
        accepted: list = []

        def silent_server(sock):
            conn, _ = sock.accept()
            accepted.append(conn)
            conn.settimeout(TIMEOUT)
            try:
                conn.recv(65536)  # the ClientHello, never answered
                return conn.recv(100)  # then the client gives up
            finally:
                conn.close()

        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(TIMEOUT)
            port = listener.getsockname()[1]
            task = asyncio.ensure_future(asyncio.to_thread(silent_server, listener))
            with pytest.raises(TLSHandshakeTimeout):
                await open_connection(Handler(), LineCodec(), "127.0.0.1", port,
                                      ssl=client_context(cafile=pki.ca_cert))
            assert await task == b""

    run(main())


def test_extra_info(pki):
    async def main():
        shandler = Handler(echo=True)
        ctx = server_context(pki.server_cert, pki.server_key, client_ca=pki.ca_cert)
        server = await create_server(shandler, LineCodec, "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        cctx = client_context(cafile=pki.ca_cert, certfile=pki.alice_cert,
                              keyfile=pki.alice_key)
        conn = await open_connection(Handler(), LineCodec(), "127.0.0.1", port, ssl=cctx,
                                     timeout=TIMEOUT)
        await shandler.wait(lambda: shandler.made)
        for c, peer_cn in ((conn, "localhost"), (shandler.made[0], "alice")):
            t = c.transport
            assert isinstance(t, TLSTransport)
            assert isinstance(t.get_extra_info("ssl_object"), ssl.SSLObject)
            cert = t.get_extra_info("peercert")
            assert ("commonName", peer_cn) in [rdn[0] for rdn in cert["subject"]]
            assert t.get_extra_info("cipher")[1] in ("TLSv1.2", "TLSv1.3")
            assert isinstance(t.get_extra_info("sslcontext"), ssl.SSLContext)
            assert t.get_extra_info("peername")[0] == "127.0.0.1"
            assert t.get_extra_info("socket") is not None
            assert t.get_extra_info("nothing", 42) == 42
            assert not t.can_write_eof()
        assert conn.transport.get_extra_info("sockname") == \
            shandler.made[0].transport.get_extra_info("peername")
        await _finish(conn, server)

    run(main())


def test_tls12_round_trip(pki):
    async def main():
        shandler = Handler(echo=True)
        ctx = server_context(pki.server_cert, pki.server_key)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        server = await create_server(shandler, LineCodec, "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        chandler = Handler()
        conn = await _dial(pki, port, chandler)
        assert conn.transport.get_extra_info("cipher")[1] == "TLSv1.2"
        for i in range(20):
            conn.write(Message.request("n", str(i)))
        await chandler.wait(lambda: len(chandler.messages) == 20)
        await _finish(conn, server)

    run(main())


def test_write_buffer_limit_aborts_a_peer_that_does_not_read(pki):
    async def main():
        class Flooder(Handler):
            def message_received(self, conn, msg):
                super().message_received(conn, msg)
                for _ in range(200):
                    conn.write(Message.inform("flood", "x" * 60000))

        shandler = Flooder()
        ctx = server_context(pki.server_cert, pki.server_key)
        server = await create_server(shandler, LineCodec, "127.0.0.1", 0, ssl=ctx,
                                     max_write_buffer_size=2**20)
        port = server.sockets[0].getsockname()[1]
        stop = threading.Event()

        def client():
            c = RawTLSClient(port, client_context(cafile=pki.ca_cert))
            try:
                c.handshake()
                c.send(b"?flood\n")
                stop.wait(TIMEOUT)  # never reads
            finally:
                c.close()

        task = asyncio.ensure_future(asyncio.to_thread(client))
        try:
            await shandler.wait(lambda: shandler.lost)
        finally:
            stop.set()
            await task
        assert isinstance(shandler.lost[0], WriteBufferOverflow)
        await _stop(server)

    run(main())


def test_flow_control_reaches_the_connection(pki, monkeypatch):
    async def main():
        shandler = Handler()
        server, port = await _serve(pki, shandler)
        events: list = []
        stop = threading.Event()

        def client():
            c = RawTLSClient(port, client_context(cafile=pki.ca_cert))
            try:
                c.handshake()
                c.send(b"?hello\n")
                stop.wait(TIMEOUT)
                return len(c.read_until(b"!done"))
            finally:
                c.close()

        task = asyncio.ensure_future(asyncio.to_thread(client))
        await shandler.wait(lambda: shandler.messages)
        conn = shandler.made[0]
        monkeypatch.setattr(Connection, "pause_writing",
                            lambda self: events.append("pause") if self is conn else None)
        monkeypatch.setattr(Connection, "resume_writing",
                            lambda self: events.append("resume") if self is conn else None)
        conn.transport.set_write_buffer_limits(high=65536)
        while "pause" not in events:  # the client does not read: the buffer fills
            conn.write(Message.inform("fill", "x" * 30000))
            conn.flush()
            await asyncio.sleep(0)
        assert conn.get_write_buffer_size() > 65536
        conn.write(Message.reply("done"))
        stop.set()  # the client reads it all: the buffer drains
        size = await task
        assert size > 65536
        await shandler.wait(lambda: "resume" in events)
        assert events == ["pause", "resume"]
        await _stop(server)

    run(main())


def test_direct_writes_from_threads_with_partial_sends(pki, monkeypatch):
    """Threads encrypt and send on the socket; a peer that stops reading forces partial
    sends, whose records go out first once it reads again: all arrive whole, in order."""
    queued: list = []
    original = TLSTransport.queue_records

    def queue_records(self, records):
        queued.append(len(records))
        original(self, records)

    monkeypatch.setattr(TLSTransport, "queue_records", queue_records)
    n, senders, pad = 150, 3, "y" * 30000  # 13.5 MB: more than the kernel buffers hold

    async def main():
        class Paused(Handler):
            def connection_made(self, conn):
                super().connection_made(conn)
                conn.pause_reading()

        shandler = Paused()
        server, port = await _serve(pki, shandler)
        conn = await _dial(pki, port, Handler(), max_write_buffer_size=2**26)
        conn.enable_threadsafe_writes()
        assert (conn._direct_sock is not None) is lowlevel.USE_PRIVATE

        def sender(k):
            for i in range(n):
                conn.write_threadsafe(bytes(Message.request(f"t{k}", i, pad)) + b"\n")

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
        for t in threads:
            t.start()
        # The ioloop writes only once the threads are done: so the socket is first
        # filled by direct sends, and the first to find it full has a partial send.
        await asyncio.to_thread(lambda: [t.join(TIMEOUT) for t in threads])
        for i in range(n):
            conn.write(Message.request("loop", i))
            if i % 10 == 0:
                await asyncio.sleep(0)
        await shandler.wait(lambda: shandler.made)
        shandler.made[0].resume_reading()
        await shandler.wait(lambda: len(shandler.messages) == (senders + 1) * n)
        got: dict = {}
        for msg in shandler.messages:
            got.setdefault(msg.name, []).append(int(msg.arguments[0]))
            assert msg.name == "loop" or msg.arguments[1] == pad.encode()
        assert got == {name: list(range(n))
                       for name in ["loop"] + [f"t{k}" for k in range(senders)]}
        await _finish(conn, server)

    run(main())
    # The socket filled up: some records were handed to the ioloop.
    assert bool(queued) is lowlevel.USE_PRIVATE


class Instrument(DeviceServer):
    VERSION_INFO = ("instrument", 1, 0)
    BUILD_INFO = ("instrument", 1, 0, "")

    def setup_sensors(self):
        pass

    def request_echo(self, req, msg):
        """Reply with the arguments."""
        return req.make_reply("ok", *msg.arguments)


def _silent_client_is_dropped(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        return sock.recv(100)


def test_device_server_handshake_timeout_is_at_most_the_login_timeout(pki, tmp_path):
    store = UserStore(tmp_path / "users.db", params=ScryptParams(n=2**8))
    access = AccessControl(store, login_timeout=0.3)
    ctx = server_context(pki.server_cert, pki.server_key)
    plain = Instrument("127.0.0.1", 0, ssl=ctx)
    assert plain._server._tls_handshake_timeout() == KATCPServer.TLS_HANDSHAKE_TIMEOUT == 10
    server = Instrument("127.0.0.1", 0, ssl=ctx, users=access)
    assert server._server._tls_handshake_timeout() == 0.3
    server.start(timeout=TIMEOUT)
    try:
        # A plaintext client waiting for the greeting is dropped once 0.3 s have passed.
        assert _silent_client_is_dropped(server.bind_address[1]) == b""
    finally:
        server.stop()
        server.join(timeout=TIMEOUT)


def test_blocking_client_writes_directly_over_tls(pki):
    server = Instrument("127.0.0.1", 0, ssl=server_context(pki.server_cert, pki.server_key))
    server.start(timeout=TIMEOUT)
    client = BlockingClient(*server.bind_address, ssl=client_context(cafile=pki.ca_cert),
                            timeout=TIMEOUT)
    client.start()
    try:
        assert client.wait_protocol(TIMEOUT)
        for i in range(50):
            reply, _ = client.blocking_request(Message.request("echo", i, "z" * (i * 997)))
            assert reply.reply_ok() and reply.arguments[1:] == [str(i).encode(),
                                                                 b"z" * (i * 997)]
        conn = client._conn
        assert conn._encrypt is not None
        assert (conn._direct_sock is not None) is lowlevel.USE_PRIVATE
    finally:
        client.stop()
        client.join(TIMEOUT)
        server.stop()
        server.join(timeout=TIMEOUT)
