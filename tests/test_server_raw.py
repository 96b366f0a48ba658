"""Device server over raw loopback sockets: telnet-style input, bad input, exact wire text."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest
from test_server_support import (
    ExampleServer,
    RawClient,
    make_threaded,
    parse,
    running,
)

from katcp.core import ProtocolFlags
from katcp.server import DeviceServer


def frames(traceback_text: str) -> int:
    """Number of stack frames in a formatted traceback (repeats included)."""
    repeats = re.findall(r"Previous line repeated (\d+) more times", traceback_text)
    return traceback_text.count('File "') + sum(int(n) for n in repeats)


@pytest.fixture
def server():
    with running(make_threaded()) as srv:
        yield srv


@pytest.fixture
def client(server):
    c = RawClient(server.bind_address)
    c.skip_connect_informs()
    yield c
    c.close()


def test_connect_informs(server):
    c = RawClient(server.bind_address)
    lines = c.skip_connect_informs()
    assert lines[0] == b"#version-connect katcp-protocol 5.0-IM"
    assert lines[1].startswith(b"#version-connect katcp-library katcp-python-")
    assert len(parse(lines[1]).arguments) == 3  # library version and build state
    assert lines[2] == b"#version-connect katcp-device device_stub-0.1 name-0.1"
    c.close()


def test_telnet_style_crlf_and_cr(client):
    client.send(b"?watchdog\r\n")
    assert client.readline() == b"!watchdog ok"
    client.send(b"?watchdog\r?echo a\\_b c\r")
    assert client.readline() == b"!watchdog ok"
    assert client.readline() == b"!echo ok a\\_b c"


def test_blank_and_whitespace_lines_are_ignored(client):
    client.send(b"\n   \n\t\n?watchdog[3]\n")
    assert client.readline() == b"!watchdog[3] ok"


def test_malformed_line_logs_error_and_keeps_connection(client):
    client.send(b"?bad_name\n")
    line = client.readline()
    assert line.startswith(b"#log error ")
    msg = parse(line)
    assert msg.arguments[2] == b"root"
    assert b"Bad message" in msg.arguments[3]
    client.send(b"? foo\n?foo[1]x\n?x \\q\n")
    for _ in range(3):
        assert client.readline().startswith(b"#log error ")
    assert client.request(b"?watchdog[2]") == [b"!watchdog[2] ok"]


def test_unknown_request_exact_text(client):
    assert client.request(b"?bogus[9] 6.1") == [b"!bogus[9] invalid Unknown\\_request."]
    assert client.request(b"?bogus") == [b"!bogus invalid Unknown\\_request."]


def test_fail_reply_and_exception(server, client):
    assert client.request(b"?fail[4]") == [b"!fail[4] fail this\\_request\\_fails"]
    (line,) = client.request(b"?raise[5]")
    msg = parse(line)
    assert msg.arguments[0] == b"fail" and msg.mid == b"5"
    text = msg.arguments[1].decode()
    assert "RuntimeError: deliberate error" in text
    # The traceback is cut to tb_limit (20) frames.
    assert frames(text) == server._tb_limit


def test_tb_limit_is_configurable():
    with running(ExampleServer("127.0.0.1", 0, tb_limit=3)) as srv:
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        (line,) = c.request(b"?raise")
        assert frames(parse(line).arguments[1].decode()) == 3
        c.close()


def test_reply_informs_carry_request_id(client):
    assert client.request(b"?informs[77]") == [
        b"#informs[77] one", b"#informs[77] two", b"!informs[77] ok 2"]
    assert client.request(b"?informs") == [b"#informs one", b"#informs two",
                                           b"!informs ok 2"]


def test_every_pipelined_request_gets_one_reply_in_order(client):
    lines = []
    for i in range(1, 201):
        name = [b"watchdog", b"native", b"echo", b"tornado", b"bogus", b"fail"][i % 6]
        lines.append(b"?%s[%d]\n" % (name, i))
    client.send(b"".join(lines))
    replies = []
    while len(replies) < 200:
        line = client.readline()
        if line.startswith(b"!"):
            replies.append(parse(line))
    # One reply each; a handler that returns a future holds back that client's next
    # request, so the replies come back in request order.
    assert [int(m.mid) for m in replies] == list(range(1, 201))


def test_unexpected_reply_from_client_is_logged_back(client):
    client.send(b"!something ok\n#some-inform x\n?watchdog\n")
    line = client.readline()
    assert line.startswith(b"#log error ") and b"Unexpected\\_reply\\_something" in line
    assert client.readline() == b"!watchdog ok"  # the inform is silently ignored


def test_over_long_line_closes_only_that_connection():
    srv = make_threaded()
    srv.MAX_MSG_SIZE = 1000
    with running(srv):
        victim = RawClient(srv.bind_address)
        victim.skip_connect_informs()
        other = RawClient(srv.bind_address)
        other.skip_connect_informs()
        victim.send(b"?echo " + b"x" * 2000)
        line = victim.read_until(b"#log")[-1]
        assert line.startswith(b"#log error ")
        assert b"1000" in line and b"MAX_MSG_SIZE" in line
        assert victim.is_closed()
        assert other.request(b"?watchdog") == [b"!watchdog ok"]
        # The server forgot the closed client.
        assert other.request(b"?client-list")[-1] == b"!client-list ok 1"
        victim.close()
        other.close()


def test_line_just_under_limit_is_fine():
    srv = make_threaded()
    srv.MAX_MSG_SIZE = 1000
    with running(srv):
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        payload = b"y" * 900
        assert c.request(b"?echo " + payload) == [b"!echo ok " + payload]
        c.close()


class V4Server(ExampleServer):
    PROTOCOL_INFO = ProtocolFlags(4, 0, "M")


def test_v4_protocol_info():
    with running(V4Server("127.0.0.1", 0)) as srv:
        c = RawClient(srv.bind_address)
        lines = c.skip_connect_informs()
        assert lines == [b"#version device_stub-0.1", b"#build-state name-0.1"]
        assert c.request(b"?version-list") == [b"!version-list invalid Unknown\\_request."]
        srv.get_sensor("an.int").set_value(5, timestamp=1234567890.5)
        (inform, reply) = c.request(b"?sensor-value an.int")
        assert inform == b"#sensor-value 1234567890500 1 an.int nominal 5"
        # v4 period is in milliseconds, echoed as integer milliseconds
        lines = c.request(b"?sensor-sampling an.int period 500")
        assert lines[-1] == b"!sensor-sampling ok an.int period 500"
        assert lines[0].startswith(b"#sensor-status 1234567890500 1 an.int")
        assert c.request(b"?sensor-sampling an.int event-rate 1 2")[-1].startswith(
            b"!sensor-sampling fail")
        srv.log.error("boom")
        line = c.readline()
        assert line.startswith(b"#log error ") and int(parse(line).arguments[1]) > 10 ** 12
        c.close()


def test_disconnect_sends_reason_then_closes(server, client):
    (conn,) = list(server._client_conns)
    conn.disconnect("Go away").result(5)
    assert client.readline() == b"#disconnect Go\\_away"
    assert client.is_closed()


def test_on_client_connect_failure_reports_and_closes():
    class Broken(DeviceServer):
        def on_client_connect(self, client_conn):
            raise RuntimeError("cannot accept you")

    with running(Broken("127.0.0.1", 0)) as srv:
        c = RawClient(srv.bind_address)
        line = c.readline()
        assert line.startswith(b"#log error ") and b"cannot\\_accept\\_you" in line
        assert c.is_closed()
        c.close()


def test_slow_reader_does_not_stop_the_server():
    srv = make_threaded()
    srv.MAX_WRITE_BUFFER_SIZE = 50000
    with running(srv):
        slow = RawClient(srv.bind_address)
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        fast = RawClient(srv.bind_address)
        fast.skip_connect_informs()
        big = b"z" * 50000
        data = b"".join(b"?echo %s\n" % big for _ in range(400))  # 20 MB of replies

        def flood():
            try:
                slow.sock.sendall(data)
            except OSError:
                pass  # the server dropped us: expected

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        assert fast.request(b"?watchdog") == [b"!watchdog ok"]
        # The slow client is dropped once its backlog passes the limit; others carry on.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = fast.request(b"?client-list")
            if lines[-1] == b"!client-list ok 1":
                break
            time.sleep(0.01)
        assert lines[-1] == b"!client-list ok 1"
        slow.close()
        sender.join(5)
        fast.close()


def test_ipv6_listen_and_client_list():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    srv = ExampleServer("::1", 0)
    try:
        started = srv.start(timeout=5)
    except OSError as exc:
        pytest.skip(f"cannot listen on ::1: {exc}")
    try:
        assert started and srv.bind_address[0] == "::1"
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        lines = c.request(b"?client-list")
        assert lines[0].startswith(b"#client-list [::1]:") and lines[-1] == b"!client-list ok 1"
        c.close()
    finally:
        srv.stop(timeout=None).result(5)
        srv.join(timeout=5)
