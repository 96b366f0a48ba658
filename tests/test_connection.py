"""Tests for katcp.connection over real loopback sockets."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import selectors
import socket
import ssl
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katcp.codec import HAVE_RUST_CODEC, KatcpSyntaxError, LineCodec, PyLineCodec, RustLineCodec
from katcp.connection import (
    Connection,
    MessageTooLong,
    WriteBufferOverflow,
    create_server,
    format_address,
    open_connection,
)
from katcp.core import Message
from katcp._transport.protocol import MAX_BURST

TIMEOUT = 10.0
CODECS = [PyLineCodec] + ([RustLineCodec] if HAVE_RUST_CODEC else [])


def req(name, *args, mid=None):
    return Message.request(name, *args, mid=mid)


def echo(conn, msg):
    """Reply ``!name ok args...`` to a request (the server side of most tests)."""
    conn.write(Message.reply_to_request(msg, "ok", *msg.arguments))


def log_error(conn, exc):
    conn.write(Message.inform("log", "error", str(exc)))


def names_args(messages):
    return [(m.name, m.arguments) for _, m in messages]


class Recorder:
    """Handler that records every callback and lets tests wait for conditions."""

    def __init__(self, on_message=None, on_error=None, on_made=None):
        self.made: list = []
        self.messages: list = []
        self.errors: list = []
        self.lost: list = []
        self._on_message = on_message
        self._on_error = on_error
        self._on_made = on_made
        self._changed = asyncio.Event()

    def _poke(self):
        self._changed.set()

    def connection_made(self, conn):
        self.made.append(conn)
        if self._on_made:
            self._on_made(conn)
        self._poke()

    def message_received(self, conn, msg):
        self.messages.append((conn, msg))
        self._poke()
        if self._on_message:
            self._on_message(conn, msg)

    def decode_error(self, conn, exc):
        self.errors.append((conn, exc))
        self._poke()
        if self._on_error:
            self._on_error(conn, exc)

    def connection_lost(self, conn, exc):
        self.lost.append((conn, exc))
        self._poke()

    async def wait(self, predicate, timeout=TIMEOUT):
        async def waiter():
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(waiter(), timeout)


def run(fn):
    """Run an async test function in a fresh event loop with an overall bound."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        async def bounded():
            return await asyncio.wait_for(fn(*args, **kwargs), TIMEOUT + 5)

        asyncio.run(bounded())

    return wrapper


def echo_handler():
    return Recorder(on_message=echo)


async def start(handler, codec_factory=LineCodec, **kwargs):
    server = await create_server(handler, codec_factory, "127.0.0.1", 0, **kwargs)
    port = server.sockets[0].getsockname()[1]
    return server, port


async def stop(server):
    server.close()
    await server.wait_closed()


async def read_lines(reader, n):
    lines = []
    for _ in range(n):
        lines.append(await asyncio.wait_for(reader.readline(), TIMEOUT))
    return lines


@pytest.mark.parametrize("codec_class", CODECS, ids=lambda c: c.backend)
def test_request_reply_between_two_connections(codec_class):
    async def main():
        shandler = echo_handler()
        server, port = await start(shandler, codec_factory=codec_class)
        chandler = Recorder()
        conn = await open_connection(chandler, codec_class(), "127.0.0.1", port, timeout=TIMEOUT)
        assert chandler.made == [conn]
        assert isinstance(conn, Connection)
        assert conn.peer == ("127.0.0.1", port)
        assert conn.address == f"127.0.0.1:{port}"
        conn.write(req("hello", "a b", mid=7))
        conn.write_bytes(b"?world x\n")
        await chandler.wait(lambda: len(chandler.messages) == 2)
        replies = [m for _, m in chandler.messages]
        assert [bytes(m) for m in replies] == [b"!hello[7] ok a\\_b", b"!world ok x"]
        sconn = shandler.made[0]
        assert sconn.peer == conn.transport.get_extra_info("sockname")[:2]
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        ssock = sconn.transport.get_extra_info("socket")  # both ends: asyncio sets it
        assert ssock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        conn.close()
        await conn.wait_closed()
        await shandler.wait(lambda: len(shandler.lost) == 1)
        assert shandler.lost == [(sconn, None)]
        assert chandler.lost == [(conn, None)]
        await stop(server)

    asyncio.run(asyncio.wait_for(main(), TIMEOUT + 5))


