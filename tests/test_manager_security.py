"""A secured manager over real TLS sockets: login, roles, per-user locks, audit log, and a
TLS upstream device that wants a login.

The fleet here is one receiver serving TLS with its own user store (the manager logs in to
it as ``mgr``); the manager serves TLS with another user store and writes an audit file.
"""

from __future__ import annotations

import asyncio
import os
import ssl

import pytest
import tornado.ioloop
from manager_support import Receiver, katcp_spec, run, until

from katcp.manager import DeviceSpec, ManagerConfig, ManagerServer, load_manager_config
from katcp.security import (
    AccessControl,
    LoginBackoff,
    ScryptParams,
    UserStore,
    client_context,
    server_context,
)

from _security_pki import make_pki

SECRET = "Manag3r-pa55-6d1f"
FAST = ScryptParams(n=2**8)
WAIT = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def stores(tmp_path, pki):
    """(manager user store path, device user store) with fast hashes."""
    manager_db = tmp_path / "manager-users.db"
    users = UserStore(manager_db, params=FAST)
    users.add_user("reader", SECRET, "read")
    users.add_user("alice", SECRET, "control", subject=pki.alice_subject)
    users.add_user("bob", SECRET, "control")
    users.add_user("boss", SECRET, "admin")
    device_users = UserStore(tmp_path / "device-users.db", params=FAST)
    device_users.add_user("mgr", SECRET, "control")
    return str(manager_db), device_users


