"""katcp.client against real peers: aiokatcp's DeviceServer (in a thread or a
subprocess), katcp-python 0.9.3 servers (v5 and v4) and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
import time

import peers
import pytest
import tornado.ioloop
from test_server_support import eventually

from katcp._aio.loopcalls import call_blocking
from katcp import client as kclient
from katcp.client import (
    AsyncClient,
    BlockingClient,
    CallbackClient,
    DeviceClient,
    address_to_string,
    request_check,
)
from katcp.core import (
    AsyncReply,
    KatcpClientError,
    KatcpVersionError,
    Message,
    ProtocolFlags,
)
from katcp.server import DeviceServer

WAIT = 10.0  # generous bound for every wait; tests normally take milliseconds


@pytest.fixture(scope="module")
def aio_server():
    with peers.aiokatcp_server_thread() as (server, port):
        yield server, port


def _start(cls=BlockingClient, port=0, **kwargs):
    c = cls("127.0.0.1", port, **kwargs)
    c.auto_reconnect_delay = 0.05
    c.auto_reconnect_max_delay = 0.2
    c.start(timeout=WAIT)
    return c


def _stop(c):
    c.stop(timeout=WAIT)
    c.join(timeout=WAIT)


@pytest.fixture
def bclient(aio_server):
    c = _start(BlockingClient, aio_server[1])
    assert c.wait_protocol(WAIT)
    yield c
    _stop(c)


def _eventually(predicate, timeout=WAIT):
    return eventually(predicate, timeout)


def call_in_loop(c, fn, *args):
    """Run fn in the client's loop; wait for (an awaitable's) result."""
    return call_blocking(c._loop, fn, args, {}, WAIT)


@contextlib.asynccontextmanager
async def running_in_loop(cls, port):
    """A client of class ``cls`` on the running loop, once it knows the server's protocol;
    stopped on the way out."""
    c = cls("127.0.0.1", port, timeout=WAIT)
    c.set_ioloop(tornado.ioloop.IOLoop.current())
    c.start()
    try:
        await c.until_protocol(timeout=WAIT)
        yield c
    finally:
        c.stop()
        await c.until_stopped(timeout=WAIT)


class Raw:
    """A raw TCP server in a thread: sends lines, records what it receives."""

    def __init__(self, greeting=b""):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.conn = None
        self.connected = threading.Event()
        self.received = b""
        self.got_data = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(WAIT)
        try:
            self.conn, _ = self.sock.accept()
        except OSError:
            return
        self.conn.sendall(self.greeting)
        self.connected.set()
        self.conn.settimeout(WAIT)
        while True:
            try:
                data = self.conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            with self.got_data:
                self.received += data
                self.got_data.notify_all()

    def wait_for(self, needle, timeout=WAIT):
        with self.got_data:
            return self.got_data.wait_for(lambda: needle in self.received, timeout)

    def send(self, data):
        self.conn.sendall(data)

    def close(self):
        for s in (self.conn, self.sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.thread.join(WAIT)


# ---------------------------------------------------------------- basics

def test_module_api():
    assert kclient.SEC_TS_KATCP_MAJOR == 5 and kclient.FLOAT_TS_KATCP_MAJOR == 4
    assert kclient.SEC_TO_MS_FAC == 1000
    assert address_to_string(("h", 3)) == "h:3"
    assert DeviceClient.MAX_MSG_SIZE == 2097152
    assert DeviceClient.MAX_WRITE_BUFFER_SIZE == 4194304
    assert issubclass(BlockingClient, CallbackClient) and issubclass(CallbackClient, AsyncClient)
    c = DeviceClient("", 1234)
    assert c.bind_address == ("0.0.0.0", 1234)
    assert c.bind_address_string == "0.0.0.0:1234"
    assert not c.running() and not c.is_connected()
    assert c.ioloop is None and not c.threadsafe
    assert c.sockname == ("0.0.0.0", -1)
    with pytest.raises(RuntimeError):
        c.stop()
    assert BlockingClient("127.0.0.1", 1).threadsafe


def test_blocking_request_with_mids(bclient, aio_server):
    c = bclient
    assert c.is_connected() and c.running()
    assert c.protocol_flags.major == 5
    assert c.protocol_flags.supports(ProtocolFlags.MESSAGE_IDS)
    assert _eventually(lambda: "katcp-device" in c.versions)
    assert c.versions["katcp-device"][0] == "peer-server-1.0"
    assert c.sockname[1] > 0 and c.sockname_string.startswith("127.0.0.1:")
    reply, informs = c.blocking_request(Message.request("echo", "a", "b c"))
    assert reply.reply_ok() and reply.arguments == [b"ok", b"a", b"b c"]
    assert reply.mid is not None and informs == []
    reply, informs = c.blocking_request(Message.request("informs", 3))
    assert reply.arguments == [b"ok", b"3"]
    assert [m.arguments for m in informs] == [[b"0"], [b"1"], [b"2"]]
    assert all(m.mid == reply.mid for m in informs)
    reply, _ = c.blocking_request(Message.request("no-such-request"))
    assert not reply.reply_ok() and reply.arguments[0] == b"invalid"
    reply, _ = c.blocking_request(Message.request("echo"), use_mid=False)
    assert reply.reply_ok() and reply.mid is None
    assert request_check(c, ValueError, "echo", "x")[0].arguments == [b"ok", b"x"]
    with pytest.raises(ValueError):
        request_check(c, ValueError, "no-such-request", timeout=WAIT)


def test_future_and_callback_requests(bclient):
    c = bclient

    async def run():
        reply, informs = await c.future_request(Message.request("informs", 2))
        return reply, informs

    reply, informs = call_in_loop(c, run)
    assert reply.arguments == [b"ok", b"2"] and len(informs) == 2

    done = threading.Event()
    got = []

    def reply_cb(msg, *user_data):
        got.append(("reply", msg, user_data))
        done.set()

    def inform_cb(msg, *user_data):
        got.append(("inform", msg, user_data))

    c.callback_request(Message.request("informs", 1), reply_cb=reply_cb, inform_cb=inform_cb,
                       user_data=("u", 1))
    assert done.wait(WAIT)
    assert [g[0] for g in got] == ["inform", "reply"]
    assert got[0][2] == ("u", 1) and got[1][1].reply_ok()
    # request() returns the mid; the reply goes to reply_* / unhandled_reply
    mid = c.request(Message.request("echo"))
    assert mid is not None


def test_timeout_fails_request(bclient):
    t0 = time.monotonic()
    reply, informs = bclient.blocking_request(Message.request("sleep", 2), timeout=0.1)
    assert time.monotonic() - t0 < 1.5
    assert reply.mtype == Message.REPLY and not reply.reply_ok()
    assert reply.arguments[0] == b"fail"
    assert b"timed out after" in reply.arguments[1]
    # the late reply is dropped without harm; the client keeps working
    assert bclient.blocking_request(Message.request("echo", 1))[0].reply_ok()


def test_pending_requests_end_on_disconnect(bclient):
    c = bclient
    results = []
    done = threading.Event()

    def reply_cb(msg):
        results.append(msg)
        if len(results) == 2:
            done.set()

    c.callback_request(Message.request("sleep", 5), reply_cb=reply_cb, timeout=WAIT)
    c.callback_request(Message.request("sleep", 5), reply_cb=reply_cb, timeout=WAIT)
    reply, _ = c.blocking_request(Message.request("drop"), timeout=WAIT)
    assert not reply.reply_ok()
    assert b"Connection closed" in reply.arguments[1]
    assert done.wait(WAIT)
    assert all(b"Connection closed" in m.arguments[1] for m in results)
    # auto_reconnect brings it back
    assert c.wait_connected(WAIT) and c.wait_protocol(WAIT)
    deadline = time.monotonic() + WAIT
    while not c.blocking_request(Message.request("echo"))[0].reply_ok():
        assert time.monotonic() < deadline
        c.wait_connected(WAIT)


def test_pending_requests_end_on_stop(aio_server):
    c = _start(BlockingClient, aio_server[1])
    assert c.wait_protocol(WAIT)
    out = []
    t = threading.Thread(target=lambda: out.append(
        c.blocking_request(Message.request("sleep", 5), timeout=WAIT)))
    t.start()
    deadline = time.monotonic() + WAIT
    while not c._async_queue and time.monotonic() < deadline:
        time.sleep(0.005)
    _stop(c)
    t.join(WAIT)
    reply, informs = out[0]
    assert b"Client stopped" in reply.arguments[1]
    assert not c.running()


def test_blocking_request_when_not_connected():
    c = _start(BlockingClient, _free_port())
    try:
        t0 = time.monotonic()
        reply, informs = c.blocking_request(Message.request("watchdog"), timeout=WAIT)
        assert time.monotonic() - t0 < 1.0
        assert not reply.reply_ok() and informs == []
        assert b"Not connected" in reply.arguments[1]
        assert not c.wait_connected(0.05)
        with pytest.raises(KatcpClientError):
            c.send_message(Message.request("watchdog"))
    finally:
        _stop(c)


def test_no_auto_reconnect_stops_on_failure():
    c = BlockingClient("127.0.0.1", _free_port(), auto_reconnect=False)
    c.start(timeout=WAIT)
    try:
        deadline = time.monotonic() + WAIT
        while c.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not c.running()
    finally:
        c.stop(timeout=WAIT)
        c.join(timeout=WAIT)


def test_name_routing_without_mids(aio_server):
    """Server ids not used: replies and informs matched by name, oldest first."""
    c = BlockingClient("127.0.0.1", aio_server[1])
    c.preset_protocol_flags(ProtocolFlags(5, 0, "M"))
    c.start(timeout=WAIT)
    try:
        assert c.wait_connected(WAIT)
        reply, informs = c.blocking_request(Message.request("informs", 2))
        assert reply.mid is None and reply.arguments == [b"ok", b"2"] and len(informs) == 2
        # explicit mids are refused by a server without ids
        with pytest.raises(KatcpVersionError):
            c.request(Message.request("echo"), use_mid=True)
        reply, _ = c.blocking_request(Message.request("echo"), use_mid=True)
        assert not reply.reply_ok() and b"not supported" in reply.arguments[1]
        # several concurrent same-name requests complete in order
        outs = []
        threads = [threading.Thread(target=lambda i=i: outs.append(
            c.blocking_request(Message.request("echo", i))[0])) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert sorted(m.arguments[1] for m in outs) == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        _stop(c)


class Recording(BlockingClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []
        self.connected_events = []
        self.seen_event = threading.Event()

    def inform_broadcast(self, msg):
        self.seen.append(("inform_broadcast", msg))
        self.seen_event.set()

    def unhandled_inform(self, msg):
        self.seen.append(("unhandled_inform", msg))
        if msg.name == "other":
            self.seen_event.set()

    def reply_echo(self, msg):
        self.seen.append(("reply_echo", msg))
        self.seen_event.set()

    def unhandled_reply(self, msg):
        self.seen.append(("unhandled_reply", msg))
        self.seen_event.set()

    def request_ping(self, msg):
        """Answer a ping from the server."""
        return Message.reply("ping", "ok", "pong")

    def notify_connected(self, connected):
        self.connected_events.append(connected)


def test_dispatch_to_handlers(aio_server):
    c = _start(Recording, aio_server[1])
    try:
        assert c.wait_protocol(WAIT)
        assert c.connected_events == [True]
        c.blocking_request(Message.request("broadcast", "broadcast"))
        assert c.seen_event.wait(WAIT)
        assert c.seen[-1][0] == "inform_broadcast"
        c.seen_event.clear()
        c.blocking_request(Message.request("broadcast", "other"))
        assert c.seen_event.wait(WAIT)
        assert c.seen[-1][0] == "unhandled_inform"
        c.seen_event.clear()
        c.send_request(Message.request("echo", "z"))  # not tracked: goes to reply_echo
        assert c.seen_event.wait(WAIT)
        assert c.seen[-1][0] == "reply_echo" and c.seen[-1][1].arguments == [b"ok", b"z"]
        c.seen_event.clear()
        c.request(Message.request("watchdog"))
        assert c.seen_event.wait(WAIT)
        assert c.seen[-1][0] == "unhandled_reply"
    finally:
        _stop(c)
    assert c.connected_events == [True, False]


def test_requests_from_server_and_bad_lines(caplog):
    raw = Raw(b"#version-connect katcp-protocol 5.0-IM\n")
    c = _start(Recording, raw.port)
    try:
        assert raw.connected.wait(WAIT) and c.wait_protocol(WAIT)
        with caplog.at_level(logging.ERROR, logger="katcp.client"):
            raw.send(b"?ping[7]\n!bad\x01line \\q\n")
            assert raw.wait_for(b"!ping[7] ok pong\n")
            assert _eventually(lambda: any("BAD COMMAND" in r.getMessage()
                                           for r in caplog.records))
        assert c.is_connected()
        # replies without a mid are matched by name, informs too
        out = []
        t = threading.Thread(target=lambda: out.append(
            c.blocking_request(Message.request("thing"), use_mid=False, timeout=WAIT)))
        t.start()
        assert raw.wait_for(b"?thing\n")
        raw.send(b"#thing x\n!thing ok\n")
        t.join(WAIT)
        reply, informs = out[0]
        assert reply.reply_ok() and [m.arguments for m in informs] == [[b"x"]]
    finally:
        _stop(c)
        raw.close()


def test_replies_without_id_skip_requests_sent_with_one():
    """A reply or inform without an id belongs to the oldest request of its name that was
    sent without an id, also when one sent with an id is older."""
    raw = Raw(b"#version-connect katcp-protocol 5.0-MI\n")
    c = _start(BlockingClient, raw.port)
    try:
        assert raw.connected.wait(WAIT) and c.wait_protocol(WAIT)
        with_id: list = []
        without_id: list = []
        t1 = threading.Thread(target=lambda: with_id.append(
            c.blocking_request(Message.request("thing", "a"), timeout=WAIT)))
        t1.start()
        assert raw.wait_for(b" a\n")
        mid = raw.received.split(b"?thing[")[1].split(b"]")[0]
        t2 = threading.Thread(target=lambda: without_id.append(
            c.blocking_request(Message.request("thing", "b"), use_mid=False, timeout=WAIT)))
        t2.start()
        assert raw.wait_for(b"?thing b\n")
        raw.send(b"#thing x\n!thing ok b\n")
        t2.join(WAIT)
        reply, informs = without_id[0]
        assert reply.arguments == [b"ok", b"b"] and [m.arguments for m in informs] == [[b"x"]]
        assert not with_id
        raw.send(b"#thing[%s] y\n!thing[%s] ok a\n" % (mid, mid))
        t1.join(WAIT)
        reply, informs = with_id[0]
        assert reply.arguments == [b"ok", b"a"] and [m.arguments for m in informs] == [[b"y"]]
        assert not c._async_queue and not any(c._async_id_stack.values())
    finally:
        _stop(c)
        raw.close()


def test_unmanaged_ioloop(aio_server):
    async def main():
        c = AsyncClient("127.0.0.1", aio_server[1], timeout=WAIT)
        c.set_ioloop(tornado.ioloop.IOLoop.current())
        c.start()
        await c.until_running(timeout=WAIT)
        await c.until_connected(timeout=WAIT)
        await c.until_protocol(timeout=WAIT)
        reply, informs = await c.future_request(Message.request("informs", 1))
        assert reply.reply_ok() and len(informs) == 1
        with pytest.raises(AssertionError):
            c.blocking_request(Message.request("echo"))
        fut = c.future_request(Message.request("sleep", 5))
        c.stop()
        await c.until_stopped(timeout=WAIT)
        reply, _ = await asyncio.wait_for(fut, WAIT)
        assert b"Client stopped" in reply.arguments[1]
        assert not c.running()

    asyncio.run(asyncio.wait_for(main(), 2 * WAIT))


def test_connect_begins_in_start_and_early_socket_is_never_leaked(aio_server):
    async def main():
        loop = asyncio.get_running_loop()
        c = AsyncClient("127.0.0.1", aio_server[1], timeout=WAIT)
        c.set_ioloop(tornado.ioloop.IOLoop.current())
        c.start()
        # The TCP connect was issued inside start(), before any loop iteration...
        early = c._early_sock
        assert early is not None and early.fileno() != -1
        await c.until_protocol(timeout=WAIT)
        # ...and the first connection is made on that very socket.
        assert c._early_sock is None
        assert c._conn.transport.get_extra_info("socket").fileno() == early.fileno()
        reply, _ = await c.future_request(Message.request("echo", "x"))
        assert reply.arguments == [b"ok", b"x"]
        c.stop()
        await c.until_stopped(timeout=WAIT)

        # Stopped before the client's task took its first step: the socket is closed.
        for _ in range(2):  # and again after a restart
            c.start()
            early = c._early_sock
            assert early is not None
            c.stop()
            await c.until_stopped(timeout=WAIT)
            assert early.fileno() == -1 and c._early_sock is None
        # A host name cannot be connected up front: the regular path resolves it.
        named = AsyncClient("localhost", aio_server[1], timeout=WAIT)
        named.set_ioloop(tornado.ioloop.IOLoop.current())
        named.start()
        assert named._early_sock is None
        await named.until_protocol(timeout=WAIT)
        named.stop()
        await named.until_stopped(timeout=WAIT)
        assert loop.is_running()

    asyncio.run(asyncio.wait_for(main(), 2 * WAIT))


def test_early_connect_refused_is_retried():
    async def main():
        port = _free_port()
        c = AsyncClient("127.0.0.1", port, timeout=WAIT)
        c.auto_reconnect_delay = 0.02
        c.set_ioloop(tornado.ioloop.IOLoop.current())
        c.start()
        assert c._early_sock is not None
        # Refused: reported as a failed attempt and retried, not raised.
        await _until(lambda: c._connect_failures >= 2)
        assert c.running() and not c.is_connected()
        c.stop()
        await c.until_stopped(timeout=WAIT)

    asyncio.run(asyncio.wait_for(main(), 2 * WAIT))


async def _until(predicate, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_until_timeouts_raise():
    async def main():
        c = AsyncClient("127.0.0.1", _free_port())
        c.auto_reconnect_delay = 0.05
        c.set_ioloop(tornado.ioloop.IOLoop.current())
        c.start()
        with pytest.raises(asyncio.TimeoutError):
            await c.until_connected(timeout=0.1)
        c.stop()
        await c.until_stopped(timeout=WAIT)

    asyncio.run(asyncio.wait_for(main(), 2 * WAIT))


def test_thread_safe_methods(bclient):
    c = bclient
    mid = c.request(Message.request("echo"), timeout=WAIT)
    assert isinstance(mid, bytes)
    c.send_message(Message.request("watchdog"))
    c.disconnect()
    assert c.wait_disconnected(WAIT)
    assert c.wait_connected(WAIT)


def test_convert_seconds():
    c = DeviceClient("127.0.0.1", 1)
    c.preset_protocol_flags(ProtocolFlags(5, 0, "IM"))
    assert c.convert_seconds(1.5) == 1.5
    c.preset_protocol_flags(ProtocolFlags(4, 0, "M"))
    assert c.convert_seconds(1.5) == 1500
    c.preset_protocol_flags(ProtocolFlags(3, 0, ""))
    assert c.convert_seconds(1.0005) == 1000


# ---------------------------------------------------------------- subprocess peers

def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_reconnect_to_restarted_server():
    with peers.aiokatcp_server_process() as peer:
        c = _start(Recording, peer.port)
        try:
            assert c.wait_protocol(WAIT)
            assert c.blocking_request(Message.request("echo"))[0].reply_ok()
            out = []
            t = threading.Thread(target=lambda: out.append(
                c.blocking_request(Message.request("sleep", 5), timeout=WAIT)))
            t.start()
            deadline = time.monotonic() + WAIT
            while not c._async_queue and time.monotonic() < deadline:
                time.sleep(0.005)
            peer.kill()
            t.join(WAIT)
            assert b"Connection closed" in out[0][0].arguments[1]
            assert c.wait_disconnected(WAIT)
            reply, _ = c.blocking_request(Message.request("echo"))
            assert not reply.reply_ok()
            peer.start(peer.port)
            assert c.wait_connected(WAIT) and c.wait_protocol(WAIT)
            assert c.blocking_request(Message.request("echo", "again"))[0].arguments == [
                b"ok", b"again"]
            assert c.connected_events[:3] == [True, False, True]
        finally:
            _stop(c)


def test_katcp093_v5_server():
    with peers.katcp093_server_process() as peer:
        c = _start(BlockingClient, peer.port)
        try:
            assert c.wait_protocol(WAIT)
            assert (c.protocol_flags.major, c.protocol_flags.minor) == (5, 0)
            assert c.protocol_flags.supports(ProtocolFlags.MESSAGE_IDS)
            assert _eventually(lambda: "katcp-library" in c.versions)
            assert c.versions["katcp-library"][0].startswith("katcp-python-0.9.3")
            assert c.convert_seconds(2.0) == 2.0
            reply, informs = c.blocking_request(Message.request("informs", 2))
            assert reply.mid is not None and reply.arguments == [b"ok", b"2"]
            assert len(informs) == 2
            reply, informs = c.blocking_request(Message.request("sensor-value", "counter"))
            assert reply.reply_ok() and informs[0].arguments[-1] == b"7"
        finally:
            _stop(c)


def test_katcp093_v4_server():
    with peers.katcp093_server_process(v4=True) as peer:
        c = _start(BlockingClient, peer.port)
        try:
            assert c.wait_protocol(WAIT)
            assert c.protocol_flags.major == 4
            assert not c.protocol_flags.supports(ProtocolFlags.MESSAGE_IDS)
            assert c.convert_seconds(1.5) == 1500
            reply, informs = c.blocking_request(Message.request("informs", 3))
            assert reply.mid is None and reply.arguments == [b"ok", b"3"]
            assert len(informs) == 3
            with pytest.raises(KatcpVersionError):
                c.request(Message.request("echo"), use_mid=True)
        finally:
            _stop(c)


# ---------------------------------------------------------------- our own server

class OwnServer(DeviceServer):
    VERSION_INFO = ("own-server", 1, 0)
    BUILD_INFO = ("own-server", 1, 0, "")

    def setup_sensors(self):
        pass

    def request_echo(self, req, msg):
        """Reply with the arguments."""
        return req.make_reply("ok", *msg.arguments)

    def request_informs(self, req, msg):
        """Send N informs, then reply with N."""
        count = int(msg.arguments[0])
        for i in range(count):
            req.inform(i)
        return req.make_reply("ok", count)

    async def request_sleep(self, req, msg):
        """Sleep, then reply ok."""
        await asyncio.sleep(float(msg.arguments[0]))
        return req.make_reply("ok")

    def request_drop(self, req, msg):
        """Close this client's connection without replying."""
        req.client_connection.disconnect("asked to")
        raise AsyncReply()