@run
async def test_many_connections_each_served_in_order():
    shandler = echo_handler()
    server, port = await start(shandler)
    n_conns, n_msgs = 40, 25
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n_conns)]
    for i, (_, writer) in enumerate(streams):
        writer.write(b"".join(b"?c%d[%d] m\n" % (i, j + 1) for j in range(n_msgs)))
    for i, (reader, writer) in enumerate(streams):
        lines = await read_lines(reader, n_msgs)
        assert lines == [b"!c%d[%d] ok m\n" % (i, j + 1) for j in range(n_msgs)]
        writer.close()
    await shandler.wait(lambda: len(shandler.lost) == n_conns)
    assert len(shandler.made) == n_conns
    assert all(exc is None for _, exc in shandler.lost)
    await stop(server)


@run
async def test_partial_writes_and_line_terminators():
    shandler = echo_handler()
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = b"?one\r\n?two\r?three 3\n\n  \n?four"
    for i in range(len(payload)):
        writer.write(payload[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0)
    writer.write(b"\n")
    lines = await read_lines(reader, 4)
    assert lines == [b"!one ok\n", b"!two ok\n", b"!three ok 3\n", b"!four ok\n"]
    assert names_args(shandler.messages) == [
        ("one", []), ("two", []), ("three", [b"3"]), ("four", [])
    ]
    writer.close()
    await stop(server)


@run
async def test_decode_error_keeps_connection():
    shandler = Recorder(on_message=echo, on_error=log_error)
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"?bad\x01name\n?fine\n")
    line = await asyncio.wait_for(reader.readline(), TIMEOUT)
    assert line.startswith(b"#log error ")
    assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"!fine ok\n"
    assert isinstance(shandler.errors[0][1], KatcpSyntaxError)
    assert not shandler.made[0].closing
    writer.close()
    await stop(server)


@run
async def test_oversized_line_closes_only_that_connection():
    shandler = Recorder(on_message=echo, on_error=log_error)
    server, port = await start(shandler, max_msg_size=1000)
    bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", port)
    good_reader, good_writer = await asyncio.open_connection("127.0.0.1", port)
    good_writer.write(b"?before\n")
    assert await asyncio.wait_for(good_reader.readline(), TIMEOUT) == b"!before ok\n"
    bad_writer.write(b"?ok line\n?" + b"x" * 5000)
    assert await asyncio.wait_for(bad_reader.readline(), TIMEOUT) == b"!ok ok line\n"
    log = await asyncio.wait_for(bad_reader.readline(), TIMEOUT)
    assert log.startswith(b"#log error Message\\_exceeds\\_maximum\\_message\\_size\\_of\\_1000")
    assert await asyncio.wait_for(bad_reader.read(), TIMEOUT) == b""  # closed after flushing
    errors = [exc for _, exc in shandler.errors]
    assert len(errors) == 1 and isinstance(errors[0], MessageTooLong)
    assert errors[0].limit == 1000
    await shandler.wait(lambda: len(shandler.lost) == 1)
    assert isinstance(shandler.lost[0][1], MessageTooLong)
    good_writer.write(b"?after\n")
    assert await asyncio.wait_for(good_reader.readline(), TIMEOUT) == b"!after ok\n"
    good_writer.close()
    bad_writer.close()
    await stop(server)


@run
async def test_line_at_limit_boundary():
    shandler = echo_handler()
    server, port = await start(shandler, max_msg_size=100)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"?" + b"y" * 98)  # 99 bytes + terminator = 100: allowed
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(b"\n")
    assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"!" + b"y" * 98 + b" ok\n"
    writer.write(b"?" + b"z" * 99)  # cannot be terminated within 100 bytes
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    await shandler.wait(lambda: len(shandler.lost) == 1)
    assert isinstance(shandler.errors[0][1], MessageTooLong)
    writer.close()
    await stop(server)


