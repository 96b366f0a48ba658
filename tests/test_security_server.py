"""Secured servers and clients over real (TLS) sockets: login, roles, audit, mismatches.

A ``DeviceServer`` with ``ssl=`` and ``users=`` against raw sockets (to see every byte a
client is sent), ``BlockingClient``/``AsyncClient`` with ``ssl=`` and ``login()``,
``KATCPClientResource`` and the container with ``ssl``/``user``/``password`` specs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time

import pytest
import tornado.ioloop

from katcp import resource_client
from katcp._security.access import AccessControl
from katcp._security.audit import close_audit_log, open_audit_log
from katcp._security.backoff import LoginBackoff
from katcp._security.passwords import ScryptParams
from katcp._security.tls import client_context, server_context
from katcp._security.userstore import UserStore
from katcp.client import AsyncClient, BlockingClient
from katcp.core import KatcpClientError, Message
from katcp.kattypes import request, requires_role, return_reply, Str
from katcp.server import AsyncDeviceServer, DeviceServer

from _security_pki import make_pki

TIMEOUT = 5.0
SECRET = "Sup3r-s3cret-PASSWORD-8c1e"
FAST = ScryptParams(n=2**8)


class Instrument(DeviceServer):
    VERSION_INFO = ("instrument", 1, 0)
    BUILD_INFO = ("instrument", 1, 0, "")

    def setup_sensors(self):
        pass

    @request(Str())
    @return_reply(Str())
    def request_set_mode(self, req, mode):
        """Control request."""
        return ("ok", mode)

    @requires_role("read")
    @request()
    @return_reply()
    def request_status(self, req):
        """A read-only custom request."""
        return ("ok",)

    @requires_role("admin")
    @request()
    @return_reply()
    def request_shutdown_rf(self, req):
        """Admin-only custom request."""
        return ("ok",)

    @request()
    @return_reply()
    def request_crash(self, req):
        """Raises: a secured server must not send the traceback."""
        raise RuntimeError(f"internal detail {SECRET[:4]}-trace")

    @requires_role("admin")
    @request()
    @return_reply()
    async def request_slow_admin(self, req):
        """An async admin request, audited when its future resolves."""
        await asyncio.sleep(0.01)
        return ("ok",)


class AsyncInstrument(AsyncDeviceServer, Instrument):
    pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def store(tmp_path, pki):
    users = UserStore(tmp_path / "users.db", params=FAST)
    users.add_user("reader", SECRET, "read")
    users.add_user("operator", SECRET, "control")
    users.add_user("boss", SECRET, "admin")
    users.add_user("alice", SECRET + "-alice", "control", subject=pki.alice_subject)
    return users


@pytest.fixture
def audit_file(tmp_path):
    path = tmp_path / "audit.log"
    handler = open_audit_log(path)
    yield path
    close_audit_log(handler)


@pytest.fixture
def all_logs():
    """Every log record of every logger, at DEBUG, while the test runs."""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    root = logging.getLogger()
    handler = Keep(logging.DEBUG)
    old = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield records
    root.removeHandler(handler)
    root.setLevel(old)


def start_server(cls, store, pki, *, client_ca=None, login_timeout=30.0, backoff=None,
                 tls=True):
    access = AccessControl(store, login_timeout=login_timeout,
                           backoff=backoff or LoginBackoff(base=0.2, cap=1.0))
    ctx = server_context(pki.server_cert, pki.server_key, client_ca=client_ca) if tls else None
    server = cls("127.0.0.1", 0, ssl=ctx, users=access)
    server.start(timeout=TIMEOUT)
    return server


def stop(server):
    server.stop()
    server.join(timeout=TIMEOUT)


@pytest.fixture(params=[Instrument, AsyncInstrument], ids=["threaded", "async"])
def secured(request, store, pki):
    cls = request.param
    if cls is AsyncInstrument:
        # AsyncDeviceServer runs on the caller's loop: give it a managed thread of its own.
        loop_ready = threading.Event()
        box = {}

        def run():
            asyncio.set_event_loop(asyncio.new_event_loop())
            box["ioloop"] = tornado.ioloop.IOLoop.current()
            loop_ready.set()
            box["ioloop"].start()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        loop_ready.wait(TIMEOUT)
        done = threading.Event()

        def make():
            box["server"] = start_server(cls, store, pki)
            done.set()

        box["ioloop"].add_callback(make)
        done.wait(TIMEOUT)
        server = box["server"]
        for _ in range(100):
            if server.running():
                break
            time.sleep(0.02)
        yield server
        box["ioloop"].add_callback(server.stop)
        time.sleep(0.1)
        box["ioloop"].add_callback(box["ioloop"].stop)
        thread.join(TIMEOUT)
    else:
        server = start_server(cls, store, pki)
        yield server
        stop(server)


class RawTLS:
    """A line-based TLS client on a plain socket that records every byte it receives."""

    def __init__(self, server, pki, cert=None, key=None):
        ctx = client_context(cafile=pki.ca_cert, certfile=cert, keyfile=key)
        host, port = server.bind_address
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.received = b""
        self.pos = 0
        self.read_until(b"#version-connect katcp-device")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def read_until(self, marker: bytes) -> bytes:
        """Bytes from the last one read up to the end of the line holding ``marker``."""
        start = self.pos
        deadline = time.monotonic() + TIMEOUT
        while True:
            found = self.received.find(marker, start)
            if found >= 0 and b"\n" in self.received[found:]:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} in {self.received[start:]!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; got {self.received[start:]!r}")
            self.received += chunk
        self.pos = self.received.index(b"\n", found) + 1
        return self.received[start:self.pos]

    def reply(self, line: str) -> str:
        """Send a request; return its reply line (informs before it are kept too)."""
        self.send(line)
        name = line.split()[0].lstrip("?")
        text = self.read_until(f"!{name} ".encode()).decode()
        return [ln for ln in text.splitlines() if ln.startswith(f"!{name} ")][0]

    def close(self):
        self.sock.close()


def audit_lines(path):
    return [dict(f.split("=", 1) for f in line.split(" ")[1:])
            for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------ the wire


def test_before_login_only_four_requests(secured, pki):
    raw = RawTLS(secured, pki)
    try:
        assert raw.reply("?watchdog") == "!watchdog ok"
        assert raw.reply("?version-list").startswith("!version-list ok")
        assert raw.reply("?help").startswith("!help ok")
        for req in ("?sensor-list", "?sensor-value", "?halt", "?set-mode x", "?client-list",
                    "?status", "?no-such-request", "?log-level"):
            name = req.split()[0][1:]
            assert raw.reply(req) == (f"!{name} fail Login\\_required:\\_send\\_?login"
                                      "\\_USER\\_PASSWORD\\_first.")
    finally:
        raw.close()


def test_help_lists_login(secured, pki):
    """?login has no handler method, but a client learns it from ?help like any request."""
    raw = RawTLS(secured, pki)
    try:
        raw.send("?help login")
        lines = raw.read_until(b"!help ").decode().splitlines()
        assert lines[-1] == "!help ok 1"
        assert lines[0].startswith("#help login Log\\_in:\\_?login\\_USER\\_PASSWORD.")
        raw.send("?help")
        lines = raw.read_until(b"!help ").decode().splitlines()
        names = [line.split()[1] for line in lines if line.startswith("#help")]
        assert "login" in names and names == sorted(names)
        assert lines[-1] == f"!help ok {len(names)}"
    finally:
        raw.close()


@pytest.mark.parametrize("user,allowed,refused", [
    ("reader", ["?sensor-list", "?sensor-value", "?client-list", "?log-level", "?status",
                "?watchdog", "?help"],
     [("?set-mode x", "control"), ("?sensor-sampling-clear", "control"),
      ("?halt", "admin"), ("?restart", "admin"), ("?log-level debug", "admin"),
      ("?shutdown-rf", "admin")]),
    ("operator", ["?sensor-list", "?set-mode x", "?sensor-sampling-clear", "?log-level"],
     [("?halt", "admin"), ("?restart", "admin"), ("?log-level debug", "admin"),
      ("?shutdown-rf", "admin")]),
    ("boss", ["?set-mode x", "?log-level warn", "?shutdown-rf", "?slow-admin"], []),
])
def test_roles_over_the_wire(secured, pki, user, allowed, refused):
    raw = RawTLS(secured, pki)
    try:
        role = {"reader": "read", "operator": "control", "boss": "admin"}[user]
        assert raw.reply(f"?login {user} {SECRET}") == f"!login ok {role}"
        for req in allowed:
            name = req.split()[0][1:]
            assert raw.reply(req).startswith(f"!{name} ok"), req
        for req, needed in refused:
            name = req.split()[0][1:]
            assert raw.reply(req) == (f"!{name} fail Permission\\_denied:\\_?{name}"
                                      f"\\_needs\\_the\\_{needed}\\_role."), req
    finally:
        raw.close()


def test_wrong_password_and_backoff(secured, pki):
    raw = RawTLS(secured, pki)
    try:
        assert raw.reply("?login operator wrong") == "!login fail Login\\_failed."
        assert raw.reply("?login nobody wrong") .startswith("!login fail Too\\_many")
        time.sleep(0.45)  # the address's second failure waits 0.4 s
        assert raw.reply("?login nobody wrong") == "!login fail Login\\_failed."
        assert raw.reply("?set-mode x").startswith("!set-mode fail Login\\_required")
        time.sleep(0.85)
        assert raw.reply(f"?login operator {SECRET}") == "!login ok control"
        assert raw.reply("?login boss") == "!login fail Usage:\\_?login\\_USER\\_PASSWORD"
    finally:
        raw.close()


def test_login_then_pipelined_requests_keep_their_order(secured, pki):
    raw = RawTLS(secured, pki)
    try:
        raw.send(f"?login[1] operator {SECRET}\n?set-mode[2] fast\n?halt[3]")
        text = raw.read_until(b"!halt[3]").decode()
        replies = [ln for ln in text.splitlines() if ln.startswith("!")]
        assert replies == ["!login[1] ok control", "!set-mode[2] ok fast",
                           "!halt[3] fail Permission\\_denied:\\_?halt\\_needs\\_the"
                           "\\_admin\\_role."]
    finally:
        raw.close()


def test_informs_and_replies_ignored_before_login(pki, store):
    class Listening(Instrument):
        informs: list = []

        def inform_note(self, conn, msg):
            self.informs.append(msg)

    server = start_server(Listening, store, pki)
    try:
        raw = RawTLS(server, pki)
        raw.send("#note before")
        raw.send("!unexpected ok")
        raw.reply("?watchdog")
        assert Listening.informs == []
        assert b"Unexpected reply" not in raw.received
        raw.reply(f"?login reader {SECRET}")
        raw.send("#note after")
        raw.reply("?watchdog")
        assert [m.arguments for m in Listening.informs] == [[b"after"]]
        raw.close()
    finally:
        stop(server)


def test_no_traceback_to_the_peer(secured, pki):
    raw = RawTLS(secured, pki)
    try:
        raw.reply(f"?login operator {SECRET}")
        reply = raw.reply("?crash")
        assert reply.startswith("!crash fail Internal\\_error\\_(RuntimeError)")
        assert "Traceback" not in reply and "trace" not in reply.split("(RuntimeError)")[1]
    finally:
        raw.close()


def test_audit_lines(secured, pki, audit_file):
    raw = RawTLS(secured, pki)
    try:
        raw.reply("?login operator wrong")
        time.sleep(0.25)
        raw.reply(f"?login boss {SECRET}")
        raw.reply("?sensor-list")  # read: not audited
        raw.reply("?set-mode x")
        raw.reply("?log-level")  # query: read
        raw.reply("?log-level warn")
        raw.reply("?slow-admin")
        raw.reply("?crash")
    finally:
        raw.close()
    time.sleep(0.1)
    lines = audit_lines(audit_file)
    assert [(f["event"], f["user"], f["request"], f["status"]) for f in lines] == [
        ("login", "operator", "login", "fail"),
        ("login", "boss", "login", "ok"),
        ("request", "boss", "set-mode", "ok"),
        ("request", "boss", "log-level", "ok"),
        ("request", "boss", "slow-admin", "ok"),
        ("request", "boss", "crash", "fail"),
    ]
    assert all(f["addr"].startswith("127.0.0.1:") for f in lines)


def test_login_timeout_closes_and_audits(store, pki, audit_file):
    server = start_server(Instrument, store, pki, login_timeout=0.3)
    try:
        raw = RawTLS(server, pki)
        raw.reply("?watchdog")
        with pytest.raises(ConnectionError):
            raw.read_until(b"never")
        assert b"#disconnect Login\\_timeout." in raw.received
        raw.close()
        logged_in = RawTLS(server, pki)
        logged_in.reply(f"?login reader {SECRET}")
        time.sleep(0.5)
        assert logged_in.reply("?watchdog") == "!watchdog ok"  # still connected
        logged_in.close()
    finally:
        stop(server)
    events = [f["event"] for f in audit_lines(audit_file)]
    assert events == ["login-timeout", "login"]


def test_client_certificate_logs_in(store, pki, audit_file):
    server = start_server(Instrument, store, pki, client_ca=pki.ca_cert)
    try:
        raw = RawTLS(server, pki, cert=pki.alice_cert, key=pki.alice_key)
        assert raw.reply("?set-mode x") == "!set-mode ok x"
        assert raw.reply("?halt").startswith("!halt fail Permission")
        raw.close()
    finally:
        stop(server)
    (first, *_) = audit_lines(audit_file)
    assert first["event"] == "login" and first["user"] == "alice"
    assert first["request"] == "certificate" and first["status"] == "ok"


def test_unknown_certificate_must_still_log_in(store, pki):
    store.set_subject("alice", None)
    server = start_server(Instrument, store, pki, client_ca=pki.ca_cert)
    try:
        raw = RawTLS(server, pki, cert=pki.alice_cert, key=pki.alice_key)
        assert raw.reply("?set-mode x").startswith("!set-mode fail Login\\_required")
        assert raw.reply(f"?login alice {SECRET}-alice") == "!login ok control"
        raw.close()
    finally:
        stop(server)


def test_no_password_in_db_logs_or_wire(store, pki, audit_file, all_logs, tmp_path):
    server = start_server(Instrument, store, pki)
    client = BlockingClient(*server.bind_address, ssl=client_context(cafile=pki.ca_cert),
                            timeout=TIMEOUT)
    client._logger.setLevel(logging.DEBUG)
    client.start()
    try:
        assert client.wait_protocol(TIMEOUT)
        raw = RawTLS(server, pki)
        raw.reply(f"?login operator {SECRET}x")  # wrong
        time.sleep(0.25)
        raw.reply(f"?login operator {SECRET}")
        raw.reply(f"?login operator {SECRET} extra")
        raw.send(f"?login operator {SECRET}\0bad")
        raw.reply("?watchdog")
        assert client.login("boss", SECRET) == "admin"
        with pytest.raises(KatcpClientError, match="Login failed"):
            client.login("boss", SECRET + "-wrong")
        raw.close()
    finally:
        client.stop()
        client.join(TIMEOUT)
        stop(server)
    secrets = (SECRET.encode(), (SECRET + "-wrong").encode())
    for secret in secrets:
        assert secret not in raw.received
        for name in os.listdir(tmp_path):
            assert secret not in (tmp_path / name).read_bytes(), name
        for record in all_logs:
            text = record.getMessage()
            if record.exc_info:
                text += logging.Formatter().formatException(record.exc_info)
            assert secret.decode() not in text, (record.name, text)
    assert any("login" in r.getMessage() for r in all_logs if r.name == "katcp.audit")
    assert any(b"<redacted>" in (r.args[1] if len(r.args) > 1 and isinstance(r.args[1], bytes)
                                 else b"") for r in all_logs if isinstance(r.args, tuple))


# ------------------------------------------------------------------------ clients


def test_blocking_client_login_and_relogin_after_reconnect(store, pki):
    server = start_server(Instrument, store, pki)
    client = BlockingClient(*server.bind_address, ssl=client_context(cafile=pki.ca_cert),
                            timeout=TIMEOUT)
    client.auto_reconnect_delay = 0.05
    client.start()
    try:
        assert client.wait_protocol(TIMEOUT)
        reply, _ = client.blocking_request(Message.request("set-mode", "a"))
        assert not reply.reply_ok()
        assert client.login("operator", SECRET) == "control"
        assert client.blocking_request(Message.request("set-mode", "b"))[0].reply_ok()
        client.disconnect()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if client.is_connected():
                reply, _ = client.blocking_request(Message.request("set-mode", "c"))
                if reply.reply_ok():
                    break
            time.sleep(0.05)
        assert reply.reply_ok(), reply  # logged in again by itself
    finally:
        client.stop()
        client.join(TIMEOUT)
        stop(server)


def test_async_client_login(store, pki):
    server = start_server(Instrument, store, pki)

    async def main():
        client = AsyncClient(*server.bind_address, ssl=client_context(cafile=pki.ca_cert),
                             timeout=TIMEOUT)
        client.set_ioloop(tornado.ioloop.IOLoop.current())
        client.start()
        await client.until_protocol(timeout=TIMEOUT)
        assert await client.login("reader", SECRET) == "read"
        reply, _ = await client.future_request(Message.request("set-mode", "x"))
        assert b"needs the control role" in reply.arguments[1]
        with pytest.raises(KatcpClientError, match="Login failed"):
            await client.login("reader", "nope")
        client.stop()
        await client.until_stopped()

    try:
        asyncio.run(asyncio.wait_for(main(), TIMEOUT * 2))
    finally:
        stop(server)


def test_plaintext_client_to_tls_server_gets_a_clear_error(store, pki):
    server = start_server(Instrument, store, pki)
    client = BlockingClient(*server.bind_address, timeout=TIMEOUT)
    client.start()
    try:
        assert client.wait_connected(TIMEOUT)
        t0 = time.monotonic()
        reply, _ = client.blocking_request(Message.request("watchdog"), timeout=TIMEOUT)
        assert time.monotonic() - t0 < TIMEOUT
        assert not reply.reply_ok()
        assert "may be a TLS server" in client.last_connect_error
    finally:
        client.stop()
        client.join(TIMEOUT)
        stop(server)


def test_plaintext_client_waiting_for_the_greeting_is_told(store, pki):
    server = start_server(Instrument, store, pki)
    client = BlockingClient(*server.bind_address, timeout=TIMEOUT)
    client.start()
    try:
        t0 = time.monotonic()
        assert not client.wait_protocol(1.0)
        assert time.monotonic() - t0 < 3.0
        assert "may be a TLS server" in client.last_connect_error
    finally:
        client.stop()
        client.join(TIMEOUT)
        stop(server)


def test_tls_client_to_plaintext_server_gets_a_clear_error(store, pki):
    server = start_server(Instrument, store, pki, tls=False)
    client = BlockingClient(*server.bind_address, ssl=client_context(cafile=pki.ca_cert),
                            timeout=TIMEOUT)
    client.start()
    try:
        t0 = time.monotonic()
        while client.last_connect_error is None and time.monotonic() - t0 < TIMEOUT:
            time.sleep(0.02)
        assert "does not seem to speak TLS" in client.last_connect_error
        assert not client.is_connected()
    finally:
        client.stop()
        client.join(TIMEOUT)
        stop(server)


@pytest.mark.parametrize("cafile,reason", [("other_ca_cert", "certificate check failed"),
                                           (None, "certificate check failed")])
def test_untrusted_server_certificate(store, pki, cafile, reason):
    server = start_server(Instrument, store, pki)
    ctx = client_context(cafile=getattr(pki, cafile) if cafile else None)
    client = BlockingClient(*server.bind_address, ssl=ctx, timeout=TIMEOUT)
    client.start()
    try:
        t0 = time.monotonic()
        while client.last_connect_error is None and time.monotonic() - t0 < TIMEOUT:
            time.sleep(0.02)
        assert reason in client.last_connect_error
    finally:
        client.stop()
        client.join(TIMEOUT)
        stop(server)


def test_client_rejects_non_context_ssl():
    with pytest.raises(TypeError):
        BlockingClient("127.0.0.1", 1, ssl=True)


def test_resource_client_and_container_with_ssl_and_login(store, pki):
    server = start_server(Instrument, store, pki)
    host, port = server.bind_address
    ctx = client_context(cafile=pki.ca_cert)
    spec = dict(name="inst", address=(host, port), controlled=True, ssl=ctx,
                user="operator", password=SECRET)
    container_spec = dict(name="fleet", ssl=ctx, user="reader", password=SECRET,
                          clients={"a": dict(address=(host, port), controlled=True),
                                   "b": dict(address=(host, port), controlled=True,
                                             user="operator", password=SECRET)})

    async def main():
        res = resource_client.KATCPClientResource(spec)
        res.set_ioloop(tornado.ioloop.IOLoop.current())
        res.start()
        await res.until_synced(timeout=TIMEOUT)
        reply = await res.req.set_mode("x")
        assert reply.succeeded, reply
        fleet = resource_client.KATCPClientResourceContainer(container_spec)
        fleet.set_ioloop(tornado.ioloop.IOLoop.current())
        fleet.start()
        await fleet.until_synced(timeout=TIMEOUT)
        a = await fleet.children.a.req.set_mode("y")
        b = await fleet.children.b.req.set_mode("y")
        assert not a.succeeded and "control" in str(a.reply)
        assert b.succeeded
        res.stop()
        fleet.stop()

    try:
        asyncio.run(asyncio.wait_for(main(), TIMEOUT * 3))
    finally:
        stop(server)


def test_open_server_unchanged(pki):
    """Without users= nothing changes: no login needed, no ?login request."""
    server = Instrument("127.0.0.1", 0, ssl=server_context(pki.server_cert, pki.server_key))
    server.start(timeout=TIMEOUT)
    try:
        assert server.access_control is None
        raw = RawTLS(server, pki)
        assert raw.reply("?set-mode x") == "!set-mode ok x"
        assert raw.reply("?login a b").startswith("!login invalid")
        assert "Traceback" in raw.reply("?crash").replace("\\_", " ")
        raw.close()
    finally:
        stop(server)


def test_server_rejects_non_context_ssl():
    server = Instrument("127.0.0.1", 0, ssl="yes")
    with pytest.raises(TypeError):
        server.start(timeout=TIMEOUT)
    stop(server)


def test_store_path_accepted(tmp_path, pki):
    path = tmp_path / "u.db"
    UserStore(path, params=FAST).add_user("op", SECRET, "control")
    server = Instrument("127.0.0.1", 0, users=path, login_timeout=None)
    assert isinstance(server.access_control, AccessControl)
    assert server.access_control.login_timeout is None


def test_login_without_tls_warns(tmp_path, caplog):
    path = tmp_path / "u.db"
    UserStore(path, params=FAST).add_user("op", SECRET, "control")
    with caplog.at_level(logging.WARNING, logger="katcp.server"):
        Instrument("127.0.0.1", 0, users=path)
    assert "passwords will cross the network in clear text" in caplog.text
