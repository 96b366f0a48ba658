"""Dead and half-open peers are noticed (issue 16).

A real server process is stopped with SIGSTOP: its socket stays open and the kernel
still accepts connections, but nothing answers, as with a device that lost power
behind a switch.  Clients, inspecting clients and resources configured with a short
``liveness_timeout`` must notice it, report the connection gone, fail what is pending,
and reconnect once the process goes on (SIGCONT).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from katcp import AsyncClient, DeviceClient, Message
from katcp.inspecting_client import InspectingClientAsync
from katcp.resource_client import KATCPClientResource

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")

LIVENESS = 0.6
WAIT = 5.0

SERVER = r"""
import sys, threading
import katcp
class Server(katcp.DeviceServer):
    VERSION_INFO = ("stopped", 1, 0)
    BUILD_INFO = ("stopped", 1, 0, "")
    def setup_sensors(self):
        self.add_sensor(katcp.Sensor.integer("an.int", "An integer.", "", default=3))
server = Server("127.0.0.1", 0)
server.start(timeout=5)
print(server.bind_address[1], flush=True)
sys.stdin.read()
server.stop(timeout=5)
"""


@pytest.fixture
def device():
    """A device server in a process of its own: ``(process, port)``."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield proc, port
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(WAIT)


def until(predicate, timeout: float = WAIT) -> float:
    """Poll ``predicate`` (bounded); return the seconds it took."""
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic() - t0


def test_async_client_notices_a_stopped_server_and_reconnects(device):
    proc, port = device
    client = AsyncClient("127.0.0.1", port, timeout=WAIT)
    client.liveness_timeout = LIVENESS
    client.auto_reconnect_delay = 0.05
    client.start(timeout=WAIT)
    try:
        assert client.wait_protocol(WAIT)
        reply, _ = client.blocking_request(Message.request("watchdog"), timeout=WAIT)
        assert reply.reply_ok()
        # Quiet but alive: answered pings keep it connected past the liveness time.
        deadline = time.monotonic() + LIVENESS * 2
        while time.monotonic() < deadline:
            time.sleep(0.05)
            assert client.is_connected()
        os.kill(proc.pid, signal.SIGSTOP)
        took = until(lambda: not client.is_connected())
        assert took < LIVENESS * 2 + 0.5
        # reconnect attempts meanwhile reach the kernel's backlog, never a greeting:
        # each is dropped again, and a request fails rather than hangs
        reply, _ = client.blocking_request(Message.request("watchdog"), timeout=0.3)
        assert not reply.reply_ok()
        os.kill(proc.pid, signal.SIGCONT)
        assert client.wait_protocol(WAIT)
        until(lambda: client.blocking_request(Message.request("watchdog"),
                                              timeout=0.5)[0].reply_ok())
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


def test_ping_replies_are_not_passed_on(device):
    _, port = device
    seen = []

    class Recording(DeviceClient):
        def unhandled_reply(self, msg):
            seen.append(msg)

    client = Recording("127.0.0.1", port)
    client.liveness_timeout = 0.3
    client.start(timeout=WAIT)
    try:
        assert client.wait_protocol(WAIT)
        # Silent server, a third of the liveness time: pings go out every 0.2 s or so;
        # all are answered and none reaches the client's handlers.
        deadline = time.monotonic() + 0.9
        while time.monotonic() < deadline:
            time.sleep(0.05)
            assert client.is_connected()
        assert [m for m in seen if m.name == "watchdog"] == []
    finally:
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


def test_pending_request_to_a_stopped_server_fails_then_connection_drops(device):
    proc, port = device
    client = AsyncClient("127.0.0.1", port, timeout=WAIT)
    client.liveness_timeout = LIVENESS
    client.start(timeout=WAIT)
    try:
        assert client.wait_protocol(WAIT)
        os.kill(proc.pid, signal.SIGSTOP)
        reply, _ = client.blocking_request(Message.request("watchdog"), timeout=0.4)
        assert not reply.reply_ok()  # its own timeout: the server may just be slow
        until(lambda: not client.is_connected(), LIVENESS * 2 + 0.5)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        client.stop(timeout=WAIT)
        client.join(timeout=WAIT)


async def until_async(predicate, timeout: float = WAIT) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not predicate():
        assert loop.time() - t0 < timeout, "condition not met in time"
        await asyncio.sleep(0.01)
    return loop.time() - t0


def test_inspecting_client_and_resource_notice_a_stopped_server(device):
    proc, port = device

    async def main():
        ic = InspectingClientAsync("127.0.0.1", port)
        ic.katcp_client.liveness_timeout = LIVENESS
        ic.katcp_client.auto_reconnect_delay = 0.05
        res = KATCPClientResource(dict(name="dev", address=("127.0.0.1", port),
                                       liveness_timeout=LIVENESS,
                                       auto_reconnect_delay=0.05))
        try:
            await ic.connect()
            res.start()
            await ic.until_synced(WAIT)
            await res.until_synced(WAIT)
            os.kill(proc.pid, signal.SIGSTOP)
            took = await until_async(lambda: not ic.connected and not res.is_connected())
            assert took < LIVENESS * 2 + 0.5
            assert not ic.synced and not res.synced
            os.kill(proc.pid, signal.SIGCONT)
            await ic.until_synced(WAIT)
            await res.until_synced(WAIT)
            assert ic.connected and res.is_connected()
        finally:
            ic.close()
            res.stop()

    asyncio.run(asyncio.wait_for(main(), 4 * WAIT))
