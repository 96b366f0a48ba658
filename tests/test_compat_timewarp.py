"""Issue 11: a resource reconnects under a fake clock (TimewarpAsyncTestCase) as in real time.

The reconnect timer must start as the connection drops, so that moving the fake clock past
``auto_reconnect_delay`` after the drop is enough for the resource to reconnect.
"""

from __future__ import annotations

import asyncio
import time

import tornado.testing
from test_resource_servers import start_ours, stop_server

from katcp.resource_client import KATCPClientResource
from katcp.testutils import TimewarpAsyncTestCase

REAL_TIMEOUT = 5.0


async def _until(predicate, what):
    """Poll `predicate` for up to REAL_TIMEOUT seconds of real time (the fake clock stands)."""
    deadline = time.monotonic() + REAL_TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached")
        await asyncio.sleep(0)
        time.sleep(0.001)


class TestResourceReconnectUnderFakeClock(TimewarpAsyncTestCase):
    @tornado.testing.gen_test(timeout=1000)
    async def test_reconnects_after_the_delay_on_the_fake_clock(self):
        srv = await start_ours()
        port = srv.port
        res = KATCPClientResource(dict(name="dev", address=("127.0.0.1", port), controlled=True,
                                       auto_reconnect_delay=2.0))
        res.set_ioloop(self.io_loop)
        res.start()
        try:
            await _until(lambda: res.synced, "first sync")
            await stop_server(srv)
            await _until(lambda: res.state == "disconnected", "disconnect")
            srv = await start_ours(port=port)
            # Let the client try (and fail) whatever it tries at the moment of the drop.
            for _ in range(20):
                await asyncio.sleep(0)
            # Just past the delay, counted from the drop: one clock move is enough.
            await self.set_ioloop_time(self.ioloop_time + 2.1)
            await _until(lambda: res.synced, "resync after the fake clock passed the delay")
        finally:
            res.stop()
            await stop_server(srv)