class OwnServerV4(OwnServer):
    PROTOCOL_INFO = ProtocolFlags(4, 0, [ProtocolFlags.MULTI_CLIENT])


@pytest.fixture(params=[OwnServer, OwnServerV4], ids=["v5", "v4"])
def own_server(request):
    server = request.param("127.0.0.1", 0)
    server.set_concurrency_options(thread_safe=False, handler_thread=False)
    server.start(timeout=WAIT)
    yield server, request.param is OwnServerV4
    server.stop(timeout=WAIT)
    server.join(timeout=WAIT)


def test_own_server(own_server):
    server, v4 = own_server
    c = _start(BlockingClient, server.bind_address[1])
    try:
        assert c.wait_protocol(WAIT)
        assert c.protocol_flags.major == (4 if v4 else 5)
        assert c.protocol_flags.supports(ProtocolFlags.MESSAGE_IDS) is not v4
        reply, informs = c.blocking_request(Message.request("informs", 3))
        assert reply.arguments == [b"ok", b"3"] and len(informs) == 3
        assert (reply.mid is None) is v4
        # concurrent requests of the same name from several threads
        outs = []
        threads = [threading.Thread(target=lambda i=i: outs.append(
            c.blocking_request(Message.request("echo", i))[0])) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert sorted(m.arguments[1] for m in outs) == [b"%d" % i for i in range(8)]
        # (the server reads nothing more from us until the handler is done)
        reply, _ = c.blocking_request(Message.request("sleep", 0.2), timeout=0.05)
        assert b"timed out" in reply.arguments[1]
        reply, _ = c.blocking_request(Message.request("drop"), timeout=WAIT)
        assert b"Connection closed" in reply.arguments[1]
        assert c.wait_connected(WAIT) and c.wait_protocol(WAIT)
        assert _eventually(lambda: c.blocking_request(Message.request("echo"))[0].reply_ok())
    finally:
        _stop(c)


def test_inform_routing_by_mid():
    """Interleaved replies/informs of concurrent same-name requests go by mid."""
    raw = Raw(b"#version-connect katcp-protocol 5.0-IM\n")
    c = _start(Recording, raw.port)
    try:
        assert raw.connected.wait(WAIT) and c.wait_protocol(WAIT)
        outs = {}

        def run(tag):
            outs[tag] = c.blocking_request(Message.request("thing", tag), timeout=WAIT)

        threads = [threading.Thread(target=run, args=(tag,)) for tag in ("a", "b")]
        for t in threads:
            t.start()
        assert raw.wait_for(b"?thing[") and _eventually(
            lambda: raw.received.count(b"?thing[") == 2)
        mids = dict((tag, mid) for mid, tag in re.findall(rb"\?thing\[(\d+)\] (\w)", raw.received))
        mid_a, mid_b = mids[b"a"], mids[b"b"]
        raw.send(b"#thing[%s] for-b\n#thing[%s] for-a\n#thing[999] stray\n"
                 b"!thing[%s] ok b\n!thing[%s] ok a\n" % (mid_b, mid_a, mid_b, mid_a))
        for t in threads:
            t.join(WAIT)
        assert outs["a"][0].arguments == [b"ok", b"a"]
        assert [m.arguments for m in outs["a"][1]] == [[b"for-a"]]
        assert outs["b"][0].arguments == [b"ok", b"b"]
        assert [m.arguments for m in outs["b"][1]] == [[b"for-b"]]
        assert _eventually(lambda: any(m.name == "thing" and m.arguments == [b"stray"]
                                       for kind, m in c.seen if kind == "unhandled_inform"))
    finally:
        _stop(c)
        raw.close()


def test_overlong_line_from_server_fails_pending(caplog):
    raw = Raw(b"#version-connect katcp-protocol 5.0-IM\n")
    c = _start(BlockingClient, raw.port)
    try:
        assert raw.connected.wait(WAIT) and c.wait_protocol(WAIT)
        out = []
        t = threading.Thread(target=lambda: out.append(
            c.blocking_request(Message.request("thing"), timeout=WAIT)))
        t.start()
        assert raw.wait_for(b"?thing")
        try:
            raw.send(b"#junk " + b"x" * (c.MAX_MSG_SIZE + 10))
        except OSError:
            pass  # the client may already have hung up
        t.join(WAIT)
        assert not out[0][0].reply_ok()
        assert b"Connection closed" in out[0][0].arguments[1]
    finally:
        _stop(c)
        raw.close()


def test_restart_after_stop(aio_server):
    c = BlockingClient("127.0.0.1", aio_server[1])
    c.setDaemon(True)
    manager = c._ioloop_manager
    loops = []
    for i in range(2):
        c.start(timeout=WAIT)
        # The same manager runs each start on a fresh loop, in a fresh daemon thread.
        assert c._ioloop_manager is manager and c.ioloop is manager.get_ioloop()
        assert manager._ioloop_thread.daemon
        loops.append(c.ioloop)
        try:
            assert c.wait_protocol(WAIT)
            assert c.blocking_request(Message.request("echo", i))[0].arguments == [
                b"ok", b"%d" % i]
        finally:
            _stop(c)
        assert not c.running() and not c.is_connected()
    assert loops[0] is not loops[1] and loops[0].asyncio_loop.is_closed()
    with pytest.raises(RuntimeError):
        c.start(timeout=WAIT)
        c.start(timeout=WAIT)
    _stop(c)


def test_bad_request_message_raises(bclient):
    c = bclient
    with pytest.raises(ValueError):
        c.blocking_request(Message.reply("echo", "ok"))

    async def run():
        fut = c.future_request(Message.inform("echo"))
        with pytest.raises(ValueError):
            await fut
        return True

    assert call_in_loop(c, run)
    assert not c._async_queue
    assert c.blocking_request(Message.request("echo"))[0].reply_ok()


def test_timer_due_mid_burst_lets_the_reply_already_read_through():
    """A request timer that comes due while the reply has been read but is held back (a
    burst longer than the connection hands over in one loop pass) does not fail the
    request: it looks again once those messages are handed over."""

    class TimerDueMidBurst(AsyncClient):
        fired = False

        def handle_inform(self, msg):
            if msg.name == "informs" and not self.fired:
                self.fired = True
                # As if the request's timer came due now, with the rest of the burst held.
                self._loop.call_soon(self._handle_timeout, msg.mid)
            return super().handle_inform(msg)

    raw = Raw(greeting=b"#version-connect katcp-protocol 5.0-MI\n")

    async def main():
        async with running_in_loop(TimerDueMidBurst, raw.port) as c:
            c._conn.max_burst = 1  # every message is a burst of its own
            fut = c.future_request(Message.request("informs"))
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, raw.wait_for, b"?informs[")
            mid = re.search(rb"\?informs\[(\d+)\]", raw.received).group(1)
            raw.send(b"".join(b"#informs[%s] %d\n" % (mid, i) for i in range(5))
                     + b"!informs[%s] ok 5\n" % mid)
            reply, informs = await asyncio.wait_for(fut, WAIT)
            assert c.fired
            assert reply.reply_ok(), reply
            assert len(informs) == 5

    try:
        asyncio.run(asyncio.wait_for(main(), 2 * WAIT))
    finally:
        raw.close()


