"""Run the walk-through of doc/security.rst, command by command, and check its outputs.

Every ``$ command`` line of the chapter's literal blocks runs in order in one temporary
directory, as real processes (``katcp-admin``, ``katcp-exampleserver`` in the background,
``katcp-cmd``); the lines printed after a ``katcp-cmd`` command in the chapter must be
exactly its output. The console scripts run as ``python -m katcp.tools.<module>`` from
this work tree; the ports 7147/7148 of the text are replaced by free ones.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "doc", "security.rst")
MODULES = {
    "katcp-admin": "katcp.tools.admin",
    "katcp-exampleserver": "katcp.tools.example_server",
    "katcp-cmd": "katcp.tools.cmd",
}
PASSWORDS = {"alice.pw": "alice's long passphrase 7", "root.pw": "r00t-passphrase-xyz"}


def walkthrough():
    """``[(command, [expected output lines])]`` from the chapter, in order."""
    steps = []
    lines = open(DOC, encoding="utf-8").read().splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("    $ "):
            continue
        expected = []
        for following in lines[i + 1:]:
            if not following.startswith("    ") or following.startswith("    $ "):
                break
            expected.append(following[4:])
        steps.append((line[6:], expected))
    return steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


def test_walkthrough_runs(tmp_path):
    steps = walkthrough()
    assert len(steps) >= 10, steps
    ports = {"7147": str(free_port()), "7148": str(free_port())}
    for name, password in PASSWORDS.items():
        (tmp_path / name).write_text(password + "\n")
        os.chmod(tmp_path / name, 0o600)
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("KATCP_PASSWORD", None)
    servers = []
    try:
        for command, expected in steps:
            text = re.sub(r"\b(7147|7148)\b", lambda m: ports[m.group(1)], command)
            step_env = dict(env)
            match = re.match(r"KATCP_PASSWORD=\$\(cat (\S+)\) (.*)", text)
            if match:
                step_env["KATCP_PASSWORD"] = (tmp_path / match.group(1)).read_text().strip()
                text = match.group(2)
            stdin_text = ""
            match = re.match(r"(.*) < (\S+)$", text)
            if match:
                text, stdin_text = match.group(1), (tmp_path / match.group(2)).read_text()
            words = shlex.split(text)
            argv = [sys.executable, "-m", MODULES[words[0]], *words[1:]]
            if words[0] == "katcp-exampleserver":
                proc = subprocess.Popen(argv, cwd=tmp_path, env=step_env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                servers.append(proc)
                wait_listening(int(words[words.index("--port") + 1]), proc)
                continue
            result = subprocess.run(argv, cwd=tmp_path, env=step_env, input=stdin_text,
                                    capture_output=True, text=True, timeout=60)
            wanted_status = 1 if any(" fail " in line for line in expected) else 0
            assert result.returncode == wanted_status, (command, result.stdout, result.stderr)
            if expected and words[0] == "katcp-cmd":
                assert result.stdout.splitlines() == expected, command
    finally:
        for proc in servers:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    audit = (tmp_path / "audit.log").read_text().splitlines()
    events = [re.search(r"event=(\S+) request=(\S+) status=(\S+)", line).groups()
              for line in audit]
    assert ("login", "login", "ok") in events
    assert ("request", "set-gain", "ok") in events
    assert ("refused", "set-gain", "fail") in events
    assert ("refused", "halt", "fail") in events
    for name, password in PASSWORDS.items():
        for path in tmp_path.iterdir():
            assert password.encode() not in path.read_bytes() or path.name == name, path


@pytest.mark.parametrize("tool", ["katcp-cmd"])
def test_insecure_prints_a_warning(tool, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", MODULES[tool], "--insecure",
                             "127.0.0.1:1", "watchdog"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert "WARNING: --insecure" in result.stderr
    assert result.returncode == 2
