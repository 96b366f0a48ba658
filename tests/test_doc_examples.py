"""Run every example program of the documentation (doc/examples/*.py) and check its output.

Each example runs in its own interpreter (``sys.executable``), from the repository root with
the repository on ``PYTHONPATH``, exactly as a reader would run it.  An example passes when it
exits with status 0 within the time limit and its output contains the lines listed below
(only the lines that do not depend on timing or on the wall clock are checked).
"""

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "doc", "examples")
TIMEOUT = 20.0

#: Expected output fragments, in order, for each example (by file name).
EXPECTED = {
    "messages.py": [
        r"b'?set-gain[7] 2.5 manual\\_mode 1'",
        "set-gain [b'2.5', b'manual mode', b'1'] b'7'",
        "b'!set-gain[7] ok 2.5' True",
        "b'#set-gain[7] detail' True",
        "True sensor-value b'3' [b'temperature']",
        r"[b'warn', b'0.0', b'root', b'hello world\n']",
        "syntax error:",
        "[<Message request watchdog >] 6",
        "Message !watchdog ok",
        "KatcpSyntaxError ",
        "Message #version-connect katcp-protocol 5.1-MIB",
        r"b'!help ok 3\n'",
    ],
    "sensors_kattypes.py": [
        "b'2.5' 7.25",
        "b'42' b'1' False",
        "observe",
        "('192.168.1.10', 7147) b'1.500000'",
        "ValueError: Float 11 is higher than maximum 10.",
        "ValueError: Could not parse value '4.5' as integer.",
        "ValueError: Discrete value 'run' is not one of ['idle', 'observe'].",
        "[3, 1.0]",
        "temperature float degC [-20.0, 80.0]",
        "  observer: temperature -> 25.5 (nominal)",
        "  observer: temperature -> 75.0 (warn)",
        "  observer: temperature -> 85.0 (error)",
        "30.0 nominal",
        "(b'nominal', b'30.0')",
        "(b'nominal', b'idle')",
        "12.5 observe",
        "ValueError: Invalid value 'sleeping'",
    ],
    "sampling.py": [
        "auto                 [-40.0, -40.0, -39.5, -38.0, -38.0, -45.0]",
        "event                [-40.0, -39.5, -38.0, -45.0]",
        "differential 1.0     [-40.0, -38.0, -45.0]",
        "event-rate 0.05 10   [-40.0",
        "period 0.05          [-40.0",
        "formatted: (b'differential', [b'1.0'])",
        "ValueError: Unknown sampling strategy 'sometimes'.",
        "ValueError: The 'period' strategy takes one parameter",
        "ValueError: The 'period' strategy's period must be positive",
        "ValueError: The 'differential' strategy is only valid for integer, float and timestamp",
    ],
    "server_basic.py": [
        "server listening: True True",
        "!echo[1] ok hello world",
        "!set-point[2] ok 42.5",
        r"!set-point[3] fail too\_hot\_for\_this\_toy",
        r"!set-point[4] fail Error\_in\_parameter\_1\_(degrees)",
        r"!shout[5] ok QUIET\_PLEASE",
        r"!no-such-request[6] invalid Unknown\_request.",
        " temperature nominal 42.5",
        "!sensor-value[7] ok 1",
    ],
    "server_async.py": [
        "server protocol: 5.",
        "[b'#countdown[1] 3', b'#countdown[1] 2', b'#countdown[1] 1'] b'!countdown[1] ok'",
        r"b'!later[2] ok done\\_later'",
        r"b'!sleep[3] fail Request\\_sleep\\_timed\\_out'",
        "b'!sensor-sampling[4] ok level event'",
        "levels pushed to the client: [0, 10, 20, 30]",
    ],
    "client_threads.py": [
        "connected: True",
        "b'#help[1] wait Block' b'!help[1] ok 1'",
        "timeout -> b'fail' True",
        "callback results: b'client-list halt help log-level",
        "server stopped; reply arrived: True [b'!wait[",
        "not connected -> b'!watchdog fail Not'",
    ],
    "resource_client.py": [
        "synced: True synced",
        "requests: ['client_list', 'halt', 'help', 'log_level'] sensors: ['rx_gain']",
        "help: Set the receiver gain in dB.",
        "b'!set-gain[",
        "False Error in parameter 1 (gain): Float 99 is higher than maximum 10.",
        "polled value: 2.5",
        "reached 4.0: True",
        "reached 7.0: False",
        "listener saw: [2.5, 4.0]",
    ],
    "resource_threaded.py": [
        "set: True 12.5",
        "refused: False",
        "reached 3.0: True",
    ],
    "from_katcp_python.py": [
        "old-style -> !old-style[1] ok 0.01",
        "new-style -> !new-style[2] ok 0.01",
        "server stopped: True",
        "disconnected -> True False Not connected",
    ],
    "from_aiokatcp.py": [
        "aiokatcp server",
        "  aiokatcp Client: [b'42.5']",
        "  aiokatcp Client: FailReply raised",
        "  katcp resource: [b'ok', b'21.5'] True",
        "  katcp resource: refused, succeeded = False",
        "  katcp resource: temperature is 21.5: True",
        "katcp server",
        "  aiokatcp Client: [b'42.5']",
        "  aiokatcp Client: FailReply raised",
        "  katcp resource: [b'ok', b'21.5'] True",
        "  katcp resource: refused, succeeded = False",
        "  katcp resource: temperature is 21.5: True",
    ],
    "ncp_example.py": [
        "async: DSPC TIME {'TSDC': 2048, 'FCTR': 1200, 'UNIT': 'dBm'}",
        "async: CommandError: Unknown command 404",
        "blocking: 16 dBm",
        "NetworkError: NetworkError",
    ],
}

SCRIPTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, "*.py")))


def run_example(name):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )


def test_every_example_has_expected_output():
    """Each example is checked for content, and every listed example exists."""
    assert sorted(EXPECTED) == SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs(name):
    result = run_example(name)
    assert result.returncode == 0, (
        f"{name} exited with {result.returncode}\n--- stdout\n{result.stdout}"
        f"\n--- stderr\n{result.stderr}")
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    pos = 0
    for fragment in EXPECTED.get(name, []):
        for i in range(pos, len(lines)):
            if fragment in lines[i]:
                pos = i + 1
                break
        else:
            pytest.fail(f"{name}: expected a line containing {fragment!r} (in order) in\n"
                        f"{result.stdout}")


def test_examples_are_included_in_the_chapters():
    """Every example is shown in a chapter (literalinclude), so the docs match what runs."""
    text = ""
    for path in glob.glob(os.path.join(ROOT, "doc", "*.rst")):
        with open(path, encoding="utf-8") as f:
            text += f.read()
    for name in SCRIPTS:
        assert f"literalinclude:: examples/{name}" in text, name
