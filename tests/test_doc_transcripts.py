"""Replay the command-line transcripts shown in the docs (doc/transcripts/*.txt).

A transcript is what a reader types and sees: lines starting with ``$ `` are shell commands,
the lines after them their output (stdout and stderr).  A ``$ nc HOST PORT`` command is a raw
session: its ``?`` lines are typed by the reader and the other lines are what the instrument
sends, replayed here over a socket (``nc`` itself is not needed).

The file name says what the commands talk to: ``cryostat-*`` runs ``scripts/cryostat.py``,
``exampleserver-*`` runs ``katcp-exampleserver``, others need nothing.  Port 7147 in the
transcript stands for the port the instrument got.  Output is compared with doctest's
ELLIPSIS (``...`` matches anything) after timestamps are replaced on both sides.

Set ``KATCP_SHOW_TRANSCRIPTS=1`` to print what the commands produce now.
"""

import doctest
import glob
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSCRIPTS = os.path.join(ROOT, "doc", "transcripts")
SHOWN_PORT = "7147"
# The timestamp of a #sensor-value / #sensor-status inform (its first argument).
TIMESTAMP = re.compile(r"^(\s*#sensor-(?:value|status)(?:\[[0-9]+\])? )[0-9.]+", re.M)
# The library's version in the greeting (#version-connect katcp-library).
LIBRARY = re.compile(r"^(#version-connect katcp-library ).*$", re.M)
# How the commands of the docs run here: with this interpreter, from the work tree.
COMMANDS = {
    "python3 dev.py demo": f"{sys.executable} -m katcp.tools.demo",
    "python3 scripts/": f"{sys.executable} scripts/",
}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["COLUMNS"] = "100"
    return env


def parse(path):
    """``[(command, expected_output_lines)]`` of a transcript file."""
    blocks = []
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            if line.startswith("$ "):
                blocks.append((line[2:], []))
            elif blocks:
                blocks[-1][1].append(line)
            elif line.strip():
                raise AssertionError(f"{path}: text before the first '$ ' command: {line!r}")
    return blocks


def _readline(sock_file):
    line = sock_file.readline()
    if not line:
        raise AssertionError("the instrument closed the connection")
    return line.rstrip("\n")


def replay_nc(port, expected):
    """Type the ``?`` lines of a raw session; collect what the instrument sends back."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("r", encoding="utf-8", newline="\n")
        typed = [line for line in expected if line.startswith("?")]
        greeting = expected.index(typed[0]) if typed else len(expected)
        out.extend(_readline(f) for _ in range(greeting))
        for request in typed:
            out.append(request)
            sock.sendall(request.encode() + b"\n")
            name = request[1:].split()[0].split("[")[0]
            while True:
                line = _readline(f)
                out.append(line)
                if line.startswith("!" + name):
                    break
    return out


def run_command(command, port):
    if command.startswith(("nc ", "telnet ")):
        raise AssertionError("raw sessions are replayed by replay_nc")
    for shown, actual in COMMANDS.items():
        command = command.replace(shown, actual)
    command = command.replace(SHOWN_PORT, str(port))
    result = subprocess.run(["bash", "-c", "exec 2>&1\n" + command], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=60)
    return result.stdout.splitlines()


def normalise(lines, port):
    text = "\n".join(lines) + "\n"
    text = text.replace(str(port), SHOWN_PORT)
    return _mask(text)


def _mask(text):
    """Replace what changes from run to run or release to release."""
    return LIBRARY.sub(r"\1VERSION", TIMESTAMP.sub(r"\1TIMESTAMP", text))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    def __init__(self, kind):
        if kind == "cryostat":
            cmd = [sys.executable, "scripts/cryostat.py", "--port", "0"]
        else:
            cmd = [sys.executable, "-m", "katcp.tools.example_server", "--port", "0"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on [0-9.]+:([0-9]+)", line)
        assert match, line
        self.port = int(match.group(1))

    def close(self):
        self.proc.terminate()
        self.proc.communicate(timeout=10)


FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(TRANSCRIPTS, "*.txt")))


def test_transcripts_exist_and_are_shown():
    assert FILES, "no transcripts"
    text = ""
    for path in glob.glob(os.path.join(ROOT, "doc", "**", "*.rst"), recursive=True):
        with open(path, encoding="utf-8") as f:
            text += f.read()
    for name in FILES:
        assert f"transcripts/{name}" in text, f"{name} is not included in the docs"


@pytest.mark.parametrize("name", FILES)
def test_transcript(name):
    for tool in ("bash", "katcp-cmd", "katcp-shell"):
        if shutil.which(tool, path=_env()["PATH"]) is None:
            pytest.skip(f"{tool} is not installed (the console scripts come with the package)")
    kind = name.split("-")[0]
    server = _Server(kind) if kind in ("cryostat", "exampleserver") else None
    port = server.port if server else _free_port()   # for commands that start their own
    checker = doctest.OutputChecker()
    try:
        for command, expected in parse(os.path.join(TRANSCRIPTS, name)):
            if command.startswith(("nc ", "telnet ")):
                actual = replay_nc(port, expected)
            else:
                actual = run_command(command, port)
            got = normalise(actual, port)
            want = _mask("\n".join(expected) + "\n")
            if os.environ.get("KATCP_SHOW_TRANSCRIPTS"):
                print(f"$ {command}\n{got}", end="")
                continue
            assert checker.check_output(want, got, doctest.ELLIPSIS), (
                f"{name}: $ {command}\n--- shown in the docs\n{want}--- produced now\n{got}")
    finally:
        if server:
            server.close()