@run
async def test_slow_reader_is_aborted_others_served(caplog):
    chunk = b"#d " + b"d" * 4092 + b"\n"
    floods = []

    def on_message(conn, msg):
        if msg.name == "flood":
            floods.append(conn)
        else:
            echo(conn, msg)

    def on_made(conn):
        sock = conn.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)

    shandler = Recorder(on_message=on_message, on_made=on_made)
    server, port = await start(shandler, max_write_buffer_size=256 * 1024)
    # The slow reader: tiny receive buffer and it never reads.
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(slow, ("127.0.0.1", port))
    await loop.sock_sendall(slow, b"?flood\n")
    good_reader, good_writer = await asyncio.open_connection("127.0.0.1", port)
    await shandler.wait(lambda: len(floods) == 1)
    slow_conn = floods[0]
    # Push output at the slow reader, 64 KiB per loop iteration, bounded in count.
    with caplog.at_level(logging.WARNING, logger="katcp.connection"):
        for _ in range(400):
            if slow_conn.closing:
                break
            for _ in range(16):
                slow_conn.write_bytes(chunk)
            await asyncio.sleep(0)
    assert slow_conn.closing
    assert "Aborting connection" in caplog.text
    await shandler.wait(lambda: any(c is slow_conn for c, _ in shandler.lost))
    exc = [e for c, e in shandler.lost if c is slow_conn][0]
    assert isinstance(exc, WriteBufferOverflow)
    assert exc.limit == 256 * 1024
    assert "262144" in str(exc)
    # Everyone else is still served.
    good_writer.write(b"?still-there\n")
    assert await asyncio.wait_for(good_reader.readline(), TIMEOUT) == b"!still-there ok\n"
    slow.close()
    good_writer.close()
    await stop(server)


class CountingTransport:
    """Wraps an asyncio transport to count write calls (the socket stays real)."""

    def __init__(self, transport):
        self._transport = transport
        self.writes: list = []

    def write(self, data):
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


@run
async def test_writes_in_one_iteration_are_coalesced():
    shandler = Recorder()
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    await shandler.wait(lambda: len(shandler.made) == 1)
    conn = shandler.made[0]
    counting = CountingTransport(conn.transport)
    conn.transport = counting
    for i in range(50):
        conn.write(Message.inform("line", i))
    conn.write_bytes(b"#raw\n")
    assert counting.writes == []  # nothing sent until the end of the iteration
    assert conn.get_write_buffer_size() > 0
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(counting.writes) == 1
    expected = b"".join(b"#line %d\n" % i for i in range(50)) + b"#raw\n"
    assert counting.writes[0] == expected
    lines = await read_lines(reader, 51)
    assert b"".join(lines) == expected
    # A large pending amount is flushed at once, without waiting for the iteration's end.
    conn.write_bytes(b"#" + b"q" * 100_000 + b"\n")
    assert len(counting.writes) == 2
    assert len(await asyncio.wait_for(reader.readline(), TIMEOUT)) == 100_002
    writer.close()
    await stop(server)


@run
async def test_replies_to_pipelined_requests_are_coalesced():
    counting = []

    def on_made(conn):
        counting.append(CountingTransport(conn.transport))
        conn.transport = counting[-1]

    shandler = Recorder(on_message=echo, on_made=on_made)
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(b"?r[%d]\n" % i for i in range(1, 101)))
    lines = await read_lines(reader, 100)
    assert lines == [b"!r[%d] ok\n" % i for i in range(1, 101)]
    # 100 requests arrive in one or a few reads; replies are batched per read.
    assert len(counting[0].writes) < 100
    writer.close()
    await stop(server)


@run
async def test_handler_exceptions_are_logged_and_connection_survives(caplog):
    calls = []

    def on_message(conn, msg):
        calls.append(msg.name)
        if msg.name == "boom":
            raise RuntimeError("handler exploded")
        echo(conn, msg)

    shandler = Recorder(on_message=on_message)
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with caplog.at_level(logging.ERROR, logger="katcp.connection"):
        writer.write(b"?boom\n?after\n")
        assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"!after ok\n"
    assert calls == ["boom", "after"]
    assert "handler exploded" in caplog.text
    writer.close()
    await stop(server)


class ExplodingHandler:
    def __init__(self):
        self.lost = asyncio.Event()

    def connection_made(self, conn):
        raise RuntimeError("made exploded")

    def message_received(self, conn, msg):
        echo(conn, msg)

    def decode_error(self, conn, exc):
        raise RuntimeError("decode exploded")

    def connection_lost(self, conn, exc):
        self.lost.set()
        raise RuntimeError("lost exploded")


@run
async def test_every_callback_may_raise(caplog):
    handler = ExplodingHandler()
    server, port = await start(handler)
    with caplog.at_level(logging.ERROR, logger="katcp.connection"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"?bad\x01\n?ok\n")
        assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"!ok ok\n"
        writer.close()
        await asyncio.wait_for(handler.lost.wait(), TIMEOUT)
    for text in ("made exploded", "decode exploded", "lost exploded"):
        assert text in caplog.text
    await stop(server)


class RaisingCodec(PyLineCodec):
    def feed(self, data):
        if b"explode" in data:
            raise RuntimeError("codec exploded")
        return super().feed(data)


