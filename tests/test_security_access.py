"""AccessControl: sessions, login, backoff, role checks, audit lines, no secrets in logs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from katcp._security.access import (
    LOGIN_FAILED,
    LOGIN_REQUIRED,
    AccessControl,
    redact_arguments,
)
from katcp._security.audit import AUDIT_LOGGER_NAME
from katcp._security.backoff import LoginBackoff
from katcp._security.passwords import ScryptParams
from katcp._security.roles import requires_role
from katcp._security.userstore import User, UserStore
from katcp.kattypes import request, return_reply
from katcp.server import DeviceServer

SECRET = "hunter2-unique-secret"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTLS:
    def __init__(self, subject):
        self.subject = subject

    def getpeercert(self):
        return {"subject": self.subject}


class Device(DeviceServer):
    VERSION_INFO = ("device", 1, 0)
    BUILD_INFO = ("device", 1, 0, "")

    @request()
    @return_reply()
    def request_set_gain(self, req):
        """Needs control by default."""
        return ("ok",)

    @requires_role("read")
    @return_reply()
    def request_status(self, req):
        """Marked read."""
        return ("ok",)


H = Device._request_handlers


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def access(tmp_path, clock):
    store = UserStore(tmp_path / "users.db", params=ScryptParams(n=2**8))
    store.add_user("reader", SECRET, "read")
    store.add_user("operator", SECRET, "control")
    store.add_user("boss", SECRET, "admin", subject="CN=boss,O=Lab")
    return AccessControl(store, login_timeout=5,
                         backoff=LoginBackoff(base=1, cap=4, forget_after=60, clock=clock))


def login(access, session, user, password):
    return asyncio.run(access.login(session, user, password))


def audit_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER_NAME]


def fields(line):
    return dict(f.split("=", 1) for f in line.split(" ")[1:])


def test_before_login_only_four_requests(access, caplog):
    session = access.open_session("10.0.0.1:5000", "10.0.0.1")
    assert not session.authenticated
    for name in ("login", "help", "watchdog", "version-list"):
        assert access.check(session, name, [], H.get(name)) is None
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER_NAME):
        for name in ("sensor-value", "halt", "set-gain", "no-such-request"):
            refusal = access.check(session, name, [], H.get(name))
            assert refusal is not None and refusal.message == LOGIN_REQUIRED
    lines = audit_lines(caplog)
    assert len(lines) == 4
    assert fields(lines[1]) == {"user": "-", "addr": "10.0.0.1:5000", "event": "refused",
                                "request": "halt", "status": "fail",
                                "detail": "not\\_logged\\_in"}


@pytest.mark.parametrize("user,allowed,refused", [
    ("reader", ["help", "sensor-value", "sensor-list", "client-list", "log-level", "status"],
     ["set-gain", "sensor-sampling-clear", "halt", "restart", "log-level debug"]),
    ("operator", ["sensor-value", "set-gain", "sensor-sampling-clear", "log-level"],
     ["halt", "restart", "log-level debug"]),
    ("boss", ["sensor-value", "set-gain", "halt", "restart", "log-level debug"], []),
])
def test_roles(access, user, allowed, refused):
    session = access.open_session("10.0.0.1:5000", "10.0.0.1")
    assert login(access, session, user, SECRET) == ("ok", session.user.role)
    for text in allowed:
        name, *args = text.split()
        assert access.check(session, name, args, H[name]) is None, text
    for text in refused:
        name, *args = text.split()
        refusal = access.check(session, name, args, H[name])
        assert refusal is not None, text
        assert refusal.needed_role in ("control", "admin")
        assert f"needs the {refusal.needed_role} role" in refusal.message


def test_unknown_request_after_login_left_to_the_server(access):
    session = access.open_session("10.0.0.1:5000", "10.0.0.1")
    login(access, session, "reader", SECRET)
    assert access.check(session, "no-such-request", [], None) is None


def test_login_failures_audited_without_password(access, caplog, clock):
    session = access.open_session("10.0.0.1:5000", "10.0.0.1")
    with caplog.at_level(logging.DEBUG):
        assert login(access, session, "operator", "wrong-" + SECRET) == ("fail", LOGIN_FAILED)
        assert not session.authenticated
        clock.now += 1  # past the address's backoff
        assert login(access, session, "nobody", SECRET) == ("fail", LOGIN_FAILED)
    assert SECRET not in caplog.text
    fail1, fail2 = (fields(line) for line in audit_lines(caplog))
    assert fail1["event"] == "login" and fail1["status"] == "fail"
    assert fail1["user"] == "operator" and fail2["user"] == "nobody"


def test_login_ok_audited(access, caplog, clock):
    session = access.open_session("10.0.0.1:5000", "10.0.0.1")
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER_NAME):
        assert login(access, session, "operator", SECRET) == ("ok", "control")
    assert session.user == User("operator", "control")
    (line,) = audit_lines(caplog)
    assert fields(line) == {"user": "operator", "addr": "10.0.0.1:5000", "event": "login",
                            "request": "login", "status": "ok", "detail": "role\\_control"}


def test_backoff_refuses_without_checking(access, clock, monkeypatch):
    session = access.open_session("10.0.0.1:5000", "10.0.0.1")
    assert login(access, session, "operator", "bad") == ("fail", LOGIN_FAILED)
    calls = []
    monkeypatch.setattr(access.users, "verify", lambda *a: calls.append(a))
    status, message = login(access, session, "operator", SECRET)
    assert status == "fail" and "try again in 1 s" in message
    assert calls == []  # no password oracle while backing off
    # Another user from another address is not delayed.
    other = access.open_session("10.0.0.2:5000", "10.0.0.2")
    monkeypatch.undo()
    assert login(access, other, "reader", SECRET) == ("ok", "read")
    clock.now += 1
    assert login(access, session, "operator", SECRET) == ("ok", "control")


def test_failed_relogin_keeps_the_session(access, clock):
    session = access.open_session("10.0.0.1:5000", "10.0.0.1")
    login(access, session, "reader", SECRET)
    assert login(access, session, "boss", "bad") == ("fail", LOGIN_FAILED)
    assert session.user.name == "reader"
    clock.now += 10
    assert login(access, session, "boss", SECRET) == ("ok", "admin")


def test_one_login_at_a_time_per_connection(access):
    async def main():
        session = access.open_session("10.0.0.1:5000", "10.0.0.1")
        first = asyncio.ensure_future(access.login(session, "reader", SECRET))
        await asyncio.sleep(0)
        second = await access.login(session, "boss", SECRET)
        return await first, second, session

    first, second, session = asyncio.run(main())
    assert first == ("ok", "read")
    assert second[0] == "fail" and "in progress" in second[1]
    assert session.user.name == "reader"


def test_store_error_fails_quietly(access, caplog, monkeypatch):
    def broken(user, password):
        raise OSError(f"disk on fire while checking {password}")

    monkeypatch.setattr(access.users, "verify", broken)
    session = access.open_session("10.0.0.1:5000", "10.0.0.1")
    with caplog.at_level(logging.DEBUG):
        assert login(access, session, "reader", SECRET) == ("fail", LOGIN_FAILED)
    assert SECRET not in caplog.text
    assert "status=error" in audit_lines(caplog)[0]


def test_certificate_logs_in(access, caplog):
    tls = FakeTLS(((("organizationName", "Lab"),), (("commonName", "boss"),)))
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER_NAME):
        session = access.open_session("10.0.0.1:5000", "10.0.0.1", tls)
        stranger = access.open_session("10.0.0.2:5000", "10.0.0.2",
                                       FakeTLS(((("commonName", "eve"),),)))
    assert session.user == User("boss", "admin", "CN=boss,O=Lab")
    assert stranger.subject == "CN=eve" and not stranger.authenticated
    ok, fail = (fields(line) for line in audit_lines(caplog))
    assert ok["status"] == "ok" and ok["request"] == "certificate" and ok["user"] == "boss"
    assert fail["status"] == "fail" and fail["user"] == "-"


def test_audited_requests(access, caplog):
    assert not access.is_audited("sensor-value", [], H["sensor-value"])
    assert not access.is_audited("log-level", [], H["log-level"])
    assert access.is_audited("log-level", ["debug"], H["log-level"])
    assert access.is_audited("set-gain", [], H["set-gain"])
    assert access.is_audited("halt", [], H["halt"])
    assert not access.is_audited("status", [], H["status"])
    assert not access.is_audited("nothing", [], None)
    session = access.open_session("10.0.0.1:5000", "10.0.0.1")
    login(access, session, "boss", SECRET)
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER_NAME):
        access.audit_reply(session, "halt", "ok")
        access.login_timed_out(access.open_session("10.0.0.3:1", "10.0.0.3"))
    halt, timeout = (fields(line) for line in audit_lines(caplog))
    assert halt == {"user": "boss", "addr": "10.0.0.1:5000", "event": "request",
                    "request": "halt", "status": "ok"}
    assert timeout["event"] == "login-timeout" and timeout["status"] == "closed"


def test_store_path_and_bad_timeout(tmp_path):
    access = AccessControl(tmp_path / "u.db", login_timeout=None)
    assert isinstance(access.users, UserStore) and access.login_timeout is None
    with pytest.raises(ValueError):
        AccessControl(tmp_path / "u.db", login_timeout=0)


def test_redact_arguments():
    assert redact_arguments("login", [b"alice", b"secret"]) == [b"alice", "<redacted>"]
    assert redact_arguments("login", ["alice", "pw", "extra"]) == ["alice", "<redacted>",
                                                                     "<redacted>"]
    assert redact_arguments("login", []) == []
    assert redact_arguments("set-gain", ["1"]) == ["1"]


def test_concurrent_logins_per_address_are_bounded(access):
    async def main():
        sessions = [access.open_session(f"10.0.0.1:{5000 + i}", "10.0.0.1") for i in range(3)]
        other = access.open_session("10.0.0.2:5000", "10.0.0.2")
        tasks = [asyncio.ensure_future(access.login(s, "reader", SECRET)) for s in sessions]
        tasks.append(asyncio.ensure_future(access.login(other, "reader", SECRET)))
        results = await asyncio.gather(*tasks)
        return results, access._checking

    results, checking = asyncio.run(main())
    assert results[:2] == [("ok", "read"), ("ok", "read")]
    assert results[2][0] == "fail" and "at once" in results[2][1]
    assert results[3] == ("ok", "read")  # another address is not affected
    assert checking == {}
