"""``katcp-shell``: piped (plain) mode in a subprocess, interactive mode in-process.

The example instrument runs in-process on port 0; the shell runs as
``python -m katcp.tools.shell`` with its standard input piped, or in-process
with prompt_toolkit reading a pipe input.
"""

import asyncio
import os
import queue
import subprocess
import sys
import threading

import pytest

from katcp.tools import shell as shell_module
from katcp.tools._shell_complete import CompletionTable, make_completer
from katcp.tools.example_server import ExampleServer
from katcp.tools.shell import Shell

TIMEOUT = 5.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(port=0):
    srv = ExampleServer("127.0.0.1", port, update_period=0.05)
    assert srv.start(timeout=TIMEOUT)
    return srv


def stop_server(srv):
    srv.stop().result(TIMEOUT)
    srv.join(timeout=TIMEOUT)


@pytest.fixture
def server():
    srv = start_server()
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def addr(server):
    host, port = server.bind_address
    return f"{host}:{port}"


def shell_cmd(*argv):
    return [sys.executable, "-m", "katcp.tools.shell", *argv]


def run_shell(addr, text, *argv):
    return subprocess.run(shell_cmd(addr, *argv), input=text, cwd=ROOT, capture_output=True,
                          text=True, timeout=20)


class LiveShell:
    """A shell subprocess fed line by line, its output read with deadlines."""

    def __init__(self, addr):
        self.proc = subprocess.Popen(shell_cmd(addr), cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.out = queue.Queue()
        self.err = queue.Queue()
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()

    @staticmethod
    def _pump(stream, q):
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    @staticmethod
    def expect(q, predicate, timeout=TIMEOUT):
        """Lines read until one satisfies `predicate` (that one last)."""
        seen = []
        while True:
            line = q.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"stream ended; saw {seen!r}")
            seen.append(line)
            if predicate(line):
                return seen

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        return self.proc.returncode


# ---------------------------------------------------------------- piped (plain) mode


def test_piped_requests_replies_and_informs(addr):
    done = run_shell(addr, "?sensor-value temperature\necho a\\_b c\n\n?countdown 1\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # The server's greeting informs are shown too.
    assert lines[0] == "#version-connect katcp-protocol 5.1-BIMT"
    rest = [line for line in lines if not line.startswith("#version-connect")]
    assert rest[0].startswith("#sensor-value ") and " temperature " in rest[0]
    assert rest[1:] == ["!sensor-value ok 1", "!echo ok a\\_b c",
                        "#countdown 1", "#countdown 0", "!countdown ok 2"]
    assert done.stderr == ""


def test_piped_bytes_that_are_not_utf8(addr):
    done = subprocess.run(shell_cmd(addr), input=b"echo caf\xc3\xa9 \xff\n", cwd=ROOT,
                          capture_output=True, timeout=20)
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1] == b"!echo ok caf\xc3\xa9 \\xff"


@pytest.mark.parametrize("word", ["\\q", "exit", "quit"])
def test_quit_words_stop_reading(addr, word):
    done = run_shell(addr, f"echo one\n{word}\necho two\n")
    assert done.returncode == 0
    replies = [line for line in done.stdout.splitlines() if line.startswith("!")]
    assert replies == ["!echo ok one"]


def test_bad_lines_are_reported_not_sent(addr):
    done = run_shell(addr, "#log info x\n?echo a\\q\n\\nope\n\\h\nno-such\n")
    assert done.returncode == 0
    assert "*** bad request: only requests can be sent, not #log" in done.stderr
    assert "*** bad request:" in done.stderr.splitlines()[1]
    assert "*** unknown shell command \\nope" in done.stderr
    assert "Shell commands:" in done.stdout
    assert done.stdout.splitlines()[-1] == "!no-such invalid Unknown\\_request."


def test_reply_timeout_then_late_reply(addr):
    done = run_shell(addr, "slow-command 0.3\necho after\n", "--timeout", "0.1")
    assert done.returncode == 0
    assert "*** no reply to ?slow-command within 0.1 s" in done.stderr
    # End of input right after the last reply: the late reply may or may not make it.
    assert "!echo ok after" in done.stdout.splitlines()


def test_connection_refused_exit_2():
    srv = start_server()
    port = srv.bind_address[1]
    stop_server(srv)
    done = run_shell(f"127.0.0.1:{port}", "help\n")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (f"katcp-shell: could not connect to 127.0.0.1:{port}: "
                           "Connection refused\n")


def test_bad_address_is_a_usage_error():
    done = subprocess.run(shell_cmd("127.0.0.1:notaport"), cwd=ROOT, capture_output=True,
                          text=True, timeout=20, input="")
    assert done.returncode == 2
    assert "usage: katcp-shell" in done.stderr and "bad port" in done.stderr