@run
async def test_codec_exception_closes_connection(caplog):
    shandler = echo_handler()
    server, port = await start(shandler, codec_factory=RaisingCodec)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with caplog.at_level(logging.ERROR, logger="katcp.connection"):
        writer.write(b"?explode\n")
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    await shandler.wait(lambda: len(shandler.lost) == 1)
    assert isinstance(shandler.lost[0][1], RuntimeError)
    assert "codec exploded" in caplog.text
    writer.close()
    await stop(server)


@run
async def test_close_abort_and_lost_called_once():
    shandler = Recorder()
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await shandler.wait(lambda: len(shandler.made) == 1)
    conn = shandler.made[0]
    conn.write(Message.inform("first"))
    conn.close()
    assert conn.closing
    conn.close()  # idempotent
    conn.write(Message.inform("ignored"))  # writes after close are dropped
    conn.write_bytes(b"#ignored-too\n")
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"#first\n"
    await conn.wait_closed()
    await conn.wait_closed()  # returns at once when already closed
    conn.abort()  # abort after the connection is gone: nothing happens
    assert [c for c, _ in shandler.lost] == [conn]
    writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await shandler.wait(lambda: len(shandler.made) == 2)
    conn2 = shandler.made[1]
    conn2.write(Message.inform("never-sent"))
    conn2.abort()
    conn2.abort()
    conn2.close()
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    await conn2.wait_closed()
    await asyncio.sleep(0.01)
    assert [c for c, _ in shandler.lost] == [conn, conn2]
    assert shandler.lost[1][1] is None
    writer.close()
    await stop(server)


@run
async def test_close_sends_everything_written():
    shandler = Recorder()
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await shandler.wait(lambda: len(shandler.made) == 1)
    conn = shandler.made[0]
    for i in range(5000):
        conn.write(Message.inform("payload", i))
    conn.close()
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    assert data == b"".join(b"#payload %d\n" % i for i in range(5000))
    await conn.wait_closed()
    assert shandler.lost == [(conn, None)]
    writer.close()
    await stop(server)


@run
async def test_wait_closed_from_several_waiters_and_peer_close():
    shandler = Recorder()
    server, port = await start(shandler)
    chandler = Recorder()
    conn = await open_connection(chandler, LineCodec(), "127.0.0.1", port)
    waiters = [asyncio.ensure_future(conn.wait_closed()) for _ in range(3)]
    await asyncio.sleep(0)
    await shandler.wait(lambda: len(shandler.made) == 1)
    shandler.made[0].close()  # the server side closes; the client notices
    await asyncio.wait_for(asyncio.gather(*waiters), TIMEOUT)
    assert chandler.lost == [(conn, None)]
    assert conn.closing
    await stop(server)


@run
async def test_cancelled_wait_closed_does_not_break_others():
    shandler = Recorder()
    server, port = await start(shandler)
    chandler = Recorder()
    conn = await open_connection(chandler, LineCodec(), "127.0.0.1", port)
    first = asyncio.ensure_future(conn.wait_closed())
    await asyncio.sleep(0)
    first.cancel()
    second = asyncio.ensure_future(conn.wait_closed())
    conn.close()
    await asyncio.wait_for(second, TIMEOUT)
    assert first.cancelled()
    await stop(server)


@run
async def test_half_close_gets_replies_then_close():
    shandler = echo_handler()
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"?a\n?b\n")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    assert data == b"!a ok\n!b ok\n"
    await shandler.wait(lambda: len(shandler.lost) == 1)
    writer.close()
    await stop(server)


@run
async def test_handler_may_close_in_connection_made():
    shandler = Recorder(on_made=lambda conn: (conn.write_bytes(b"#go-away\n"), conn.close()))
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"#go-away\n"
    await shandler.wait(lambda: len(shandler.lost) == 1)
    writer.close()
    await stop(server)


@run
async def test_pause_and_resume_reading():
    shandler = echo_handler()
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await shandler.wait(lambda: len(shandler.made) == 1)
    conn = shandler.made[0]
    conn.pause_reading()
    writer.write(b"?held\n")
    await writer.drain()
    await asyncio.sleep(0.05)
    assert shandler.messages == []
    conn.resume_reading()
    assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"!held ok\n"
    writer.close()
    await stop(server)


