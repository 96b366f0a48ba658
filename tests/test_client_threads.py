"""blocking_request from plain threads: the request is sent by the calling thread.

Only the reply crosses threads (one hand-off per request). These tests hold
the client's ioloop still to show which requests leave without it, and that
ordering, timeouts and disconnects still behave.
"""

from __future__ import annotations

import threading
import time

import pytest

from katcp._aio import lowlevel
from katcp.client import BlockingClient
from katcp.core import Message, ProtocolFlags
from katcp.server import DeviceServer

WAIT = 10.0


class MarkServer(DeviceServer):
    VERSION_INFO = ("mark-server", 1, 0)
    BUILD_INFO = ("mark-server", 1, 0, "")

    def setup_sensors(self):
        self.marks = []
        self.marked = threading.Condition()

    def request_mark(self, req, msg):
        """Record the argument; reply with it."""
        with self.marked:
            self.marks.append(msg.arguments[0])
            self.marked.notify_all()
        return req.make_reply("ok", *msg.arguments)

    def wait_marks(self, n, timeout=WAIT):
        with self.marked:
            return self.marked.wait_for(lambda: len(self.marks) >= n, timeout)


class MarkServerV4(MarkServer):
    PROTOCOL_INFO = ProtocolFlags(4, 0, [ProtocolFlags.MULTI_CLIENT])


def _server(cls):
    server = cls("127.0.0.1", 0)
    server.start(timeout=WAIT)
    return server


@pytest.fixture
def server():
    s = _server(MarkServer)
    yield s
    s.stop(timeout=WAIT)
    s.join(timeout=WAIT)


def _client(port):
    c = BlockingClient("127.0.0.1", port, timeout=WAIT)
    c.auto_reconnect_delay = 0.05
    c.start(timeout=WAIT)
    assert c.wait_protocol(WAIT)
    return c


@pytest.fixture
def client(server):
    c = _client(server.bind_address[1])
    yield c
    c.stop(timeout=WAIT)
    c.join(timeout=WAIT)


class LoopHold:
    """Keep a client's ioloop busy until released."""

    def __init__(self, client):
        self._release = threading.Event()
        held = threading.Event()

        def hold():
            held.set()
            self._release.wait(WAIT)

        client.ioloop.add_callback(hold)
        assert held.wait(WAIT)

    def release(self):
        self._release.set()


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    return t, out


#: Requests leave from the calling thread only where the socket may be written directly
#: (asyncio's selector loop, reached through katcp._aio.lowlevel); the public-API fallback
#: hands them to the ioloop, which these tests hold on purpose.
direct_writes = pytest.mark.skipif(
    not lowlevel.USE_PRIVATE,
    reason="KATCP_ASYNCIO_PUBLIC_ONLY: requests from threads go through the ioloop")


@direct_writes
def test_request_leaves_while_the_ioloop_is_busy(server, client):
    hold = LoopHold(client)
    try:
        t, out = _in_thread(lambda: client.blocking_request(Message.request("mark", "a")))
        # The server has the request although the client's ioloop never ran.
        assert server.wait_marks(1)
    finally:
        hold.release()
    t.join(WAIT)
    reply, informs = out[0]
    assert reply.arguments == [b"ok", b"a"] and reply.mid is not None and informs == []


@pytest.fixture
def v4_server():
    s = _server(MarkServerV4)
    yield s
    s.stop(timeout=WAIT)
    s.join(timeout=WAIT)


@direct_writes
def test_without_message_ids_too_the_request_leaves_from_the_thread(v4_server):
    c = _client(v4_server.bind_address[1])
    try:
        assert not c.protocol_flags.supports(ProtocolFlags.MESSAGE_IDS)
        hold = LoopHold(c)
        try:
            t, out = _in_thread(lambda: c.blocking_request(Message.request("mark", "v4")))
            assert v4_server.wait_marks(1)
        finally:
            hold.release()
        t.join(WAIT)
        assert out[0][0].arguments == [b"ok", b"v4"] and out[0][0].mid is None
    finally:
        c.stop(timeout=WAIT)
        c.join(timeout=WAIT)


def test_without_message_ids_same_name_requests_of_many_threads_match(v4_server):
    """Replies are matched by name, oldest first: the wire order must be the order in
    which requests were registered, whether threads or the ioloop sent them."""
    c = _client(v4_server.bind_address[1])
    n, threads = 100, 6
    errors = []
    callback_replies = []

    def worker(k):
        for i in range(n):
            tag = f"{k}-{i}"
            if i % 10 == 0:
                # Also requests sent by the ioloop, in between.
                c.ioloop.add_callback(c.callback_request, Message.request("mark", f"cb{tag}"),
                                      reply_cb=callback_replies.append)
            reply, _ = c.blocking_request(Message.request("mark", tag))
            if reply.arguments != [b"ok", tag.encode()]:
                errors.append((tag, reply))

    try:
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(WAIT)
            assert not t.is_alive()
        assert errors == []
        deadline = time.monotonic() + WAIT
        while len(callback_replies) < threads * n // 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(m.arguments[1] for m in callback_replies) == sorted(
            f"cb{k}-{i}".encode() for k in range(threads) for i in range(0, n, 10))
        assert not c._async_queue
    finally:
        c.stop(timeout=WAIT)
        c.join(timeout=WAIT)