def test_async_informs_arrive_while_idle(addr):
    live = LiveShell(addr)
    try:
        live.send("sensor-sampling tick-count event")
        live.expect(live.out, lambda line: line == "!sensor-sampling ok tick-count event")
        # No more input: updates keep arriving on their own.
        for _ in range(2):
            line = live.expect(live.out, lambda line: line.startswith("#sensor-status"))[-1]
            assert " tick-count nominal " in line
        live.send("\\q")
        assert live.proc.wait(TIMEOUT) == 0
    finally:
        live.close()


def test_server_goes_away_and_comes_back():
    srv = start_server()
    host, port = srv.bind_address
    live = LiveShell(f"{host}:{port}")
    try:
        live.send("echo first")
        live.expect(live.out, lambda line: line == "!echo ok first")
        stop_server(srv)
        live.expect(live.err, lambda line: "connection to" in line and "lost" in line)
        live.send("echo lost")
        live.expect(live.err, lambda line: line == (
            f"*** not connected to {host}:{port} (reconnecting); ?echo not sent"))
        srv = start_server(port)
        live.expect(live.err, lambda line: line == f"*** reconnected to {host}:{port}")
        live.send("echo again")
        seen = live.expect(live.out, lambda line: line.startswith("!"))
        assert seen[-1] == "!echo ok again"
        live.proc.stdin.close()
        assert live.proc.wait(TIMEOUT) == 0
    finally:
        live.close()
        stop_server(srv)


# ---------------------------------------------------------------- completion


def test_completion_table_rules():
    table = CompletionTable(["help", "sensor-value", "sensor-list", "sensor-sampling", "echo"],
                            ["temperature", "tick-count", "rf.gain"])
    assert table.complete("") == (table.requests, 0)
    assert table.complete("sen") == (["sensor-list", "sensor-sampling", "sensor-value"], 3)
    assert table.complete("?sensor-v") == (["sensor-value"], 8)
    assert table.complete("?sensor-value t") == (["temperature", "tick-count"], 1)
    assert table.complete("sensor-list ") == (["rf.gain", "temperature", "tick-count"], 0)
    assert table.complete("sensor-sampling temperature,ti") == (["tick-count"], 2)
    assert table.complete("?help ec") == (["echo"], 2)
    assert table.complete("echo t") == ([], 0)
    assert table.complete("sensor-value temperature ") == ([], 0)
    table.update(sensors=["other"])
    assert table.complete("sensor-value ") == (["other"], 0)
    assert "help" in table.requests


def test_prompt_toolkit_completer():
    pytest.importorskip("prompt_toolkit", reason="katcp-shell's completion needs the 'shell' extra")
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    completer = make_completer(CompletionTable(["sensor-value"], ["temperature"]))
    got = list(completer.get_completions(Document("?sensor-value tem"), CompleteEvent()))
    assert [(c.text, c.start_position) for c in got] == [("temperature", -3)]
    got = list(completer.get_completions(Document("?sens"), CompleteEvent()))
    assert [(c.text, c.start_position) for c in got] == [("sensor-value", -4)]


# ---------------------------------------------------------------- interactive mode


def test_interactive_session_learns_names_and_keeps_history(addr, tmp_path, capfd):
    pytest.importorskip("prompt_toolkit", reason="the interactive shell needs the 'shell' extra")
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    host, port = addr.split(":")
    history = tmp_path / "history"
    with create_pipe_input() as pipe:
        pipe.send_text("sensor-value temperature\recho a\\_b\r\x04")
        sh = Shell(host, int(port), timeout=TIMEOUT, pt_input=pipe, pt_output=DummyOutput(),
                   history_file=str(history))
        assert sh.interactive
        assert asyncio.run(asyncio.wait_for(sh.run(), 15)) == 0
    assert {"help", "sensor-value", "sensor-sampling", "echo"} <= set(sh.names.requests)
    assert {"temperature", "tick-count", "rf.gain"} <= set(sh.names.sensors)
    out = capfd.readouterr().out.splitlines()
    assert "!sensor-value ok 1" in out
    assert "!echo ok a\\_b" in out
    assert out.index("!sensor-value ok 1") < out.index("!echo ok a\\_b")
    text = history.read_text()
    assert "+sensor-value temperature" in text and "+echo a\\_b" in text


def test_unwritable_history_falls_back_to_memory(addr, tmp_path, capfd):
    pytest.importorskip("prompt_toolkit", reason="the interactive shell needs the 'shell' extra")
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    host, port = addr.split(":")
    with create_pipe_input() as pipe:
        pipe.send_text("\\q\r")
        sh = Shell(host, int(port), pt_input=pipe, pt_output=DummyOutput(),
                   history_file=str(tmp_path / "missing-dir" / "history"))
        assert asyncio.run(asyncio.wait_for(sh.run(), 15)) == 0
    assert "*** history not saved" in capfd.readouterr().err


def test_plain_mode_when_prompt_toolkit_missing(monkeypatch):
    monkeypatch.setattr(shell_module, "_prompt_toolkit_available", lambda: False)

    class FakeTTY:
        def isatty(self):
            return True

    assert Shell("127.0.0.1", 1, stdin=FakeTTY()).interactive is False