def test_blocking_client_start_connects_before_its_thread_runs(aio_server):
    """start() installs a managed client before its ioloop thread starts: running at once,
    the loop thread's id noted once it runs, and connected as usual."""
    c = BlockingClient("127.0.0.1", aio_server[1])
    c.start()  # no timeout: nothing waited for
    try:
        assert c.running()
        assert c.wait_protocol(WAIT)
        thread_id = call_in_loop(c, threading.get_ident)
        assert c.ioloop_thread_id == thread_id != threading.get_ident()
        reply, _ = c.blocking_request(Message.request("echo", "x"), timeout=WAIT)
        assert reply.reply_ok()
    finally:
        _stop(c)


def test_request_timeouts_share_one_timer():
    """Timeouts of any length, in any order: a later request with a shorter timeout fails
    first, a longer one keeps waiting and gets its reply; replies that came in time never
    fail; the bookkeeping of ended requests does not grow with their number."""
    raw = Raw(greeting=b"#version-connect katcp-protocol 5.0-MI\n")

    async def main():
        async with running_in_loop(AsyncClient, raw.port) as c:
            loop = asyncio.get_running_loop()
            long = c.future_request(Message.request("long"))  # the client's timeout
            never = c.future_request(Message.request("never"), timeout=0.3)
            short = c.future_request(Message.request("short"), timeout=0.05)
            ended = []
            for name, fut in (("never", never), ("short", short)):
                fut.add_done_callback(lambda _f, name=name: ended.append(name))
            for fut in (short, never):
                reply, _ = await asyncio.wait_for(fut, WAIT)
                assert reply.arguments[0] == b"fail" and b"timed out" in reply.arguments[1]
            assert ended == ["short", "never"]
            assert not long.done()
            assert await loop.run_in_executor(None, raw.wait_for, b"?long[")
            mid = int(re.search(rb"\?long\[(\d+)\]", raw.received).group(1))
            raw.send(b"!long[%d] ok\n" % mid)
            reply, _ = await asyncio.wait_for(long, WAIT)
            assert reply.reply_ok(), reply
            # Many requests answered in time: none fails, and what is kept of them stays
            # small.
            for i in range(mid + 3, mid + 303):
                fut = c.future_request(Message.request("quick"), timeout=WAIT / 2)
                assert await loop.run_in_executor(None, raw.wait_for, b"?quick[%d]" % i)
                raw.send(b"!quick[%d] ok\n" % i)
                reply, _ = await asyncio.wait_for(fut, WAIT)
                assert reply.reply_ok(), reply
                assert len(c._deadlines) <= 2 * len(c._async_queue) + 65
        assert c._timer is None  # stopping ended the timer with the requests

    try:
        asyncio.run(asyncio.wait_for(main(), 4 * WAIT))
    finally:
        raw.close()
