"""Issue 11 check: katcp-python 0.9.3's example programs run unchanged against this package.

The programs (``tests/data/katcp093_examples``, copied byte-for-byte from katcp-python 0.9.3's
``scripts/``) run in subprocesses that import our ``katcp``; a minimal stand-in for the
python-future package they import is put on their path.  The server is driven with our client
(including ``?restart``, which the program handles by stopping, joining and starting the
server again); the client is driven through its stdin as a user would.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from katcp import BlockingClient, Message

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(HERE, "data", "katcp093_examples")
TIMEOUT = 20.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGINT")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Program:
    """An example program in a subprocess, its output lines collected by a thread."""

    def __init__(self, script, *args):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [ROOT, os.path.join(EXAMPLES, "shims"), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-u", os.path.join(EXAMPLES, script), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, cwd=EXAMPLES, text=True)
        self.lines: list = []
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, text, timeout=TIMEOUT):
        """Wait for an output line containing `text`; return it."""
        for line in self.lines:
            if text in line:
                self.lines.remove(line)
                return line
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {text!r} in output: {self.lines}")
            try:
                line = self._queue.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"program ended without {text!r}: {self.lines}")
            if text in line:
                return line
            self.lines.append(line)

    def finish(self, timeout=TIMEOUT):
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout)


def _request(client, name, *args):
    reply, informs = client.blocking_request(Message.request(name, *args), timeout=TIMEOUT)
    return reply, informs


@pytest.mark.parametrize("host_args", [("-a", "127.0.0.1"), ()], ids=["ipv4", "all-hosts"])
def test_example_server_serves_and_restarts(host_args):
    # All hosts ("", the program's default): after ?restart it must listen for IPv4
    # clients again (it used to come back on '::' only).
    port = _free_port()
    server = _Program("katcp-exampleserver.py", *host_args, "-p", str(port))
    try:
        server.expect("Started.")
        client = BlockingClient("127.0.0.1", port)
        client.start(timeout=TIMEOUT)
        try:
            assert client.wait_protocol(timeout=TIMEOUT)
            assert client.versions["katcp-device"][0] == "example-server-0.1"
            reply, _ = _request(client, "echo", "a", "b c")
            assert reply.arguments == [b"ok", b"a", b"b c"]
            reply, _ = _request(client, "repeat", "ab", 3)
            assert reply.arguments == [b"ok", b"ababab"]
            reply, _ = _request(client, "add", 1.5, 2)
            assert reply.reply_ok() and float(reply.arguments[1]) == 3.5
            reply, _ = _request(client, "intdiv", 7, 2)
            assert reply.arguments == [b"ok", b"3"]
            reply, _ = _request(client, "intdiv", 7, 0)
            assert reply.arguments[0] == b"fail"
            reply, _ = _request(client, "restart")
            assert reply.reply_ok()
            server.expect("Stopping ...")
            server.expect("Restarting ...")
            server.expect("Started.")
            # The client reconnects to the restarted server by itself.
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    reply, _ = _request(client, "echo", "again")
                    if reply.reply_ok():
                        break
                except Exception:  # noqa: BLE001 - still reconnecting
                    pass
                assert time.monotonic() < deadline, "no reply after the restart"
                time.sleep(0.05)
            assert reply.arguments == [b"ok", b"again"]
        finally:
            client.stop()
            client.join(timeout=TIMEOUT)
        server.proc.send_signal(signal.SIGINT)
        server.expect("Shutting down ...")
        assert server.finish() == 0, server.lines
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(TIMEOUT)


def test_example_client_talks_to_our_server():
    from test_resource_servers import OurServer

    srv = OurServer("127.0.0.1", 0)
    srv.start(timeout=TIMEOUT)
    try:
        port = srv.bind_address[1]
        client = _Program("katcp-exampleclient.py", "-a", "127.0.0.1", "-p", str(port))
        try:
            client.expect(f"Client connecting to port 127.0.0.1:{port}")
            client.expect("#version-connect katcp-protocol")
            client.proc.stdin.write("?watchdog\n")
            client.proc.stdin.flush()
            client.expect("!watchdog ok")
            client.proc.stdin.write("?add 2 3\n")
            client.proc.stdin.flush()
            client.expect("!add ok 5")
            client.proc.stdin.write("not a message\n")
            client.proc.stdin.flush()
            client.expect("KatcpSyntaxError")
            client.proc.stdin.close()  # input() raises EOFError: the program stops and joins
            client.finish()
            assert client.proc.returncode is not None
        finally:
            if client.proc.poll() is None:
                client.proc.kill()
                client.proc.wait(TIMEOUT)
    finally:
        srv.stop()
        srv.join(timeout=TIMEOUT)
