"""Shared helpers for the device server tests (no tests here).

* :class:`RawClient`: a blocking loopback socket speaking raw KATCP lines, every read
  bounded by a timeout.
* :func:`running` : context manager that starts a threaded (managed ioloop) server and
  always stops it.
* :func:`run` : run a coroutine with a bound on its duration.
* :func:`eventually` : poll a condition from a plain thread, with a bound.
* :class:`ExampleServer` / :class:`ExampleAsyncServer`: servers with a few sensors and
  test requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Iterator, List

import tornado.gen

from katcp.core import AsyncReply, FailReply, Message
from katcp.kattypes import concurrent_reply, request_timeout_hint
from katcp.sensor import Sensor
from katcp.server import AsyncDeviceServer, DeviceServer

TIMEOUT = 5.0


def eventually(predicate, timeout: float = TIMEOUT) -> bool:
    """Whether ``predicate()`` becomes true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def run(coro, timeout: float = TIMEOUT):
    """Run ``coro`` in a fresh event loop, failing after ``timeout`` seconds."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


class RawClient:
    """Blocking KATCP line client over a loopback socket (bounded reads)."""

    def __init__(self, address, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(tuple(address[:2]), timeout=timeout)
        self.buf = b""
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self, timeout: float | None = None) -> bytes:
        """Next line without terminator; raises socket.timeout if none comes."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no complete line")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; pending {self.buf!r}")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def read_until(self, prefix: bytes, timeout: float | None = None) -> List[bytes]:
        """Lines up to and including the first one starting with ``prefix``."""
        lines = []
        while True:
            line = self.readline(timeout)
            lines.append(line)
            if line.startswith(prefix):
                return lines

    def request(self, line: bytes) -> List[bytes]:
        """Send one request line and return all lines up to its reply."""
        name = line.split()[0][1:].split(b"[")[0]
        self.send(line + b"\n")
        return self.read_until(b"!" + name)

    def skip_connect_informs(self) -> List[bytes]:
        """Read the #version-connect (or v4 #version/#build-state) informs."""
        lines = [self.readline()]
        while True:
            try:
                line = self.readline(timeout=0.2)
            except socket.timeout:
                return lines
            lines.append(line)
            if line.startswith(b"#version-connect katcp-device") or \
                    line.startswith(b"#build-state"):
                return lines

    def is_closed(self, timeout: float = TIMEOUT) -> bool:
        """True if the server closes the connection within ``timeout`` (output ignored)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except OSError:
                return True
            if not data:
                return True
            self.buf += data
        return False

    def close(self) -> None:
        self.sock.close()


class ExampleMixin:
    """Sensors and test requests shared by the example servers."""

    def setup_sensors(self) -> None:
        self.add_sensor(Sensor.integer("an.int", "An integer.", "count", [0, 10], default=3))
        self.add_sensor(Sensor.float("a.float", "A float.", "V", [-1.5, 2.5], default=0.5))
        self.add_sensor(Sensor.string("a.string", "A string.", "", default="hello"))
        self.add_sensor(Sensor.discrete("a.discrete", "A discrete.", "", ["on", "off"],
                                        default="on"))
        self.add_sensor(Sensor.boolean("a.bool", "A boolean.", "", default=True))

    def request_echo(self, req, msg):
        """Echo the arguments."""
        return req.make_reply("ok", *msg.arguments)

    def request_fail(self, req, msg):
        """Raise FailReply."""
        raise FailReply("this request fails")

    def request_raise(self, req, msg):
        """Raise an unexpected exception."""
        def deep(n):
            if n == 0:
                raise RuntimeError("deliberate error")
            deep(n - 1)
        deep(30)

    def request_informs(self, req, msg):
        """Send two informs then the reply."""
        req.inform("one")
        req.inform("two")
        return req.make_reply("ok", "2")

    async def request_native(self, req, msg):
        """A native coroutine handler."""
        await asyncio.sleep(float(msg.arguments[0]) if msg.arguments else 0)
        return req.make_reply("ok", "native")

    @tornado.gen.coroutine
    def request_tornado(self, req, msg):
        """A tornado coroutine handler."""
        yield tornado.gen.sleep(0.01)
        return req.make_reply("ok", "tornado")

    def request_future(self, req, msg):
        """Return a future resolved by a later callback."""
        loop = self.ioloop.asyncio_loop
        fut = loop.create_future() if self._server.in_ioloop_thread() else None
        if fut is None:
            import concurrent.futures
            fut = concurrent.futures.Future()
            loop.call_soon_threadsafe(
                loop.call_later, 0.01, fut.set_result, req.make_reply("ok", "future"))
        else:
            loop.call_later(0.01, fut.set_result, req.make_reply("ok", "future"))
        return fut

    def request_later(self, req, msg):
        """Raise AsyncReply and reply from a loop callback."""
        self.ioloop.add_callback(lambda: self.ioloop.call_later(
            0.01, lambda: req.reply("ok", "later")))
        raise AsyncReply()

    @concurrent_reply
    async def request_concurrent(self, req, msg):
        """A concurrent native coroutine (does not hold back the next request)."""
        await asyncio.sleep(float(msg.arguments[0]))
        return req.make_reply("ok", "concurrent")

    @request_timeout_hint(12.5)
    def request_slow(self, req, msg):
        """A request with a timeout hint."""
        return req.make_reply("ok")

    def request_thread(self, req, msg):
        """Reply with the name of the thread the handler runs in."""
        import threading
        return req.make_reply("ok", threading.current_thread().name)


class ExampleServer(ExampleMixin, DeviceServer):
    """Threaded (default) device server."""


class ExampleAsyncServer(ExampleMixin, AsyncDeviceServer):
    """Asynchronous device server (handlers in the ioloop)."""


@contextlib.contextmanager
def running(server) -> Iterator:
    """Start a server with a managed ioloop; always stop and join it."""
    assert server.start(timeout=TIMEOUT)
    try:
        yield server
    finally:
        server.stop(timeout=None).result(TIMEOUT)
        server.join(timeout=TIMEOUT)


def make_threaded(cls=ExampleServer, **kwargs):
    return cls("127.0.0.1", 0, **kwargs)


def parse(line: bytes) -> Message:
    """Parse one line (without terminator) with our own parser."""
    from katcp.core import MessageParser
    return MessageParser().parse(line)
