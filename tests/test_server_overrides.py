"""A ClientConnection subclass that overrides inform/reply/mass_inform sees every message.

katcp-python users plug their own connection class in through
``KATCPServer.client_connection_factory`` (after ``set_concurrency_options``).  The
server takes a byte-writing shortcut only for classes that keep our methods (chosen
once per class); these tests run the same session over real sockets with the plain
class and with an overriding subclass, and require the override to have seen exactly
the lines the client received.
"""

from __future__ import annotations

import re
import socket
import threading

import pytest
from test_server_support import ExampleServer, RawClient, parse

from katcp.core import Sensor
from katcp.server import ClientConnection, ThreadsafeClientConnection


class Recording:
    """Mixin for connection classes: records every message sent through the public methods."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []
        self.lock = threading.Lock()

    def _record(self, msg):
        with self.lock:
            self.seen.append(bytes(msg) if hasattr(msg, "__bytes__") else str(msg).encode())

    def inform(self, msg):
        self._record(msg)
        super().inform(msg)

    def reply(self, reply, orig_req):
        reply.mid = orig_req.mid
        self._record(reply)
        super().reply(reply, orig_req)

    def mass_inform(self, msg):
        self._record(msg)  # what this client sends to everyone
        super().mass_inform(msg)


def test_flags_are_chosen_per_class():
    class Plain(ThreadsafeClientConnection):
        pass

    class OverridesInform(ClientConnection):
        def inform(self, msg):
            super().inform(msg)

    class OverridesReply(ClientConnection):
        def reply(self, reply, orig_req):
            super().reply(reply, orig_req)

    assert ClientConnection._direct_bytes and ThreadsafeClientConnection._direct_bytes
    assert Plain._direct_bytes and Plain._direct_reply and Plain._direct_inform
    assert not OverridesInform._direct_inform and not OverridesInform._direct_bytes
    assert OverridesInform._direct_reply
    assert not OverridesReply._direct_reply and OverridesReply._direct_bytes


def _session(options, recording: bool):
    """Run one session; return (lines the client received, connection objects)."""
    dev = ExampleServer("127.0.0.1", 0)
    thread_safe, handler_thread = options
    dev.set_concurrency_options(thread_safe=thread_safe, handler_thread=handler_thread)
    base = dev._server.client_connection_factory
    factory = type("Rec" + base.__name__, (Recording, base), {}) if recording else base
    dev._server.client_connection_factory = factory
    created = []

    def make(server, conn):
        c = factory(server, conn)
        created.append(c)
        return c

    dev._server.client_connection_factory = make
    assert dev.start(timeout=5)
    stopped = False
    client = RawClient(dev.bind_address)
    try:
        lines = client.skip_connect_informs()
        lines += client.request(b"?sensor-sampling an.int auto")
        dev.get_sensor("an.int").set_value(7)  # from this thread: queued for the loop
        lines += client.read_until(b"#sensor-status")
        lines += client.request(b"?sensor-sampling a.float event")
        lines += client.request(b"?informs")
        lines += client.request(b"?later")
        lines += client.request(b"?echo[7] a b")
        lines += client.request(b"?fail")
        lines += client.request(b"?no-such-request")
        lines += client.request(b"?sensor-value an.int")
        client.send(b"?bad\\escape\n")  # malformed: answered with #log error
        lines += client.read_until(b"#log")
        dev.log.warn("a log message")
        lines += client.read_until(b"#log")
        dev.add_sensor(Sensor.integer("late", "Late.", "", [0, 1]))
        lines += client.read_until(b"#interface-changed")
        dev.stop(timeout=None).result(5)
        stopped = True
        dev.join(timeout=5)
        while True:
            try:
                lines.append(client.readline(timeout=2))
            except (EOFError, socket.timeout, OSError):
                break
    finally:
        client.close()
        if not stopped:
            dev.stop(timeout=None).result(5)
            dev.join(timeout=5)
    return lines, created


def _kind(line: bytes) -> tuple:
    # A line without its numbers (timestamps and values differ between sessions).
    msg = parse(line)
    return (line[:1], msg.name, [a for a in msg.arguments if not re.fullmatch(rb"[0-9.]+", a)])


@pytest.mark.parametrize("options", [(True, True), (True, False), (False, False)],
                         ids=["handler-thread", "threadsafe-in-loop", "in-loop"])
def test_override_sees_every_message(options):
    plain_lines, plain_conns = _session(options, recording=False)
    lines, conns = _session(options, recording=True)
    assert len(conns) == 1 and len(plain_conns) == 1
    assert type(plain_conns[0])._direct_bytes and not type(conns[0])._direct_bytes
    kinds = [line[:1] + parse(line).name.encode() for line in lines]
    for expected in (b"#version-connect", b"#sensor-status", b"!sensor-sampling",
                     b"#informs", b"!informs", b"!later", b"!echo", b"!fail",
                     b"!no-such-request", b"#sensor-value", b"!sensor-value", b"#log",
                     b"#interface-changed", b"#disconnect"):
        assert expected in kinds, expected
    # The same session on the wire, whichever class serves it...
    assert [_kind(x) for x in lines] == [_kind(x) for x in plain_lines]
    # ...and the override saw every line the client received, in order.
    seen = [line.rstrip(b"\n") for line in conns[0].seen]
    assert seen == lines
