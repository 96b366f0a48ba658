"""Replay the command-line transcripts shown in the docs (doc/transcripts/*.txt).

A transcript is what a reader types and sees: lines starting with ``$ `` are shell commands,
the lines after them their output (stdout and stderr).  A ``$ nc HOST PORT`` command is a raw
session: its ``?`` lines are typed by the reader and the other lines are what the instrument
sends, replayed here over a socket (``nc`` itself is not needed).

The file name says what the commands talk to: ``cryostat-*`` runs ``scripts/cryostat.py``,
``exampleserver-*`` runs ``katcp-exampleserver``, ``fleet-*`` runs a small fleet in a
scratch directory (the commands' working directory) as the Tools chapter starts it:
``katcp-fleetsim --devices 2 --sensors 4 --rate 0 --base-port 20000 --write-config
fleet.toml``, then ``katcp-manager --config fleet.toml`` on port 7147 and ``katcp-exporter
--config fleet.toml`` on port 9700, all synced before the first command; others need
nothing.  Port 7147 in the transcript stands for the port the instrument (or manager) got,
and a fleet's 20000, 20001 and 9700 for its real ports.  Output is compared with doctest's
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
import time
import urllib.request

import pytest
from ports import free_consecutive_ports

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
    # curl need not be installed: the same GET, printed the same way.
    "curl -s ": f"{sys.executable} -c 'import sys, urllib.request; "
                "sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' ",
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


def run_command(command, ports, cwd=ROOT):
    """Run a transcript's command; `ports` maps each port shown to the real one."""
    if command.startswith(("nc ", "telnet ")):
        raise AssertionError("raw sessions are replayed by replay_nc")
    for shown, actual in COMMANDS.items():
        command = command.replace(shown, actual)
    for shown, actual in ports.items():
        command = command.replace(shown, str(actual))
    result = subprocess.run(["bash", "-c", "exec 2>&1\n" + command], cwd=cwd, env=_env(),
                            capture_output=True, text=True, timeout=60)
    return result.stdout.splitlines()


def normalise(lines, ports):
    text = "\n".join(lines) + "\n"
    for shown, actual in ports.items():
        text = text.replace(str(actual), shown)
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


class _Fleet:
    """katcp-fleetsim with katcp-manager and katcp-exporter over it, in `cwd`, synced."""

    DEVICES = 2
    SENSORS = 4

    def __init__(self, cwd):
        self.cwd = str(cwd)
        self.procs = []
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _spawn(self, name, *args):
        log = open(os.path.join(self.cwd, f"{name}.log"), "w")
        self.procs.append(subprocess.Popen([sys.executable, "-m", *args], cwd=self.cwd,
                                           env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL))
        log.close()
        return os.path.join(self.cwd, f"{name}.log")

    @staticmethod
    def _wait_for(path, pattern, what, timeout=20.0, alive=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(path, encoding="utf-8") as f:
                if re.search(pattern, f.read()):
                    return
            if alive is not None and alive.poll() is not None:
                break
            time.sleep(0.05)
        with open(path, encoding="utf-8") as f:
            raise AssertionError(f"{what} did not start:\n{f.read()[-2000:]}")

    def _start(self):
        for attempt in range(5):
            # Consecutive ports below Linux's ephemeral range, free a moment ago.
            base = free_consecutive_ports(self.DEVICES)
            log = self._spawn("fleetsim", "katcp.tools.fleetsim", "--devices",
                              str(self.DEVICES), "--sensors", str(self.SENSORS), "--rate", "0",
                              "--base-port", str(base), "--write-config", "fleet.toml")
            try:
                self._wait_for(log, r"devices x \d+ sensors", "katcp-fleetsim",
                               alive=self.procs[-1])
                break
            except AssertionError:
                failed = self.procs.pop()
                failed.kill()
                failed.wait(timeout=10)
                if attempt == 4:
                    raise
        manager, exporter = _free_port(), _free_port()
        log = self._spawn("manager", "katcp.manager.cli", "--config", "fleet.toml",
                          "--listen", f"127.0.0.1:{manager}")
        self._wait_for(log, r"listening on", "katcp-manager")
        log = self._spawn("exporter", "katcp.tools.exporter", "--config", "fleet.toml",
                          "--listen", f"127.0.0.1:{exporter}", "--no-progress")
        self._wait_for(log, r"Exporting \d+ device", "katcp-exporter")
        self.ports = {"20000": base, "20001": base + 1, SHOWN_PORT: manager, "9700": exporter}
        self._until_synced(manager, exporter)

    def _until_synced(self, manager, exporter, timeout=20.0):
        want = f"up {self.SENSORS}"
        deadline = time.monotonic() + timeout
        while True:
            with socket.create_connection(("127.0.0.1", manager), timeout=5) as sock:
                sock.sendall(b"?device-list\n")
                f = sock.makefile("r", encoding="utf-8", newline="\n")
                lines = []
                while not lines or not lines[-1].startswith("!device-list"):
                    lines.append(_readline(f))
            devices = [line for line in lines if line.startswith("#device-list")]
            with urllib.request.urlopen(f"http://127.0.0.1:{exporter}/metrics",
                                        timeout=5) as response:
                metrics = response.read().decode()
            synced = len(re.findall(r"^katcp_device_synced\{.*\} 1\.0$", metrics, re.M))
            if (len(devices) == self.DEVICES and all(d.endswith(want) for d in devices)
                    and synced == self.DEVICES):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"fleet not synced: {lines} / {synced} synced")
            time.sleep(0.1)

    def close(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(TRANSCRIPTS, "*.txt")))


def test_transcripts_exist_and_are_shown():
    assert FILES, "no transcripts"
    text = ""
    for path in glob.glob(os.path.join(ROOT, "doc", "**", "*.rst"), recursive=True):
        with open(path, encoding="utf-8") as f:
            text += f.read()
    for name in FILES:
        assert f"transcripts/{name}" in text, f"{name} is not included in the docs"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """One fleet for every ``fleet-*`` transcript (they leave it as they found it)."""
    pytest.importorskip("prometheus_client")
    running = _Fleet(tmp_path_factory.mktemp("fleet"))
    yield running
    running.close()


@pytest.mark.parametrize("name", FILES)
def test_transcript(name, request):
    for tool in ("bash", "katcp-cmd", "katcp-shell"):
        if shutil.which(tool, path=_env()["PATH"]) is None:
            pytest.skip(f"{tool} is not installed (the console scripts come with the package)")
    kind = name.split("-")[0]
    cwd = ROOT
    if kind == "fleet":
        running = request.getfixturevalue("fleet")
        server = None  # closed with the module
        ports = running.ports
        cwd = running.cwd
    else:
        server = _Server(kind) if kind in ("cryostat", "exampleserver") else None
        # A free port for commands that start their own instrument.
        ports = {SHOWN_PORT: server.port if server else _free_port()}
    port = ports[SHOWN_PORT]
    checker = doctest.OutputChecker()
    try:
        for command, expected in parse(os.path.join(TRANSCRIPTS, name)):
            if command.startswith(("nc ", "telnet ")):
                actual = replay_nc(port, expected)
            else:
                actual = run_command(command, ports, cwd)
            got = normalise(actual, ports)
            want = _mask("\n".join(expected) + "\n")
            if os.environ.get("KATCP_SHOW_TRANSCRIPTS"):
                print(f"$ {command}\n{got}", end="")
                continue
            assert checker.check_output(want, got, doctest.ELLIPSIS), (
                f"{name}: $ {command}\n--- shown in the docs\n{want}--- produced now\n{got}")
    finally:
        if server:
            server.close()
