"""The README's demo command: the example instrument plus a BlockingClient session."""

import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_session_runs_against_example_instrument():
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "katcp.tools.demo", "--no-wait", "--port", str(_free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "!help[1] ok" in out
    assert "#sensor-value[" in out and " temperature " in out
    assert "rf.gain nominal 2.5" in out
    assert "ok 7" in out
    assert "Error\\_in\\_parameter\\_2" in out