def _have_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _have_ipv6(), reason="IPv6 loopback (::1) not available")
@run
async def test_ipv6_peer_address():
    shandler = echo_handler()
    server = await create_server(shandler, LineCodec, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    chandler = Recorder()
    conn = await open_connection(chandler, LineCodec(), "::1", port)
    assert conn.peer == ("::1", port)
    assert conn.address == f"[::1]:{port}"
    conn.write(req("v6"))
    await chandler.wait(lambda: chandler.messages)
    assert bytes(chandler.messages[0][1]) == b"!v6 ok"
    sconn = shandler.made[0]
    assert sconn.address.startswith("[::1]:")
    assert sconn.peer[0] == "::1"
    conn.close()
    await conn.wait_closed()
    await stop(server)


def test_format_address():
    assert format_address(("10.0.0.1", 7147)) == "10.0.0.1:7147"
    assert format_address(("fe80::1", 7147, 0, 2)) == "[fe80::1]:7147"
    assert format_address(None) == "None"


@run
async def test_open_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    handler = Recorder()
    with pytest.raises(OSError):
        await open_connection(handler, LineCodec(), "127.0.0.1", port, timeout=TIMEOUT)
    assert handler.made == [] and handler.lost == []


@run
async def test_open_connection_timeout():
    # A listener that accepts TCP but never answers the TLS handshake.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    ctx = ssl.create_default_context()
    handler = Recorder()
    try:
        with pytest.raises(asyncio.TimeoutError):
            await open_connection(handler, LineCodec(), "127.0.0.1", port, ssl=ctx, timeout=0.2)
    finally:
        listener.close()
    assert handler.made == []


def test_ssl_argument_type_checked():
    async def main():
        with pytest.raises(TypeError):
            await open_connection(Recorder(), LineCodec(), "127.0.0.1", 1, ssl="yes")

    asyncio.run(main())


def test_tls_round_trip(tls_contexts):
    async def main():
        server_ctx, client_ctx = tls_contexts
        shandler = echo_handler()
        server, port = await start(shandler, ssl=server_ctx)
        chandler = Recorder()
        conn = await open_connection(
            chandler, LineCodec(), "127.0.0.1", port, ssl=client_ctx, timeout=TIMEOUT
        )
        assert conn.transport.get_extra_info("ssl_object") is not None
        big = "t" * 200_000
        for i in range(20):
            conn.write(req("tls", i, mid=i + 1))
        conn.write(req("big", big))
        await chandler.wait(lambda: len(chandler.messages) == 21)
        replies = [bytes(m) for _, m in chandler.messages]
        assert replies[:20] == [b"!tls[%d] ok %d" % (i + 1, i) for i in range(20)]
        assert replies[20] == b"!big ok " + big.encode()
        assert conn.peer == ("127.0.0.1", port)
        # An untrusting client fails the handshake; the server carries on.
        with pytest.raises(ssl.SSLError):
            await open_connection(
                Recorder(), LineCodec(), "127.0.0.1", port,
                ssl=ssl.create_default_context(), timeout=TIMEOUT,
            )
        conn.write(req("again"))
        await chandler.wait(lambda: len(chandler.messages) == 22)
        conn.close()
        await conn.wait_closed()
        await shandler.wait(lambda: len(shandler.lost) == 1)
        assert chandler.lost == [(conn, None)]
        await stop(server)

    asyncio.run(asyncio.wait_for(main(), TIMEOUT + 5))


def test_tls_oversized_line_and_slow_reader(tls_contexts):
    async def main():
        server_ctx, client_ctx = tls_contexts
        shandler = Recorder(on_message=echo, on_error=log_error)
        server, port = await start(shandler, ssl=server_ctx, max_msg_size=500,
                                   max_write_buffer_size=100_000)
        chandler = Recorder()
        conn = await open_connection(chandler, LineCodec(), "127.0.0.1", port, ssl=client_ctx)
        conn.write_bytes(b"?" + b"x" * 2000)
        await conn.wait_closed()
        assert isinstance(shandler.errors[0][1], MessageTooLong)
        assert bytes(chandler.messages[0][1]).startswith(b"#log error Message")
        # A TLS peer that does not read gets aborted too.
        conn2 = await open_connection(Recorder(), LineCodec(), "127.0.0.1", port, ssl=client_ctx)
        conn2.pause_reading()
        await shandler.wait(lambda: len(shandler.made) == 2)
        sconn = shandler.made[1]
        for _ in range(2000):
            if sconn.closing:
                break
            sconn.write_bytes(b"#" + b"f" * 16382 + b"\n")
            await asyncio.sleep(0)
        await shandler.wait(lambda: len(shandler.lost) == 2)
        assert isinstance(shandler.lost[1][1], WriteBufferOverflow)
        conn2.abort()
        await stop(server)

    asyncio.run(asyncio.wait_for(main(), TIMEOUT + 5))


def test_connection_is_small():
    # No per-instance __dict__, and the receive buffer is shared per loop: idle
    # connections stay cheap.
    loop = asyncio.new_event_loop()
    try:
        conn = Connection(Recorder.__new__(Recorder), LineCodec(), loop)
        assert not hasattr(conn, "__dict__")
        other = Connection(Recorder.__new__(Recorder), LineCodec(), loop)
        assert conn.get_buffer(-1) is other.get_buffer(-1)
        assert len(conn.get_buffer(-1)) >= 4096
        assert conn.get_write_buffer_size() == 0
        assert "not connected" in repr(conn)
    finally:
        loop.close()
    gc.collect()


class LengthPrefixCodec:
    """A binary codec (4-byte big-endian length + payload): the transport is codec-agnostic."""

    def __init__(self):
        self._buf = bytearray()

    @property
    def buffer_size(self):
        return len(self._buf)

    def feed(self, data):
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            size = int.from_bytes(self._buf[:4], "big")
            if len(self._buf) < 4 + size:
                break
            out.append(bytes(self._buf[4 : 4 + size]))
            del self._buf[: 4 + size]
        return out

    def encode(self, payload):
        return len(payload).to_bytes(4, "big") + payload


@run
async def test_binary_codec_and_size_limit():
    def on_message(conn, payload):
        conn.write(payload[::-1])

    shandler = Recorder(on_message=on_message, on_error=lambda c, e: c.write(b"too long"))
    server, port = await start(shandler, codec_factory=LengthPrefixCodec, max_msg_size=1000)
    chandler = Recorder()
    conn = await open_connection(chandler, LengthPrefixCodec(), "127.0.0.1", port)
    conn.write(b"\n\r\x00abc\n")
    await chandler.wait(lambda: chandler.messages)
    assert chandler.messages[0][1] == b"\ncba\x00\r\n"
    # An oversized packet whose chunks happen to end in newline bytes is still caught.
    conn.write_bytes((5000).to_bytes(4, "big") + b"\n" * 600)
    conn.flush()
    await asyncio.sleep(0.05)
    conn.write_bytes(b"\n" * 600)
    await chandler.wait(lambda: chandler.lost)
    assert [m for _, m in chandler.messages][1:] == [b"too long"]
    assert isinstance(shandler.errors[0][1], MessageTooLong)
    await stop(server)


class FakeTransport(asyncio.Transport):
    """In-memory transport to drive the protocol API directly (for property tests)."""

    def __init__(self):
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 4242)}.get(name, default)

    def write(self, data):
        self.out += data

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True

    def get_write_buffer_size(self):
        return 0


