"""Overridable methods are the path: send_request/send_message overrides see every request.

The direct write paths (blocking_request's calling thread writes on the socket; the ioloop
writes future and callback requests at once) may skip them only in classes that override
neither; both kinds of class are tested over a real server.
"""

from __future__ import annotations

import threading

import pytest

from katcp._client.base import DeviceClient
from katcp.client import AsyncClient, BlockingClient, CallbackClient
from katcp.core import Message
from katcp.server import DeviceServer

WAIT = 10.0
N = 20


class EchoServer(DeviceServer):
    VERSION_INFO = ("override-test", 1, 0)
    BUILD_INFO = ("override-test", 1, 0, "")

    def setup_sensors(self):
        pass

    def request_echo(self, req, msg):
        """Reply with the arguments."""
        return req.make_reply("ok", *msg.arguments)


class AuditRequests(BlockingClient):
    """Logs every request it sends through send_request."""

    def __init__(self, *args, **kwargs):
        self.audit = []
        self.audit_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def send_request(self, msg):
        with self.audit_lock:
            self.audit.append(bytes(msg))
        super().send_request(msg)


class AuditMessages(BlockingClient):
    """Logs every message it sends through send_message."""

    def __init__(self, *args, **kwargs):
        self.audit = []
        self.audit_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def send_message(self, msg):
        with self.audit_lock:
            self.audit.append(bytes(msg))
        DeviceClient.send_message(self, msg)


class PlainCounting(BlockingClient):
    """Overrides nothing on the send path; counts the direct writes."""

    def _start_request_direct(self, msg, pending, use_mid):
        sent = super()._start_request_direct(msg, pending, use_mid)
        self.direct = getattr(self, "direct", 0) + sent
        return sent

    def _write_request_now(self, msg):
        sent = super()._write_request_now(msg)
        if sent:
            self.in_loop.append(bytes(msg))
        return sent


@pytest.fixture(scope="module")
def server():
    srv = EchoServer("127.0.0.1", 0)
    srv.start(timeout=WAIT)
    yield srv
    srv.stop()
    srv.join(WAIT)


def _client(cls, server):
    c = cls("127.0.0.1", server.bind_address[1])
    c.in_loop = []  # requests PlainCounting wrote from the ioloop past send_request
    c.start(timeout=WAIT)
    assert c.wait_protocol(WAIT)
    return c


def _stop(c):
    c.stop()
    c.join(WAIT)


def test_direct_path_chosen_per_class():
    assert AsyncClient._direct_writes and CallbackClient._direct_writes
    assert BlockingClient._direct_writes and PlainCounting._direct_writes
    assert not AuditRequests._direct_writes
    assert not AuditMessages._direct_writes

    class Sub(AuditRequests):
        pass

    assert not Sub._direct_writes  # inherited overrides count too


def _all_paths(c):
    """Send N requests each by blocking_request, future_request and callback_request."""
    for i in range(N):
        reply, _ = c.blocking_request(Message.request("echo", "b", i), timeout=WAIT)
        assert reply.reply_ok(), reply
    futures = [c.future_request(Message.request("echo", "f", i)) for i in range(N)]
    done = threading.Semaphore(0)
    replies = []

    def reply_cb(msg):
        replies.append(msg)
        done.release()

    for i in range(N):
        c.callback_request(Message.request("echo", "c", i), reply_cb=reply_cb)
    for _ in range(N):
        assert done.acquire(timeout=WAIT)
    for fut in futures:
        reply, _ = _result(c, fut)
        assert reply.reply_ok(), reply
    assert all(r.reply_ok() for r in replies)


def _result(c, fut):
    event = threading.Event()
    c.ioloop.add_callback(lambda: fut.add_done_callback(lambda _f: event.set()))
    assert event.wait(WAIT)
    return fut.result()


def _kinds(audit):
    out = {}
    for line in audit:
        parts = line.split()
        assert parts[0].startswith(b"?echo"), line
        out.setdefault(parts[1], []).append(int(parts[2]))
    return out


@pytest.mark.parametrize("cls", [AuditRequests, AuditMessages])
def test_override_sees_every_request(cls, server):
    c = _client(cls, server)
    try:
        _all_paths(c)
        kinds = _kinds(c.audit)
        assert kinds[b"b"] == list(range(N))
        assert sorted(kinds[b"f"]) == list(range(N))
        assert sorted(kinds[b"c"]) == list(range(N))
    finally:
        _stop(c)


def test_plain_class_takes_the_direct_path(server):
    c = _client(PlainCounting, server)
    try:
        _all_paths(c)
        assert c.direct == N  # every blocking_request went out from the calling thread
        # ... and every future and callback request from the ioloop, past send_request.
        kinds = _kinds(c.in_loop)
        assert sorted(kinds[b"f"]) == list(range(N))
        assert sorted(kinds[b"c"]) == list(range(N))
    finally:
        _stop(c)


def test_thread_safety_assigns_no_methods_on_the_instance(server):
    """enable_thread_safety() flips a flag; the marked methods decide per call."""
    c = _client(BlockingClient, server)
    try:
        assert c.threadsafe
        assert not any(callable(v) for v in vars(c).values() if not isinstance(v, type))
        assert BlockingClient.send_message.make_threadsafe_blocking
        assert BlockingClient.callback_request.make_threadsafe
        # From this (non-loop) thread: send_message runs in the loop and blocks for it.
        c.send_message(Message.request("echo", "direct"), timeout=WAIT)
    finally:
        _stop(c)


class _Audited(BlockingClient):
    def __init__(self, *args, **kwargs):
        self.audit = []
        self.audit_lock = threading.Lock()
        super().__init__(*args, **kwargs)


class SeesReplies(_Audited):
    """Counts every reply that reaches handle_reply."""

    def handle_reply(self, msg):
        with self.audit_lock:
            self.audit.append(bytes(msg))
        return super().handle_reply(msg)


class SeesMessages(_Audited):
    """Counts every reply that reaches handle_message."""

    def handle_message(self, msg):
        if msg.mtype == Message.REPLY:
            with self.audit_lock:
                self.audit.append(bytes(msg))
        return super().handle_message(msg)


def test_reply_path_chosen_per_class():
    from katcp._client.base import _ClientHandler
    from katcp._client.requests import _RequestHandler

    assert AsyncClient._handler_class is _RequestHandler
    assert BlockingClient._handler_class is _RequestHandler
    assert PlainCounting._handler_class is _RequestHandler
    assert SeesReplies._handler_class is _ClientHandler
    assert SeesMessages._handler_class is _ClientHandler

    class Sub(SeesReplies):
        pass

    assert Sub._handler_class is _ClientHandler  # inherited overrides count too


@pytest.mark.parametrize("cls", [SeesReplies, SeesMessages])
def test_dispatch_override_sees_every_reply(cls, server):
    c = _client(cls, server)
    try:
        _all_paths(c)
        kinds: dict = {}
        with c.audit_lock:
            for line in c.audit:
                parts = line.split()
                if parts[0].startswith(b"!echo"):
                    assert parts[1] == b"ok", line
                    kinds.setdefault(parts[2], []).append(int(parts[3]))
        for kind in (b"b", b"f", b"c"):
            assert sorted(kinds[kind]) == list(range(N))
    finally:
        _stop(c)
