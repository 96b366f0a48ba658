"""katcp._aio.lowlevel: asyncio's private internals and their forced public-API fallbacks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from katcp._aio import lowlevel
from katcp.client import BlockingClient
from katcp.codec import LineCodec
from katcp.connection import create_server, open_connection
from katcp.core import Message
from katcp.server import DeviceServer

TIMEOUT = 10.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Echo:
    """Handler greeting each connection and echoing its messages."""

    def connection_made(self, conn):
        conn.write_bytes(b"#hello\n")

    def message_received(self, conn, msg):
        conn.write(msg)

    def decode_error(self, conn, exc):
        pass

    def connection_lost(self, conn, exc):
        pass


class Collect(Echo):
    def __init__(self):
        self.got = []
        self.changed = asyncio.Event()

    def connection_made(self, conn):
        pass

    def message_received(self, conn, msg):
        self.got.append(msg)
        self.changed.set()


class Device(DeviceServer):
    VERSION_INFO = ("lowlevel-test", 1, 0)
    BUILD_INFO = ("lowlevel-test", 1, 0, "")

    def setup_sensors(self):
        pass

    def request_echo(self, req, msg):
        """Echo the arguments."""
        return Message.reply("echo", "ok", *msg.arguments)


def test_running_loop_fallback_agrees_with_private():
    assert lowlevel.running_loop_public() is None
    assert lowlevel.running_loop() is None

    async def main():
        loop = asyncio.get_running_loop()
        assert lowlevel.running_loop_public() is loop
        assert lowlevel.running_loop() is loop

    asyncio.run(main())


@pytest.mark.parametrize("use_private", [True, False], ids=["private", "public"])
def test_accept_and_threadsafe_writes_both_paths(use_private, monkeypatch):
    """Greeting, echo and writes from threads work with and without asyncio's internals."""
    monkeypatch.setattr(lowlevel, "USE_PRIVATE", use_private)
    made = []
    real_accept = lowlevel.accept_directly
    monkeypatch.setattr(lowlevel, "accept_directly",
                        lambda *a: made.append(1) or real_accept(*a))

    async def main():
        server = await create_server(Echo(), LineCodec, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        collect = Collect()
        conn = await open_connection(collect, LineCodec(), "127.0.0.1", port, timeout=TIMEOUT)
        conn.enable_threadsafe_writes()
        assert (conn._direct_sock is not None) is use_private

        def sender():
            for i in range(200):
                conn.write_threadsafe(b"?t %d\n" % i)

        thread = threading.Thread(target=sender)
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, TIMEOUT)
        while len(collect.got) < 201:
            collect.changed.clear()
            await asyncio.wait_for(collect.changed.wait(), TIMEOUT)
        assert collect.got[0].name == "hello"
        assert [int(m.arguments[0]) for m in collect.got[1:]] == list(range(200))
        conn.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert bool(made) is use_private


@pytest.mark.parametrize("use_private", [True, False], ids=["private", "public"])
def test_blocking_requests_both_paths(use_private, monkeypatch):
    monkeypatch.setattr(lowlevel, "USE_PRIVATE", use_private)
    server = Device("127.0.0.1", 0)
    server.start(timeout=TIMEOUT)
    try:
        port = server.bind_address[1]
        client = BlockingClient("127.0.0.1", port)
        client.start(timeout=TIMEOUT)
        try:
            assert client.wait_protocol(TIMEOUT)
            assert (client._conn._direct_sock is not None) is use_private
            for i in range(50):
                reply, _ = client.blocking_request(Message.request("echo", i), timeout=TIMEOUT)
                assert reply.arguments == [b"ok", b"%d" % i]
        finally:
            client.stop()
            client.join(TIMEOUT)
    finally:
        server.stop()
        server.join(TIMEOUT)


def test_everything_public_only_in_a_fresh_process():
    """With KATCP_ASYNCIO_PUBLIC_ONLY=1 even the import-time choices use the fallbacks."""
    code = textwrap.dedent('''
        import asyncio, sys
        sys.path.insert(0, sys.argv[1])
        from katcp._aio import lowlevel
        assert not lowlevel.USE_PRIVATE
        assert lowlevel.running_loop is lowlevel.running_loop_public
        from katcp import BlockingClient, DeviceServer, Message, Sensor

        class Device(DeviceServer):
            VERSION_INFO = ("x", 1, 0)
            BUILD_INFO = ("x", 1, 0, "")
            def setup_sensors(self):
                self.s = Sensor.integer("s", "", "", default=0, initial_status=Sensor.NOMINAL)
                self.add_sensor(self.s)

        server = Device("127.0.0.1", 0)
        server.start(timeout=10)
        client = BlockingClient("127.0.0.1", server.bind_address[1])
        client.start(timeout=10)
        assert client.wait_protocol(10)
        assert client._conn._direct_sock is None
        (conn,) = server._server._connections  # the handler thread's replies: fallback
        assert conn.threadsafe_writes and conn._direct_sock is None
        reply, informs = client.blocking_request(Message.request("sensor-value", "s"))
        assert reply.reply_ok() and informs[0].arguments[-1] == b"0", (reply, informs)
        reply, _ = client.blocking_request(Message.request("sensor-sampling", "s", "event"))
        assert reply.reply_ok(), reply
        server.s.set_value(7)   # from this thread: handed to the loop
        reply, informs = client.blocking_request(Message.request("sensor-value", "s"))
        assert informs[0].arguments[-1] == b"7", informs
        client.stop(); client.join(10)
        server.stop(); server.join(10)
        print("ok")
    ''')
    env = dict(os.environ, KATCP_ASYNCIO_PUBLIC_ONLY="1")
    out = subprocess.run([sys.executable, "-c", code, ROOT], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
