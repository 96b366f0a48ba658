"""Where a device server listens: one socket for all families, bound before start() returns."""

from __future__ import annotations

import asyncio
import socket

import pytest
import tornado.ioloop

from katcp import AsyncDeviceServer, DeviceServer

TIMEOUT = 5.0


class _Device(DeviceServer):
    VERSION_INFO = ("bind-test", 1, 0)
    BUILD_INFO = ("bind-test", 0, 1, "")

    def setup_sensors(self):
        pass


class _AsyncDevice(AsyncDeviceServer):
    VERSION_INFO = ("bind-test", 1, 0)
    BUILD_INFO = ("bind-test", 0, 1, "")

    def setup_sensors(self):
        pass


def _greeting(host: str, port: int) -> bytes:
    """Connect, read the first line the server sends (its #version-connect)."""
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_all_interfaces_is_one_port_reported_as_ipv4_any():
    server = _Device("", 0)
    server.start(timeout=TIMEOUT)
    try:
        host, port = server.bind_address
        assert (host, port != 0) == ("0.0.0.0", True)
        assert _greeting("127.0.0.1", port).startswith(b"#version-connect")
        if socket.has_dualstack_ipv6() and _ipv6_loopback_works():
            # The same port takes IPv6 clients: one socket for every family.
            assert _greeting("::1", port).startswith(b"#version-connect")
    finally:
        server.stop()
        server.join(TIMEOUT)


def test_restart_binds_the_same_address_again():
    server = _Device("", 0)
    server.start(timeout=TIMEOUT)
    first = server.bind_address
    server.stop()
    server.join(TIMEOUT)
    server.start(timeout=TIMEOUT)
    try:
        assert server.bind_address == first
        assert _greeting("127.0.0.1", first[1]).startswith(b"#version-connect")
    finally:
        server.stop()
        server.join(TIMEOUT)


def test_ipv4_clients_of_a_dual_stack_socket_have_ipv4_addresses():
    server = _Device("", 0)
    server.start(timeout=TIMEOUT)
    try:
        port = server.bind_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"?client-list\n")
            data = b""
            while b"!client-list" not in data:
                chunk = sock.recv(4096)
                assert chunk
                data += chunk
        assert b"#client-list 127.0.0.1:" in data
        assert b"::ffff:" not in data
    finally:
        server.stop()
        server.join(TIMEOUT)


def test_start_on_the_callers_loop_binds_before_it_returns():
    asyncio.run(_start_on_the_callers_loop())


async def _start_on_the_callers_loop():
    server = _AsyncDevice("127.0.0.1", 0)
    server.set_ioloop(tornado.ioloop.IOLoop.current())
    started = server.start()
    # Read at once, as users do to learn the port of a server started on port 0.
    host, port = server.bind_address
    assert host == "127.0.0.1" and port != 0
    await asyncio.wait_for(asyncio.ensure_future(started), TIMEOUT)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert line.startswith(b"#version-connect")
        writer.close()
    finally:
        await asyncio.wait_for(asyncio.ensure_future(server.stop()), TIMEOUT)


def test_port_in_use_is_reported_by_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        server = _Device("127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError):
            server.start(timeout=TIMEOUT)
        assert not server.running()


def test_log_timestamps_follow_the_one_wall_clock_function():
    """The hook documented in doc/differences.rst instead of patching katcp.server.time."""
    from unittest import mock

    import katcp.server

    server = _Device("127.0.0.1", 0)
    with mock.patch("katcp._protocol.sensor.now", return_value=1234.5):
        msg = server.create_log_inform("info", "hello", "root")
    assert msg.arguments[1] == b"1234.500000"
    assert not hasattr(katcp.server, "time")  # as documented: there is nothing to patch


def test_localhost_is_reachable_over_ipv4():
    server = _Device("localhost", 0)
    server.start(timeout=TIMEOUT)
    try:
        host, port = server.bind_address
        assert host == "127.0.0.1"
        assert _greeting("127.0.0.1", port).startswith(b"#version-connect")
        assert _greeting("localhost", port).startswith(b"#version-connect")
    finally:
        server.stop()
        server.join(TIMEOUT)
