"""A client that pipelines requests and never reads costs the others little, and is cut off.

Real loopback sockets.  No timing is asserted: the flooder must be disconnected once its
unsent replies pass ``MAX_WRITE_BUFFER_SIZE`` (as katcp-python does: the connection is
closed with its queued output, so nothing more reaches it), and the other client must be
answered throughout.  ``bench/bench_fairness.py`` measures the delays.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import tornado.ioloop

from katcp import AsyncDeviceServer, DeviceServer

TIMEOUT = 10.0


class _Recording:
    VERSION_INFO = ("fairness", 1, 0)
    BUILD_INFO = ("fairness", 0, 1, "")

    def setup_sensors(self):
        self.disconnects = []

    def on_client_disconnect(self, conn, msg, connection_valid):
        self.disconnects.append((msg, connection_valid))
        return super().on_client_disconnect(conn, msg, connection_valid)


class ThreadedDevice(_Recording, DeviceServer):
    pass


class LoopDevice(_Recording, AsyncDeviceServer):
    pass


def _start(kind):
    """Start a server of `kind` on 127.0.0.1; return it and a function that stops it."""
    if kind == "threaded":
        server = ThreadedDevice("127.0.0.1", 0)
        server.start(timeout=TIMEOUT)
        return server, lambda: (server.stop(), server.join(TIMEOUT))
    # Handlers on a loop the caller runs (here in a thread of its own).
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = LoopDevice("127.0.0.1", 0)

    async def start():
        server.set_ioloop(tornado.ioloop.IOLoop.current())
        await server.start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(TIMEOUT)

    def stop():
        async def stopped():
            await server.stop()
        asyncio.run_coroutine_threadsafe(stopped(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()

    return server, stop


def _read_until(sock, buf, prefix):
    while True:
        for line in buf[0].split(b"\n")[:-1]:
            if line.startswith(prefix):
                buf[0] = buf[0][buf[0].index(line) + len(line) + 1:]
                return line
        chunk = sock.recv(65536)
        assert chunk, "server closed the normal client"
        buf[0] += chunk


@pytest.mark.parametrize("kind", ["threaded", "loop"])
def test_a_client_that_never_reads_is_cut_off_and_the_others_are_served(kind):
    server, stop = _start(kind)
    try:
        port = server.bind_address[1]
        normal = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        buf = [b""]
        _read_until(normal, buf, b"#version-connect katcp-device")

        flooder = socket.socket()
        flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        flooder.connect(("127.0.0.1", port))
        flooder.settimeout(0.1)
        cut = threading.Event()
        # ?help: about 2 kB of reply per 6-byte request, so the backlog grows fast.
        chunk = b"?help\n" * 10000

        def flood():
            deadline = time.monotonic() + 3 * TIMEOUT
            while time.monotonic() < deadline:
                try:
                    flooder.send(chunk)
                except socket.timeout:
                    continue
                except OSError:
                    break
            cut.set()

        threading.Thread(target=flood, daemon=True).start()
        served = 0
        deadline = time.monotonic() + 3 * TIMEOUT
        while not cut.is_set() or served < 5:
            assert time.monotonic() < deadline, "the flooder was never cut off"
            normal.sendall(b"?watchdog\n")
            assert _read_until(normal, buf, b"!watchdog") == b"!watchdog ok"
            served += 1
        assert cut.wait(TIMEOUT)

        # The server's side: the flooder went away for its backlog, with no chance to send.
        deadline = time.monotonic() + TIMEOUT
        while not server.disconnects and time.monotonic() < deadline:
            time.sleep(0.01)
        ((reason, connection_valid),) = server.disconnects
        assert "Write buffer" in reason and not connection_valid
        # And the normal client goes on as before.
        normal.sendall(b"?watchdog\n")
        assert _read_until(normal, buf, b"!watchdog") == b"!watchdog ok"
        normal.close()
        flooder.close()
    finally:
        stop()
