"""Run the tutorial's programs (``scripts/``) as a reader would, against real instruments.

Each program runs in its own interpreter from the repository root with the repository on
``PYTHONPATH``; instruments (``scripts/cryostat.py``) run as child processes on free ports,
with a fast simulation (``--speed``) so that a cool-down takes a fraction of a second.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
TIMEOUT = 30.0


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    # Console scripts (katcp-cmd) installed next to this interpreter come first on PATH.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def run(*cmd, expect_rc=0):
    result = subprocess.run(list(cmd), cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == expect_rc, (
        f"{cmd} exited with {result.returncode}\n--- stdout\n{result.stdout}"
        f"\n--- stderr\n{result.stderr}")
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def assert_lines_in_order(output, fragments):
    lines = output.splitlines()
    pos = 0
    for fragment in fragments:
        for i in range(pos, len(lines)):
            if fragment in lines[i]:
                pos = i + 1
                break
        else:
            pytest.fail(f"expected a line containing {fragment!r} (in order) in\n{output}")


class Instrument:
    """``scripts/cryostat.py`` in a child process on a free port."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(SCRIPTS, "cryostat.py"), "--port", "0", *args],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("cryostat listening on "), line + self.proc.stderr.read()
        self.address = line.split()[-1]

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, out, err


@pytest.fixture
def instrument():
    inst = Instrument("--speed", "20")
    yield inst
    inst.close()


def test_every_script_is_in_the_tutorial():
    """The docs show (literalinclude) every program the tests run."""
    text = ""
    for path in glob.glob(os.path.join(ROOT, "doc", "**", "*.rst"), recursive=True):
        with open(path, encoding="utf-8") as f:
            text += f.read()
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(SCRIPTS, "*"))
                   if not p.endswith(".pyc"))
    assert names, "no scripts found"
    for name in names:
        assert f"scripts/{name}" in text, f"scripts/{name} is not shown in the docs"


def test_instrument_stops_on_sigterm():
    inst = Instrument()
    rc, out, err = inst.close()
    assert rc == 0, err
    assert "cryostat stopped" in out


def test_instrument_stops_on_halt(instrument):
    out = run(sys.executable, "-m", "katcp.tools.cmd", instrument.address, "halt")
    assert out.strip() == "!halt ok"
    instrument.proc.wait(timeout=10)
    assert instrument.proc.returncode == 0
    assert "cryostat stopped" in instrument.proc.stdout.read()


def test_lab_script(instrument):
    out = run(sys.executable, "scripts/lab_cooldown.py", instrument.address, "--setpoint", "77")
    assert_lines_in_order(out, [
        "connected: 5.1-IMT",
        "set point: 77.0 K",
        "compressor on, waiting for 77.0 K",
        "#wait-stable[",
        "stable at 77.0 K",
        "out of range: fail - Error in parameter 1 (kelvin): Float 1000 is higher than "
        "maximum 300.",
        "sensor state: stable (nominal)",
    ])


def test_lab_script_gives_up(instrument):
    out = run(sys.executable, "scripts/lab_cooldown.py", instrument.address,
              "--setpoint", "4", "--timeout", "0.1", expect_rc=1)
    assert "did not settle: !wait-stable[3] fail not\\_stable\\_after\\_0.1\\_s" in out


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shell_script_with_katcp_cmd(instrument):
    if shutil.which("katcp-cmd", path=_env()["PATH"]) is None:
        pytest.skip("the katcp-cmd console script is not installed next to this Python")
    out = run("bash", "scripts/check_cryostat.sh", instrument.address)
    assert_lines_in_order(out, [
        f"alive: {instrument.address}",
        "temperature: 293.0 K, state: stable",
        "refused as expected: !set-setpoint fail Error in parameter 1 (kelvin): "
        "Float 1000 is higher than maximum 300.",
        "cryostat OK",
    ])
    # A set point above room temperature with the compressor off: the cryostat idles.
    run(sys.executable, "-m", "katcp.tools.cmd", instrument.address, "set-setpoint", "100")
    result = subprocess.run(["bash", "scripts/check_cryostat.sh", instrument.address],
                            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cryostat is idle" in result.stderr, result
    host = instrument.address.rsplit(":", 1)[0]
    result = subprocess.run(["bash", "scripts/check_cryostat.sh", f"{host}:1"],
                            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and f"no instrument at {host}:1" in result.stderr


def test_fleet_monitor():
    fleet = [Instrument("--speed", "20") for _ in range(3)]
    try:
        out = run(sys.executable, "scripts/fleet_monitor.py",
                  *(inst.address for inst in fleet), "--setpoint", "150")
    finally:
        for inst in fleet:
            inst.close()
    assert_lines_in_order(out, [
        "synced: cryo1, cryo2, cryo3",
        "sensors: 12 e.g. ['cryo1_compressor_running', 'cryo1_setpoint', 'cryo1_state', "
        "'cryo1_temperature']",
        "set point: {'cryo1': True, 'cryo2': True, 'cryo3': True}",
        "compressors on: True",
        "cryo1 below 200 K: True",
        "all stable: True {'cryo1': True, 'cryo2': True, 'cryo3': True}",
        "cryo1: 150.0 K",
        "stopped",
    ])
    for name in ("cryo1", "cryo2", "cryo3"):
        assert f"  {name}: state = stable (nominal)" in out


def test_ncp_node_session():
    out = run(sys.executable, "scripts/ncp_node_session.py")
    assert_lines_in_order(out, [
        "node rfnode-sim: up 3600 s, 41.25 degC",
        "band 0 from 2400 MHz: 64 'f' samples, peak -85.0 dBm",
        "band 3 from 2460 MHz: 64 'f' samples, peak -76.0 dBm",
        "CommandError: Unknown command DSPC NOPE 404",
        "no answer to DSPC HANG within 0.2 s",
        "blocking: rfnode-sim 41.25",
    ])
