"""The connect greeting (``#version-connect``, or v4 ``#version``/``#build-state``).

It is encoded once per server and the same bytes go to every client; the cached bytes
must follow changes of the version information and overridden version methods.
"""

from __future__ import annotations

import pytest
from test_server_support import ExampleServer, RawClient, running

from katcp.core import ProtocolFlags
from katcp.server import ClientConnection


def greeting(server) -> list:
    c = RawClient(server.bind_address)
    try:
        return c.skip_connect_informs()
    finally:
        c.close()


@pytest.mark.parametrize("thread_safe", [True, False])
def test_same_greeting_for_every_client_from_cache(thread_safe):
    server = ExampleServer("127.0.0.1", 0)
    server.set_concurrency_options(thread_safe=thread_safe, handler_thread=False)
    with running(server) as srv:
        first = greeting(srv)
        assert first[0] == b"#version-connect katcp-protocol 5.0-IM"
        assert first[2] == b"#version-connect katcp-device device_stub-0.1 name-0.1"
        assert srv._greeting_cache is not None  # the bytes path was taken
        assert srv._greeting_cache[1] == b"".join(line + b"\n" for line in first)
        assert greeting(srv) == first


def test_greeting_follows_version_info_changes():
    with running(ExampleServer("127.0.0.1", 0)) as srv:
        assert greeting(srv)[2] == b"#version-connect katcp-device device_stub-0.1 name-0.1"
        srv.VERSION_INFO = ("renamed", 2, 3)
        assert greeting(srv)[2] == b"#version-connect katcp-device renamed-2.3 name-0.1"
        srv.BUILD_INFO = ["built", 4, 5, "rc1"]
        assert greeting(srv)[2] == b"#version-connect katcp-device renamed-2.3 built-4.5rc1"
        srv.BUILD_INFO[1] = 6  # changed in place: still noticed
        assert greeting(srv)[2] == b"#version-connect katcp-device renamed-2.3 built-6.5rc1"
        srv.PROTOCOL_INFO = ProtocolFlags(4, 0, "M")
        assert greeting(srv) == [b"#version renamed-2.3", b"#build-state built-6.5rc1"]


class DynamicVersionServer(ExampleServer):
    count = 0

    def version(self) -> str:
        DynamicVersionServer.count += 1
        return f"dynamic-{self.count}"


def test_overridden_version_method_is_called_per_client():
    with running(DynamicVersionServer("127.0.0.1", 0)) as srv:
        assert greeting(srv)[2] == b"#version-connect katcp-device dynamic-1 name-0.1"
        assert greeting(srv)[2] == b"#version-connect katcp-device dynamic-2 name-0.1"
        assert srv._greeting_cache is None


class RecordingConnection(ClientConnection):
    sent: list = []

    def _send(self, msg):
        RecordingConnection.sent.append(msg)
        super()._send(msg)


def test_connection_with_own_send_gets_messages():
    RecordingConnection.sent = []
    server = ExampleServer("127.0.0.1", 0)
    server.set_concurrency_options(thread_safe=False, handler_thread=False)
    server._server.client_connection_factory = RecordingConnection
    with running(server) as srv:
        lines = greeting(srv)
    assert [str(m).encode() for m in RecordingConnection.sent[:3]] == lines