_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8).filter(
    lambda s: s[0] != "-"
)
_arg = st.binary(max_size=12)
_message = st.tuples(st.sampled_from([Message.REQUEST, Message.INFORM]), _name,
                     st.lists(_arg, max_size=4))


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(_message, min_size=1, max_size=15), cuts=st.lists(st.integers(0, 400)),
       crlf=st.booleans())
def test_any_chunking_gives_the_same_messages(messages, cuts, crlf):
    msgs = [Message(mtype, name, list(args)) for mtype, name, args in messages]
    stream = b"".join(bytes(m) + (b"\r\n" if crlf else b"\n") for m in msgs)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # Python 3.9's asyncio.Event binds to the current loop
    try:
        handler = Recorder()
        conn = Connection(handler, LineCodec(), loop, max_msg_size=10_000)
        conn.connection_made(FakeTransport())
        for a, b in zip(points, points[1:]):
            chunk = stream[a:b]
            if not chunk:
                continue
            buf = conn.get_buffer(len(chunk))
            buf[: len(chunk)] = chunk
            conn.buffer_updated(len(chunk))
        assert [bytes(m) for _, m in handler.messages] == [bytes(m) for m in msgs]
        assert handler.errors == []
        assert conn.address == "127.0.0.1:4242"
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@run
async def test_peer_reset_reports_the_error():
    shandler = echo_handler()
    server, port = await start(shandler)
    sock = socket.create_connection(("127.0.0.1", port))
    await shandler.wait(lambda: shandler.made)
    conn = shandler.made[0]
    # SO_LINGER with a zero timeout: close() sends a reset instead of a FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    await conn.wait_closed()
    assert len(shandler.lost) == 1
    assert isinstance(shandler.lost[0][1], ConnectionResetError)
    assert conn.closing
    assert conn.get_write_buffer_size() == 0
    conn.write(req("after-loss"))  # ignored, no error
    await stop(server)


