"""Connection.write_threadsafe: other threads writing on a connection, over loopback."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from katcp._aio import lowlevel
from katcp.codec import LineCodec
from katcp.connection import create_server, open_connection
from katcp.core import Message

TIMEOUT = 10.0


class Recorder:
    """Server-side handler recording the messages it receives."""

    def __init__(self):
        self.messages = []
        self.changed = asyncio.Event()

    def connection_made(self, conn):
        pass

    def message_received(self, conn, msg):
        self.messages.append(msg)
        self.changed.set()

    def decode_error(self, conn, exc):
        self.messages.append(exc)
        self.changed.set()

    def connection_lost(self, conn, exc):
        pass

    async def wait_count(self, n):
        async def waiter():
            while len(self.messages) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(waiter(), TIMEOUT)


class Quiet:
    """Client-side handler that ignores everything."""

    def connection_made(self, conn):
        pass

    def message_received(self, conn, msg):
        pass

    def decode_error(self, conn, exc):
        pass

    def connection_lost(self, conn, exc):
        pass


def encode(name, *args):
    return bytes(Message.request(name, *args)) + b"\n"


def run_threads(targets):
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    return threads


async def join_threads(threads):
    loop = asyncio.get_running_loop()
    for t in threads:
        await loop.run_in_executor(None, t.join, TIMEOUT)
        assert not t.is_alive()


def per_sender(messages):
    """{name: [int(arg), ...]} in arrival order."""
    out = {}
    for msg in messages:
        assert isinstance(msg, Message), msg
        out.setdefault(msg.name, []).append(int(msg.arguments[0]))
    return out


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_threads_and_loop_write_concurrently_without_mixing(tls, request):
    """Four threads and the ioloop write at once: every message arrives whole, in order."""
    n, senders = 400, 4
    ctx = request.getfixturevalue("tls_contexts") if tls else (None, None)

    async def main():
        recorder = Recorder()
        server = await create_server(recorder, LineCodec, "127.0.0.1", 0, ssl=ctx[0])
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(Quiet(), LineCodec(), "127.0.0.1", port, ssl=ctx[1],
                                     timeout=TIMEOUT)
        conn.enable_threadsafe_writes()
        # Direct socket sends on plain TCP and TLS alike (TLS: encrypted by the sender).
        assert (conn._direct_sock is not None) is lowlevel.USE_PRIVATE

        def sender(k):
            for i in range(n):
                # Some big ones, so that partial sends and queueing happen too.
                pad = "x" * (50_000 if i % 50 == 0 else 10)
                conn.write_threadsafe(encode(f"t{k}", i, pad))

        threads = run_threads([lambda k=k: sender(k) for k in range(senders)])
        for i in range(n):
            conn.write(Message.request("loop", i))
            if i % 20 == 0:
                await asyncio.sleep(0)
        await join_threads(threads)
        await recorder.wait_count((senders + 1) * n)
        got = per_sender(recorder.messages)
        assert got == {name: list(range(n)) for name in ["loop"] + [f"t{k}" for k in
                                                                 range(senders)]}
        conn.close()
        await conn.wait_closed()
        server.close()
        await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT + 5))


def test_peer_not_reading_queues_in_order_then_drains():
    """A full socket: the rest is queued in order, and sent once the peer reads again."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    received = bytearray()
    start_reading = threading.Event()

    def peer():
        s, _ = listener.accept()
        s.settimeout(TIMEOUT)
        start_reading.wait(TIMEOUT)
        while True:
            data = s.recv(65536)
            if not data:
                break
            received.extend(data)
        s.close()

    peer_thread = threading.Thread(target=peer)
    peer_thread.start()
    payload = "y" * 20_000
    n = 400  # 8 MB: more than the loopback socket buffers hold

    async def main():
        conn = await open_connection(Quiet(), LineCodec(), "127.0.0.1", port, timeout=TIMEOUT,
                                     max_write_buffer_size=2**24)
        conn.enable_threadsafe_writes()

        def sender():
            for i in range(n):
                conn.write_threadsafe(encode("big", i, payload))

        threads = run_threads([sender])
        await join_threads(threads)
        # The sender never blocked: what the socket did not take is queued.
        assert conn.get_write_buffer_size() > 0
        # The ioloop's own writes queue behind it too.
        conn.write(Message.request("last", n))
        start_reading.set()
        conn.close()
        await conn.wait_closed()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT + 5))
    peer_thread.join(TIMEOUT)
    listener.close()
    expected = b"".join(encode("big", i, payload) for i in range(n)) + encode("last", n)
    assert bytes(received) == expected


def test_write_threadsafe_needs_enabling_and_ignores_closed_connections():
    async def main():
        recorder = Recorder()
        server = await create_server(recorder, LineCodec, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(Quiet(), LineCodec(), "127.0.0.1", port, timeout=TIMEOUT)
        with pytest.raises(RuntimeError, match="enable_threadsafe_writes"):
            conn.write_threadsafe(b"?x\n")
        assert not conn.threadsafe_writes
        conn.enable_threadsafe_writes()
        conn.enable_threadsafe_writes()  # idempotent
        assert conn.threadsafe_writes
        conn.write_threadsafe(b"")  # nothing to do
        conn.write_threadsafe(b"?one\n")
        await recorder.wait_count(1)
        conn.close()
        conn.write_threadsafe(b"?after-close\n")  # ignored, like write()
        await conn.wait_closed()
        conn.write_threadsafe(b"?after-lost\n")
        await asyncio.sleep(0.05)
        assert [m.name for m in recorder.messages] == ["one"]
        server.close()
        await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT + 5))