class TlsClient:
    """A raw KATCP client over TLS: sends ``?request``, returns the reply line and informs."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext) -> TlsClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), WAIT)
        return cls(reader, writer)

    @property
    def address(self) -> str:
        host, port = self.writer.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    async def request(self, text: str):
        name = text.split()[0]
        self.writer.write(f"?{text}\n".encode())
        informs = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), WAIT)
            if not raw:
                raise ConnectionError("closed")
            line = raw.decode().rstrip("\n")
            if line.split(" ", 1)[0] == f"!{name}":
                return line, informs
            if line.split(" ", 1)[0] == f"#{name}":
                informs.append(line)

    async def login(self, user: str) -> str:
        return (await self.request(f"login {user} {SECRET}"))[0]

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass


def _escaped(text: str) -> str:
    return text.replace(" ", "\\_")


async def _secured_device(pki, device_users) -> Receiver:
    """The receiver, serving TLS and wanting a login."""
    device = Receiver("127.0.0.1", 0, ssl=server_context(pki.server_cert, pki.server_key),
                      users=AccessControl(device_users, backoff=LoginBackoff(base=0.2, cap=1)))
    device.set_concurrency_options(thread_safe=False, handler_thread=False)
    device.set_ioloop(tornado.ioloop.IOLoop.current())
    started = device.start()
    if started is not None:
        await started
    return device


async def _secured_fleet(pki, stores, tmp_path, **config):
    """Start the TLS+login receiver and a secured manager in front of it."""
    manager_db, device_users = stores
    device = await _secured_device(pki, device_users)
    spec = katcp_spec("rx1", device.bind_address[1], tls=True, cafile=pki.ca_cert,
                      username="mgr", password=SECRET)
    settings = dict(listen=("127.0.0.1", 0), tls_cert=pki.server_cert,
                    tls_key=pki.server_key, users=manager_db,
                    audit_log=str(tmp_path / "audit.log"), devices={"rx1": spec})
    settings.update(config)
    manager = ManagerServer(ManagerConfig(**settings))
    await manager.start_manager()
    await until(lambda: manager.has_sensor("rx1.temp") and "echo" in
                manager.devices["rx1"].requests, what="rx1 synced through TLS and login")
    # Proxied requests take the request link, which logs in over TLS too.
    await until(lambda: manager.devices["rx1"].request_link_ready,
                what="request link logged in")
    return device, manager


async def _stop(device, manager) -> None:
    await manager.stop_manager()
    stopped = device.stop()
    if stopped is not None and not isinstance(stopped, asyncio.Future):
        stopped = asyncio.wrap_future(stopped)
    if stopped is not None:
        await asyncio.wait_for(stopped, WAIT)


def _audit_lines(tmp_path, name="audit.log"):
    with open(tmp_path / name, encoding="utf-8") as handle:
        lines = [dict(part.split("=", 1) for part in line.split()[1:]) for line in handle]
    return lines


def _client_context(pki, **kwargs) -> ssl.SSLContext:
    return client_context(cafile=pki.ca_cert, **kwargs)


def test_two_users_race_for_a_lock_which_survives_the_holders_reconnect(pki, stores, tmp_path):
    async def main():
        device, manager = await _secured_fleet(pki, stores, tmp_path)
        port = manager.bind_address[1]
        try:
            alice = await TlsClient.connect(port, _client_context(pki))
            bob = await TlsClient.connect(port, _client_context(pki))
            assert await alice.login("alice") == "!login ok control"
            assert await bob.login("bob") == "!login ok control"
            # Through the manager and the TLS+login upstream link.
            assert (await bob.request("rx1-echo hi"))[0] == "!rx1-echo ok hi"
            replies = await asyncio.gather(alice.request("lock rx1"), bob.request("lock rx1"))
            winners = [r for r, _ in replies if r.startswith("!lock ok")]
            assert len(winners) == 1
            holder = winners[0].split()[2]
            assert holder in ("alice", "bob")
            first, second = (alice, bob) if holder == "alice" else (bob, alice)
            loser_name = "bob" if holder == "alice" else "alice"
            locked = _escaped(f"device rx1 is locked by {holder}")
            assert [r for r, _ in replies if not r.startswith("!lock ok")] == [
                f"!lock fail {locked}"]
            assert (await second.request("rx1-set-mode observe"))[0] == (
                f"!rx1-set-mode fail {locked}")
            assert (await second.request("sensor-value rx1.mode"))[0] == "!sensor-value ok 1"
            assert (await second.request("help rx1-echo"))[0] == "!help ok 1"
            assert (await first.request("rx1-echo mine"))[0] == "!rx1-echo ok mine"
            # The holder goes away and comes back on a new connection: still the holder.
            await first.close()
            await asyncio.sleep(0.05)
            assert (await second.request("rx1-echo x"))[0] == f"!rx1-echo fail {locked}"
            again = await TlsClient.connect(port, _client_context(pki))
            assert (await again.request("rx1-echo x"))[0].startswith(
                "!rx1-echo fail Login\\_required")
            assert await again.login(holder) == "!login ok control"
            _, informs = await again.request("lock-list")
            assert informs == [f"#lock-list rx1 {holder} none"]
            assert (await again.request("rx1-echo back"))[0] == "!rx1-echo ok back"
            assert (await second.request("unlock rx1"))[0] == f"!unlock fail {locked}"
            assert (await again.request("unlock rx1"))[0] == "!unlock ok"
            assert (await second.request("rx1-echo free"))[0] == "!rx1-echo ok free"
            for client in (second, again):
                await client.close()
        finally:
            await _stop(device, manager)
        return holder, loser_name

    holder, loser = run(main)
    lines = _audit_lines(tmp_path)

    def seen(**wanted):
        return any(all(line.get(k) == v for k, v in wanted.items()) for line in lines)

    assert seen(user=holder, event="lock", request="lock", status="ok")
    assert seen(user=loser, event="lock-denied", status="fail")
    assert seen(user=holder, event="unlock", status="ok")
    assert seen(user=loser, event="refused", request="rx1-set-mode", status="fail")
    assert seen(user=holder, event="request", request="rx1-echo", status="ok",
                detail="device=rx1")
    assert all(line["addr"].startswith("127.0.0.1:") for line in lines
               if line["event"] in ("lock", "request", "refused"))
    # The lock outlived the connection: no release on disconnect.
    assert not seen(event="lock-release")
    with open(tmp_path / "audit.log", encoding="utf-8") as handle:
        assert SECRET not in handle.read()


def test_read_user_is_refused_control_naming_the_role(pki, stores, tmp_path):
    async def main():
        device, manager = await _secured_fleet(pki, stores, tmp_path)
        try:
            # A proxied request pipelined behind ?login waits for the login.
            p = await TlsClient.connect(manager.bind_address[1], _client_context(pki))
            p.writer.write(f"?login[1] bob {SECRET}\n?rx1-echo[2] piped\n".encode())
            replies = []
            while len(replies) < 2:
                line = (await asyncio.wait_for(p.reader.readline(), WAIT)).decode().strip()
                if line.startswith("!"):
                    replies.append(line)
            assert replies == ["!login[1] ok control", "!rx1-echo[2] ok piped"]
            await p.close()
            c = await TlsClient.connect(manager.bind_address[1], _client_context(pki))
            assert (await c.request("lock-list"))[0].startswith("!lock-list fail Login")
            assert (await c.request("rx1-echo x"))[0].startswith("!rx1-echo fail Login")
            assert await c.login("reader") == "!login ok read"
            assert (await c.request("rx1-echo x"))[0] == (
                "!rx1-echo fail " + _escaped("Permission denied: ?rx1-echo needs the "
                                             "control role."))
            assert (await c.request("lock rx1"))[0] == (
                "!lock fail " + _escaped("Permission denied: ?lock needs the control role."))
            assert (await c.request("lock-list"))[0] == "!lock-list ok 0"
            assert (await c.request("device-list"))[0] == "!device-list ok 1"
            assert (await c.request("sensor-value rx1.temp"))[0] == "!sensor-value ok 1"
            assert (await c.request("sensor-sampling rx1.temp event"))[0].startswith(
                "!sensor-sampling ok")
            assert (await c.request("help rx1-echo"))[0] == "!help ok 1"
            await c.close()
        finally:
            await _stop(device, manager)

    run(main)
    lines = _audit_lines(tmp_path)
    assert any(line["user"] == "reader" and line["event"] == "refused"
               and line["request"] == "rx1-echo" for line in lines)


def test_admin_breaks_a_lock_and_only_admin(pki, stores, tmp_path):
    async def main():
        device, manager = await _secured_fleet(pki, stores, tmp_path)
        port = manager.bind_address[1]
        try:
            bob = await TlsClient.connect(port, _client_context(pki))
            boss = await TlsClient.connect(port, _client_context(pki))
            assert await bob.login("bob") == "!login ok control"
            assert await boss.login("boss") == "!login ok admin"
            assert (await bob.request("lock rx1 30"))[0] == "!lock ok bob"
            locked = _escaped("device rx1 is locked by bob")
            # The admin role does not get past a lock; breaking it does.
            assert (await boss.request("rx1-echo x"))[0] == f"!rx1-echo fail {locked}"
            assert (await bob.request("lock-break rx1"))[0] == (
                "!lock-break fail "
                + _escaped("Permission denied: ?lock-break needs the admin role."))
            assert (await boss.request("lock-break rx1"))[0] == "!lock-break ok bob"
            assert (await boss.request("rx1-echo x"))[0] == "!rx1-echo ok x"
            assert (await boss.request("lock-list"))[0] == "!lock-list ok 0"
            for client in (bob, boss):
                await client.close()
        finally:
            await _stop(device, manager)

    run(main)
    lines = _audit_lines(tmp_path)
    assert any(line["user"] == "boss" and line["event"] == "lock-break"
               and line["detail"] == "device=rx1,holder=bob" for line in lines)
    assert any(line["user"] == "bob" and line["event"] == "refused"
               and line["request"] == "lock-break" for line in lines)
    assert any(line["user"] == "bob" and line["event"] == "lock"
               and line["detail"] == "device=rx1,holder=bob,lease=30" for line in lines)


def test_mutual_tls_certificate_logs_the_user_in(pki, stores, tmp_path):
    async def main():
        device, manager = await _secured_fleet(pki, stores, tmp_path,
                                               tls_client_ca=pki.ca_cert)
        port = manager.bind_address[1]
        try:
            c = await TlsClient.connect(port, _client_context(
                pki, certfile=pki.alice_cert, keyfile=pki.alice_key))
            assert (await c.request("lock rx1"))[0] == "!lock ok alice"
            assert (await c.request("rx1-echo cert"))[0] == "!rx1-echo ok cert"
            await c.close()
            # Without a client certificate the handshake (or the first read) fails.
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                plain = await TlsClient.connect(port, _client_context(pki))
                await plain.request("help")
        finally:
            await _stop(device, manager)

    run(main)


def test_plaintext_client_gets_nothing_from_a_tls_manager(pki, stores, tmp_path):
    async def main():
        device, manager = await _secured_fleet(pki, stores, tmp_path)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", manager.bind_address[1])
            writer.write(b"?lock-list\n")
            data = await asyncio.wait_for(reader.read(100), WAIT)
            assert b"lock-list" not in data
            writer.close()
        finally:
            await _stop(device, manager)

    run(main)


def test_upstream_login_failure_keeps_the_device_unsynced(pki, stores, tmp_path, caplog):
    manager_db, device_users = stores
    spec_kwargs = dict(tls=True, cafile=pki.ca_cert, username="mgr", password="wrong")

    async def main():
        device = await _secured_device(pki, device_users)
        config = ManagerConfig(listen=("127.0.0.1", 0), devices={
            "rx1": DeviceSpec("rx1", "katcp", "127.0.0.1", device.bind_address[1],
                              **spec_kwargs)})
        manager = ManagerServer(config)
        await manager.start_manager()
        try:
            await until(lambda: "Login as mgr" in caplog.text, what="the failed login logged")
            assert not manager.has_sensor("rx1.temp")
        finally:
            await _stop(device, manager)

    run(main)
    assert "wrong" not in caplog.text.replace("wrong password", "")


def test_secured_config_file_loads(tmp_path, pki):
    path = tmp_path / "m.toml"
    path.write_text(f"""