@run
async def test_create_server_start_serving_false():
    shandler = echo_handler()
    server, port = await start(shandler, start_serving=False, max_msg_size=64)
    assert not server.is_serving()
    chandler = Recorder()
    with pytest.raises(OSError):  # bound, not listening yet: refused
        await open_connection(chandler, LineCodec(), "127.0.0.1", port, timeout=TIMEOUT)
    await server.start_serving()
    assert server.is_serving()
    conn = await open_connection(chandler, LineCodec(), "127.0.0.1", port, timeout=TIMEOUT)
    conn.write(req("hello", "x"))
    await chandler.wait(lambda: len(chandler.messages) == 1)
    assert bytes(chandler.messages[0][1]) == b"!hello ok x"
    # The server's connections got the options given to create_server.
    assert shandler.made[0].max_msg_size == 64
    conn.close()
    await conn.wait_closed()
    await stop(server)


@run
async def test_greeting_written_in_connection_made_is_sent_at_once():
    loop = asyncio.get_running_loop()
    counting, seen_next = [], []

    def on_made(conn):
        counting.append(CountingTransport(conn.transport))
        conn.transport = counting[-1]
        # Scheduled before the writes: runs before any flush the writes could schedule.
        loop.call_soon(lambda: seen_next.append(list(counting[-1].writes)))
        conn.write(Message.inform("version-connect", "katcp-protocol", "5.0-IM"))
        conn.write(Message.inform("version-connect", "katcp-device", "x"))

    shandler = Recorder(on_made=on_made)
    server, port = await start(shandler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = await read_lines(reader, 2)
    assert lines == [b"#version-connect katcp-protocol 5.0-IM\n",
                     b"#version-connect katcp-device x\n"]
    # Handed to the transport in one write when connection_made returned.
    assert seen_next == [[b"".join(lines)]]
    writer.close()
    await stop(server)


class PausableTransport(FakeTransport):
    """FakeTransport that records pause_reading/resume_reading."""

    def __init__(self):
        super().__init__()
        self.reading = True
        self.calls: list = []

    def pause_reading(self):
        self.calls.append("pause")
        self.reading = False

    def resume_reading(self):
        self.calls.append("resume")
        self.reading = True


@run
async def test_one_read_is_handed_over_in_bursts_one_per_loop_iteration():
    # A 64 KiB read holds thousands of pipelined requests: handing them all over at once
    # kept every other client of the loop waiting for the whole lot.
    loop = asyncio.get_running_loop()
    rec = Recorder()
    conn = Connection(rec, LineCodec(), loop)
    transport = PausableTransport()
    conn.connection_made(transport)
    n = 3 * MAX_BURST + 10
    conn.data_received(b"".join(b"?r%d\n" % i for i in range(n)))
    assert len(rec.messages) == MAX_BURST
    assert not transport.reading  # nothing more is read while messages are held
    await asyncio.sleep(0)
    assert len(rec.messages) == 2 * MAX_BURST
    await rec.wait(lambda: len(rec.messages) == n)
    await asyncio.sleep(0)
    assert transport.reading and transport.calls == ["pause", "resume"]
    assert [m.name for _c, m in rec.messages] == [f"r{i}" for i in range(n)]


@run
async def test_handler_pause_holds_back_messages_already_read():
    loop = asyncio.get_running_loop()
    rec = Recorder(on_message=lambda conn, msg: msg.name == "r4" and conn.pause_reading())
    conn = Connection(rec, LineCodec(), loop)
    transport = PausableTransport()
    conn.connection_made(transport)
    conn.data_received(b"".join(b"?r%d\n" % i for i in range(10)))
    await asyncio.sleep(0.01)
    assert [m.name for _c, m in rec.messages] == ["r0", "r1", "r2", "r3", "r4"]
    conn.resume_reading()
    await rec.wait(lambda: len(rec.messages) == 10)
    await asyncio.sleep(0)
    assert transport.reading


def _holding(n):
    """A connection that was handed ``n`` requests in one read (more than one burst)."""
    rec = Recorder()
    conn = Connection(rec, LineCodec(), asyncio.get_running_loop())
    conn.connection_made(PausableTransport())
    conn.data_received(b"".join(b"?r%d\n" % i for i in range(n)))
    return rec, conn


@run
async def test_read_into_buffer_while_messages_are_held_goes_after_them():
    # buffer_updated() takes a shorter way when nothing is held; a transport that reads
    # after pause_reading() must still see its messages follow the held ones.
    n = MAX_BURST + 5
    rec, conn = _holding(n)
    assert len(rec.messages) == MAX_BURST
    late = b"?late\n"
    buf = conn.get_buffer(len(late))
    buf[:len(late)] = late
    conn.buffer_updated(len(late))
    await rec.wait(lambda: len(rec.messages) == n + 1)
    assert [m.name for _c, m in rec.messages] == [f"r{i}" for i in range(n)] + ["late"]


@run
async def test_held_messages_are_handed_over_on_eof():
    n = MAX_BURST + 5
    rec, conn = _holding(n)
    conn.eof_received()  # a client that sends its requests and shuts its side down
    assert len(rec.messages) == n


class _WritesTransport(FakeTransport):
    """FakeTransport that keeps each write apart."""

    def __init__(self):
        super().__init__()
        self.writes: list = []

    def write(self, data):
        super().write(data)
        self.writes.append(bytes(data))


@run
async def test_writes_to_another_connection_leave_with_the_read():
    # A proxy answering on another connection (the manager relaying a device's replies to
    # its client): what it writes there during a read goes out in one transport write when
    # the read has been handed over, not one loop iteration later.
    loop = asyncio.get_running_loop()
    client = Connection(Recorder(), LineCodec(), loop)
    client_transport = _WritesTransport()
    client.connection_made(client_transport)

    def relay(conn, msg):
        conn.flush_with_receive(client)
        client.write(Message.reply(msg.name, "ok"))

    upstream = Connection(Recorder(on_message=relay), LineCodec(), loop)
    upstream.connection_made(FakeTransport())
    upstream.data_received(b"!a ok\n!b ok\n!c ok\n")
    assert client_transport.writes == [b"!a ok\n!b ok\n!c ok\n"]
    # Outside a read it changes nothing: the write leaves at the end of the iteration.
    upstream.flush_with_receive(client)
    client.write(Message.reply("d", "ok"))
    assert len(client_transport.writes) == 1
    await asyncio.sleep(0)
    assert client_transport.writes[1:] == [b"!d ok\n"]


class CountingSelector(selectors.DefaultSelector):
    """An event loop's selector that counts its polls (one per loop iteration)."""

    polls = 0

    def select(self, timeout=None):
        self.polls += 1
        return super().select(timeout)


def test_write_now_costs_no_extra_loop_iteration():
    # write_now sends at once; it used to schedule a flush and cancel it, which still made
    # the loop poll once more (a cancelled callback counts as ready work).
    selector = CountingSelector()
    loop = asyncio.SelectorEventLoop(selector)

    async def main():
        shandler = Recorder()
        server, port = await start(shandler)
        peer = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        try:
            await shandler.wait(lambda: len(shandler.made) == 1)
            conn = shandler.made[0]
            await asyncio.sleep(0)
            before = selector.polls
            await asyncio.sleep(0.05)
            sleeping = selector.polls - before  # (the timer's poll, the task's wake-up)
            before = selector.polls
            conn.write_now(b"#now\n")
            await asyncio.sleep(0.05)
            assert selector.polls - before == sleeping
            assert peer.recv(100) == b"#now\n"
        finally:
            peer.close()
            await stop(server)

    try:
        loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT))
    finally:
        loop.close()


def test_receive_buffer_of_a_gone_loop_goes_to_the_next_loop_only():
    """A loop's receive buffer is its own while it lives, and is handed to a new loop once
    it has been garbage-collected (a short-lived client loop need not zero a fresh one)."""
    from katcp._transport import protocol

    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:
        buf = protocol._buffer_for_loop(first)
        assert protocol._buffer_for_loop(first) is buf
        assert protocol._buffer_for_loop(second) is not buf  # both alive: one each
    finally:
        first.close()
        second.close()
    del first
    gc.collect()
    spares = list(protocol._spare_buffers)
    assert any(spare is buf for spare in spares)
    third = asyncio.new_event_loop()
    try:
        taken = protocol._buffer_for_loop(third)
        assert any(spare is taken for spare in spares)  # a spare, not a fresh one
        assert not any(spare is taken for spare in protocol._spare_buffers)
    finally:
        third.close()
