"""Audit log lines: format, escaping against forged lines, the file handler."""

import datetime
import inspect
import logging
import os
import stat

import pytest

from katcp._security import audit
from katcp._security.audit import (
    AUDIT_LOGGER_NAME,
    audit_event,
    close_audit_log,
    escape_value,
    format_event,
    open_audit_log,
)

WHEN = datetime.datetime(2026, 12, 7, 1, 40, 0, 123456, tzinfo=datetime.timezone.utc)


def _parse(line):
    """Split an audit line into its time and fields."""
    stamp, *rest = line.split(" ")
    return stamp, dict(field.split("=", 1) for field in rest)


def test_line_format():
    line = format_event("request", user="alice", addr=("127.0.0.1", 51234), request="halt",
                        status="ok", when=WHEN)
    assert line == ("2026-12-07T01:40:00.123456Z user=alice addr=127.0.0.1:51234 "
                    "event=request request=halt status=ok")


def test_missing_values_and_detail():
    line = format_event("login", user="mallory", addr="[::1]:7", status="fail",
                        detail="bad password", when=WHEN)
    stamp, fields = _parse(line)
    assert stamp == "2026-12-07T01:40:00.123456Z"
    assert fields == {"user": "mallory", "addr": "[::1]:7", "event": "login",
                      "request": "-", "status": "fail", "detail": "bad\\_password"}
    assert "addr=[::1]:5" in format_event("x", addr=("::1", 5, 0, 0), when=WHEN)


def test_times_written_in_utc():
    local = WHEN.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    assert format_event("x", when=local).startswith("2026-12-07T01:40:00.123456Z")


@pytest.mark.parametrize("value,escaped", [
    ("alice", "alice"),
    ("a b", "a\\_b"),
    ("x\nuser=root", "x\\nuser=root"),
    ("\r\t\x1b\0", "\\r\\t\\e\\0"),
    ("back\\slash", "back\\\\slash"),
    ("", "\\@"),
    ("-", "\\-"),
    (None, "-"),
    ("\x7f\x85", "\\x7f\\x85"),
    ("\u2028\u2029", "\\u2028\\u2029"),
    ("caf\u00e9", "caf\u00e9"),
    ("\u00a0", "\\xa0"),
    (b"by\xfftes", "by\ufffdtes"),
    (42, "42"),
])
def test_escape_value(value, escaped):
    assert escape_value(value) == escaped


def test_long_values_cut():
    text = escape_value("x" * 10000)
    assert len(text) == audit.MAX_VALUE_LENGTH + 3 and text.endswith("...")


def test_client_cannot_forge_a_line_or_field():
    evil_user = "bob status=ok\n2026-01-01T00:00:00Z user=admin event=login status=ok"
    line = format_event("login", user=evil_user, addr="10.0.0.1:1", request="login",
                        status="fail", when=WHEN)
    assert "\n" not in line and "\r" not in line
    _, fields = _parse(line)
    assert set(fields) == {"user", "addr", "event", "request", "status"}
    assert fields["status"] == "fail"
    assert fields["event"] == "login"


def test_audit_event_goes_to_the_audit_logger(caplog):
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER_NAME):
        line = audit_event("login", user="alice", addr="1.2.3.4:5", request="login",
                           status="ok", detail="role admin")
    (record,) = [r for r in caplog.records if r.name == AUDIT_LOGGER_NAME]
    assert record.getMessage() == line
    assert record.levelno == logging.INFO
    assert " event=login " in line


def test_open_audit_log_appends_private_file(tmp_path):
    path = tmp_path / "audit.log"
    logger = logging.getLogger("katcp.audit.test-file")
    old = os.umask(0o022)
    try:
        handler = open_audit_log(path, logger=logger)
    finally:
        os.umask(old)
    try:
        audit_event("login", user="alice", status="ok", logger=logger)
        audit_event("request", user="alice", request="halt", status="ok", logger=logger)
    finally:
        close_audit_log(handler, logger=logger)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert [_parse(line)[1]["event"] for line in lines] == ["login", "request"]
    handler = open_audit_log(path, logger=logger)  # appends, never truncates
    try:
        audit_event("login", user="bob", status="fail", logger=logger)
    finally:
        close_audit_log(handler, logger=logger)
    assert len(path.read_text().splitlines()) == 3
    assert handler not in logger.handlers


def test_the_api_takes_no_request_arguments():
    # Passwords reach a server as request arguments; the audit API has no place for them.
    params = set(inspect.signature(audit_event).parameters)
    assert params == {"event", "user", "addr", "request", "status", "detail", "level",
                      "logger"}