[manager]
listen = "127.0.0.1:0"
tls_cert = "{pki.server_cert}"
tls_key = "{pki.server_key}"
users = "{tmp_path / 'u.db'}"
login_timeout = 30
audit_log = "{tmp_path / 'audit.log'}"
""")
    config = load_manager_config(str(path))
    assert config.login_timeout == 30.0
    assert config.server_ssl_context() is not None
    assert os.path.basename(config.audit_log) == "audit.log"
    path.write_text('[manager]\nlogin_timeout = "x"\n')
    with pytest.raises(ValueError, match="login_timeout"):
        load_manager_config(str(path))


DOC_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "doc", "examples", "manager_secure.toml")


def test_the_manager_chapters_secured_config_runs(pki, stores, tmp_path, monkeypatch):
    """doc/examples/manager_secure.toml with the test PKI in place of its paths."""
    manager_db, device_users = stores
    etc = tmp_path / "etc"
    etc.mkdir()
    for name, source in (("manager.crt", pki.server_cert), ("manager.key", pki.server_key),
                         ("rx1.crt", pki.ca_cert), ("users.db", manager_db)):
        with open(source, "rb") as src, open(etc / name, "wb") as dst:
            dst.write(src.read())
    device_users.add_user("manager", SECRET, "control")
    monkeypatch.setenv("RX1_PASSWORD", SECRET)

    async def main():
        device = await _secured_device(pki, device_users)
        with open(DOC_CONFIG, encoding="utf-8") as handle:
            text = handle.read()
        for old, new in (("/etc/katcp/", f"{etc}/"), ("/var/log/katcp/", f"{tmp_path}/"),
                         ("0.0.0.0:7147", "127.0.0.1:0"),
                         ("rx1.example.org:7147", f"127.0.0.1:{device.bind_address[1]}")):
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / "manager.toml"
        path.write_text(text)
        config = load_manager_config(str(path))
        assert config.login_timeout == 60.0 and config.devices["rx1"].password == SECRET
        manager = ManagerServer(config)
        await manager.start_manager()
        try:
            await until(lambda: "set-mode" in manager.devices["rx1"].requests)
            c = await TlsClient.connect(manager.bind_address[1], _client_context(pki))
            assert (await c.request("rx1-set-mode observe"))[0] == (
                "!rx1-set-mode fail "
                + _escaped("Login required: send ?login USER PASSWORD first."))
            assert await c.login("alice") == "!login ok control"
            assert (await c.request("lock rx1 600"))[0] == "!lock ok alice"
            assert (await c.request("rx1-set-mode observe"))[0] == "!rx1-set-mode ok"
            await c.close()
        finally:
            await _stop(device, manager)

    run(main)
    assert os.stat(tmp_path / "manager-audit.log").st_mode & 0o777 == 0o600
    assert any(line["event"] == "request" and line["request"] == "rx1-set-mode"
               and line["user"] == "alice" for line in _audit_lines(tmp_path, "manager-audit.log"))


def test_a_secured_manager_refuses_the_plaintext_registration_port(pki, stores):
    manager_db, _device_users = stores
    for secured in ({"users": manager_db},
                    {"tls_cert": pki.server_cert, "tls_key": pki.server_key}):
        config = ManagerConfig(listen=("127.0.0.1", 0), register=("127.0.0.1", 0), **secured)
        with pytest.raises(ValueError, match="register"):
            ManagerServer(config)
