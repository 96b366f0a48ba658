"""``stop()`` of servers and clients: awaitable in a coroutine, ``result(timeout)`` in threads."""

from __future__ import annotations

import asyncio

from katcp.client import AsyncClient
from katcp.ioloop_manager import StopFuture
from katcp.server import AsyncDeviceServer, DeviceServer

WAIT = 5.0


class Async(AsyncDeviceServer):
    VERSION_INFO = ("stop-test", 1, 0)
    BUILD_INFO = ("stop-test", 1, 0, "")

    def setup_sensors(self):
        pass


class Threaded(DeviceServer):
    VERSION_INFO = ("stop-test", 1, 0)
    BUILD_INFO = ("stop-test", 1, 0, "")

    def setup_sensors(self):
        pass


def test_await_stop_of_server_in_own_loop():
    async def main():
        server = Async("127.0.0.1", 0)
        await asyncio.wait_for(server.start(), WAIT)
        assert server.running()
        stopped = server.stop()
        assert isinstance(stopped, StopFuture)
        assert await asyncio.wait_for(stopped, WAIT) is None
        assert not server.running()
        # Stopping again gives the same (resolved) future, awaitable as well.
        assert server.stop() is stopped
        await asyncio.wait_for(server.stop(), WAIT)

    asyncio.run(asyncio.wait_for(main(), 2 * WAIT))


def test_await_stop_of_never_started_server():
    async def main():
        server = Async("127.0.0.1", 0)
        await asyncio.wait_for(server.stop(timeout=None), WAIT)

    asyncio.run(asyncio.wait_for(main(), 2 * WAIT))


def test_stop_result_from_thread():
    server = Threaded("127.0.0.1", 0)
    server.start(timeout=WAIT)
    stopped = server.stop(timeout=WAIT)
    assert isinstance(stopped, StopFuture)
    assert stopped.result(timeout=WAIT) is None
    server.join(timeout=WAIT)
    assert not server.running()
    Threaded("127.0.0.1", 0).stop(timeout=None).result(timeout=WAIT)  # never started


def test_await_stop_of_client_in_own_loop():
    async def main():
        server = Async("127.0.0.1", 0)
        await asyncio.wait_for(server.start(), WAIT)
        client = AsyncClient("127.0.0.1", server.bind_address[1], timeout=WAIT)
        client.set_ioloop()
        client.start()
        await client.until_protocol(timeout=WAIT)
        await asyncio.wait_for(client.stop(), WAIT)
        await client.until_stopped(timeout=WAIT)
        assert not client.is_connected()
        await asyncio.wait_for(server.stop(), WAIT)

    asyncio.run(asyncio.wait_for(main(), 2 * WAIT))
