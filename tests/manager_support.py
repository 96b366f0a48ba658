"""Helpers for the manager tests: small devices, a started manager, bounded waits."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from typing import AsyncIterator, Callable, Dict

import tornado.ioloop

from katcp.core import ProtocolFlags, Sensor
from katcp.kattypes import Int, Str, request, return_reply
from katcp.manager import DeviceSpec, ManagerConfig, ManagerServer
from katcp.server import DeviceServer

WAIT = 5.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Receiver(DeviceServer):
    """A tiny receiver: a few typed sensors and requests with informs."""

    VERSION_INFO = ("receiver", 1, 0)
    BUILD_INFO = ("receiver", 1, 0, "")
    PROTOCOL_INFO = ProtocolFlags(5, 1, set("MIB"))

    def setup_sensors(self):
        self.temp = Sensor.float("temp", "Temperature", "degC", [-50.0, 150.0], default=20.0,
                                 initial_status=Sensor.NOMINAL)
        self.count = Sensor.integer("count", "A counter", "", [0, 1000], default=0,
                                    initial_status=Sensor.NOMINAL)
        self.mode = Sensor.discrete("mode", "Mode", "", ["idle", "observe"], default="idle",
                                    initial_status=Sensor.NOMINAL)
        for sensor in (self.temp, self.count, self.mode):
            self.add_sensor(sensor)

    @request(Str(multiple=True))
    @return_reply(Str(multiple=True))
    def request_echo(self, req, *words):
        """Echo the arguments back."""
        return ("ok",) + words

    @request(Int())
    @return_reply(Int())
    def request_informs(self, req, count):
        """Send COUNT informs, then reply with COUNT."""
        for i in range(count):
            req.inform("item", str(i))
        return "ok", count

    @request(Str())
    @return_reply()
    def request_set_mode(self, req, mode):
        """Set the mode sensor."""
        self.mode.set_value(mode)
        return ("ok",)

    @request()
    @return_reply()
    def request_fail(self, req):
        """Always fail."""
        return "fail", "as asked"


async def start_device(cls=Receiver, port: int = 0):
    srv = cls("127.0.0.1", port)
    srv.set_concurrency_options(thread_safe=False, handler_thread=False)
    srv.set_ioloop(tornado.ioloop.IOLoop.current())
    started = srv.start()
    if started is not None:
        await started
    return srv


async def stop_device(srv) -> None:
    stopped = srv.stop()
    if isinstance(stopped, concurrent.futures.Future):
        stopped = asyncio.wrap_future(stopped)
    if stopped is not None:
        await asyncio.wait_for(stopped, WAIT)


@contextlib.asynccontextmanager
async def running_manager(devices: Dict[str, DeviceSpec], max_write_buffer_size: int = 0,
                          register: bool = False, **kwargs) -> AsyncIterator[ManagerServer]:
    config = ManagerConfig(listen=("127.0.0.1", 0), devices=devices,
                           register=("127.0.0.1", 0) if register else None)
    manager = ManagerServer(config, **kwargs)
    if max_write_buffer_size:
        manager.MAX_WRITE_BUFFER_SIZE = max_write_buffer_size
    await manager.start_manager()
    try:
        yield manager
    finally:
        await manager.stop_manager()


def katcp_spec(name: str, port: int, **kwargs) -> DeviceSpec:
    return DeviceSpec(name, "katcp", "127.0.0.1", port, **kwargs)


async def until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll `predicate` every 10 ms until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


class LineClient:
    """A raw KATCP client over asyncio streams: sends lines, collects what comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        #: Lines read while waiting for something else (e.g. sensor updates).
        self.other: list = []

    @classmethod
    async def connect(cls, port: int) -> LineClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2 ** 22)
        return cls(reader, writer)

    async def line(self, timeout: float = WAIT) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        if not raw:
            raise ConnectionError("closed")
        return raw.decode().rstrip("\n")

    async def request(self, text: str, timeout: float = WAIT):
        """Send ``?text``; return (reply line, [inform lines of that request]) by name."""
        name = text.split()[0]
        self.writer.write(f"?{text}\n".encode())
        informs = []
        while True:
            line = await self.line(timeout)
            if line.startswith(f"!{name} ") or line == f"!{name}":
                return line, informs
            if line.startswith(f"#{name} ") or line == f"#{name}":
                informs.append(line)
            else:
                self.other.append(line)

    async def wait_for(self, prefix: str, timeout: float = WAIT) -> str:
        for index, line in enumerate(self.other):
            if line.startswith(prefix):
                del self.other[: index + 1]
                return line
        self.other.clear()
        deadline = time.monotonic() + timeout
        while True:
            line = await self.line(max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()




class ExampleServerProcess:
    """``katcp-exampleserver`` in a subprocess (this worktree's code), restartable on its port."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, port: int = 0, timeout: float = 20.0) -> int:
        env = dict(os.environ, PYTHONPATH=ROOT)
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "katcp.tools.example_server", "--port", str(port),
                 "--update-period", "0.05"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env=env, cwd=ROOT)
            found = _read_listening_port(self.proc, max(deadline - time.monotonic(), 1.0))
            if found:
                self.port = found
                return found
            self.kill()
            if port == 0 or time.monotonic() > deadline:
                raise RuntimeError("katcp-exampleserver did not start")
            time.sleep(0.1)  # the port may still be held by the previous process

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(10)
        with contextlib.suppress(Exception):
            proc.stderr.close()


def _read_listening_port(proc: subprocess.Popen, timeout: float) -> int:
    """Port from the server's 'listening on host:port' log line (0 if it did not start)."""
    found: list = []

    def reader() -> None:
        for raw in proc.stderr:
            match = re.search(rb"listening on \S+:(\d+)", raw)
            if match:
                found.append(int(match.group(1)))
                break
        # Keep draining so that the child never blocks on a full pipe.
        for _ in proc.stderr:
            pass

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return found[0] if found else 0


def run(coro_fn, timeout: float = 20.0):
    """Run ``coro_fn()`` in a fresh event loop with an overall time limit."""

    async def main():
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(main())