def test_a_thread_keeps_its_order_after_a_scheduled_call(server, client):
    """callback_request then blocking_request from one thread reach the server in order."""
    hold = LoopHold(client)
    got = []

    def calls():
        client.callback_request(Message.request("mark", "first"), reply_cb=got.append)
        return client.blocking_request(Message.request("mark", "second"))

    try:
        t, out = _in_thread(calls)
        # "second" must not overtake "first", which waits for the ioloop.
        assert not server.wait_marks(1, timeout=0.2)
    finally:
        hold.release()
    t.join(WAIT)
    assert out[0][0].arguments == [b"ok", b"second"]
    assert server.wait_marks(2) and server.marks == [b"first", b"second"]
    assert got and got[0].arguments == [b"ok", b"first"]


def test_timeout_while_the_ioloop_is_busy(server, client):
    """The calling thread times out by itself: a stuck ioloop cannot hang it."""
    hold = LoopHold(client)
    try:
        t0 = time.monotonic()
        reply, informs = client.blocking_request(Message.request("mark", "late"), timeout=0.2)
        elapsed = time.monotonic() - t0
    finally:
        hold.release()
    assert 0.15 < elapsed < 5
    assert reply.arguments[0] == b"fail" and b"timed out after" in reply.arguments[1]
    assert informs == []
    assert server.wait_marks(1)
    # The late reply is dropped harmlessly and the client carries on.
    assert client.blocking_request(Message.request("mark", "next"))[0].arguments == [b"ok",
                                                                                    b"next"]
    assert not client._async_queue


def test_many_threads_each_get_their_own_replies(server, client):
    n, threads = 150, 6
    errors = []

    def worker(k):
        for i in range(n):
            tag = f"{k}-{i}"
            reply, _ = client.blocking_request(Message.request("mark", tag))
            if reply.arguments != [b"ok", tag.encode()]:
                errors.append((tag, reply))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WAIT)
        assert not t.is_alive()
    assert errors == []
    assert len(server.marks) == n * threads
    assert not client._async_queue


def test_every_request_ends_while_the_connection_keeps_dropping(server, client):
    """Threads fire requests while the connection is dropped under them: none hangs."""
    stop = threading.Event()
    results = []
    lock = threading.Lock()

    def worker(k):
        i = 0
        while not stop.is_set():
            tag = f"{k}-{i}"
            reply, _ = client.blocking_request(Message.request("mark", tag), timeout=WAIT)
            with lock:
                results.append((tag, reply))
            if not reply.reply_ok():
                client.wait_protocol(WAIT)
            i += 1

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for _ in range(5):
        time.sleep(0.05)
        client.disconnect()
        assert client.wait_protocol(WAIT)
    time.sleep(0.05)
    stop.set()
    for t in ts:
        t.join(WAIT)
        assert not t.is_alive()
    ok = [(tag, r) for tag, r in results if r.reply_ok()]
    failed = [r for _, r in results if not r.reply_ok()]
    assert ok and all(r.arguments == [b"ok", tag.encode()] for tag, r in ok)
    assert all(r.arguments[0] == b"fail" for r in failed)
    assert not client._async_queue


@pytest.mark.parametrize("timeout", [0, -1.5])
def test_zero_or_negative_timeout_fails_at_once(server, client, timeout):
    hold = LoopHold(client)
    try:
        reply, informs = client.blocking_request(Message.request("mark", "now"),
                                                 timeout=timeout)
    finally:
        hold.release()
    assert reply.arguments[0] == b"fail" and b"timed out after" in reply.arguments[1]
    assert client.blocking_request(Message.request("mark", "next"))[0].reply_ok()


def test_threads_that_wait_at_once_for_the_connection_all_see_it(server, monkeypatch):
    """Two threads that start waiting together share the Event behind the wait: one that
    made its own Event as the other did, and had it replaced, slept through the connection
    until its timeout."""
    c = BlockingClient("127.0.0.1", server.bind_address[1], timeout=WAIT)
    waiters = [threading.Thread(target=lambda: seen.append(c.wait_connected(WAIT)))
               for _ in range(2)]
    seen: list = []
    real_event = threading.Event
    made: list = []

    def slow_first_event():
        made.append(threading.current_thread())
        if len(made) == 1:
            time.sleep(0.2)  # the other waiter arrives meanwhile (a window, not a timing)
        return real_event()

    monkeypatch.setattr(threading, "Event", slow_first_event)
    for t in waiters:
        t.start()
    time.sleep(0.5)  # both are waiting by now (if not, the test is merely weaker)
    monkeypatch.setattr(threading, "Event", real_event)
    c.start(timeout=WAIT)
    try:
        for t in waiters:
            t.join(WAIT + 5)
        assert seen == [True, True]
        assert sum(1 for t in made if t in waiters) == 1  # one Event for both
    finally:
        c.stop(timeout=WAIT)
        c.join(timeout=WAIT)
