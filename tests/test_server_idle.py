"""Idle connections: closed after ``idle_timeout`` when asked, kept by default (issue 16)."""

import socket
import time

import pytest

from katcp import DeviceServer
from katcp.kattypes import Float, request, return_reply
from katcp.security import UserStore


class Slow(DeviceServer):
    VERSION_INFO = ("idle-test", 1, 0)
    BUILD_INFO = ("idle-test", 1, 0, "")

    def setup_sensors(self):
        pass

    @request(Float())
    @return_reply()
    async def request_sleep(self, req, seconds):
        """Reply after ``seconds``."""
        import asyncio

        await asyncio.sleep(seconds)
        return ("ok",)


def _connect(server):
    sock = socket.create_connection(server.bind_address, timeout=5)
    sock.settimeout(5)
    return sock


def _read_until_closed(sock, limit=5.0):
    """Everything the server sends until it closes the connection (or ``limit`` s)."""
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            return data, True
        data += chunk
    return data, False


@pytest.fixture
def server():
    servers = []

    def make(**kwargs):
        srv = Slow("127.0.0.1", 0, **kwargs)
        srv.start(timeout=5)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop().result(timeout=5)
        srv.join(timeout=5)


def test_idle_connection_is_closed_with_a_disconnect_inform(server):
    srv = server(idle_timeout=0.3)
    sock = _connect(srv)
    try:
        t0 = time.monotonic()
        data, closed = _read_until_closed(sock)
        assert closed, data
        assert b"#disconnect Idle\\_for\\_0.3\\_s." in data
        assert 0.25 < time.monotonic() - t0 < 3
    finally:
        sock.close()


def test_a_talking_client_and_a_long_request_are_not_idle(server):
    srv = server(idle_timeout=0.4)
    talker = _connect(srv)
    waiter = _connect(srv)
    try:
        # The waiter sends one request that takes longer than the timeout to complete, then
        # nothing: its reply counts as activity, so it is still open a while after the reply.
        waiter.sendall(b"?sleep 0.3\n")
        deadline = time.monotonic() + 1.2
        sent = 0
        while time.monotonic() < deadline:
            talker.sendall(b"?watchdog\n")
            sent += 1
            time.sleep(0.1)
        data = b""
        while data.count(b"!watchdog ok") < sent:
            chunk = talker.recv(65536)
            assert chunk, "the talking client was disconnected"
            data += chunk
        assert b"#disconnect" not in data
        waited, closed = _read_until_closed(waiter, limit=3)
        assert b"!sleep ok" in waited
        assert closed and b"#disconnect Idle" in waited
    finally:
        talker.close()
        waiter.close()


def test_idle_connections_are_kept_by_default_and_closed_when_login_is_required(
        server, tmp_path):
    plain = server()
    assert plain._server.idle_timeout is None
    store = UserStore(str(tmp_path / "users.db"))
    secured = server(users=store)
    assert secured._server.idle_timeout == DeviceServer.LOGIN_IDLE_TIMEOUT


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_bad_idle_timeout_is_refused(bad):
    with pytest.raises(ValueError, match="idle_timeout"):
        Slow("127.0.0.1", 0, idle_timeout=bad)
