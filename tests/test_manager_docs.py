"""The manager chapter's complete config and session transcript, replayed against the
``katcp-manager`` command with real devices (``katcp-exampleserver`` in a subprocess, a
receiver and an NCP node)."""

import asyncio
import os
import re
import signal
import subprocess
import sys

from manager_support import (
    ROOT,
    ExampleServerProcess,
    LineClient,
    run,
    start_device,
    stop_device,
)

from katcp import ncp
from katcp.manager import load_manager_config

EXAMPLES = os.path.join(ROOT, "doc", "examples")
CONFIG = os.path.join(EXAMPLES, "manager.toml")
SESSION = os.path.join(EXAMPLES, "manager_session.txt")


def test_doc_config_is_valid_as_written():
    config = load_manager_config(CONFIG)
    assert config.listen == ("127.0.0.1", 7147)
    assert config.register == ("127.0.0.1", 7148)
    assert list(config.devices) == ["rx1", "rx2", "node1"]
    assert config.devices["rx2"].strategy == ("event-rate", "0.1", "10")
    assert config.devices["node1"].fields == ("DSPC.TIME", "NODE.STAT")


async def _node(connection) -> None:
    """The doc's NCP node: answers DSPC TIME, reports NODE STAT unasked."""

    async def status() -> None:
        while True:
            connection.send("NODE", "STAT", TEMP=41, LOAD=0.25, NAME="node1")
            await asyncio.sleep(0.05)

    task = asyncio.ensure_future(status())
    try:
        async for field in connection:
            if field.packet_type == "DSPC" and field.name == "TIME":
                field.send(ACKN=1)
                field.send(SAMP=field.get("SAMP", 0), TSDC=field.get("SAMP", 0) * 2,
                           UNIT="dBm")
    finally:
        task.cancel()


def _normalise(line: str) -> str:
    line = re.sub(r"\b\d{9,}\.\d+\b", "TIMESTAMP", line)
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
    if line.startswith("#lock-list "):
        line = line.rsplit(" ", 1)[0] + " LEASE"
    return line


def _session():
    """(request, [expected lines]) pairs of the transcript."""
    pairs = []
    with open(SESSION) as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if line.startswith("?"):
                pairs.append((line[1:], []))
            elif line:
                pairs[-1][1].append(line)
    return pairs


def _matches(expected: str, got: str) -> bool:
    expected, got = _normalise(expected), _normalise(got)
    if expected.endswith("..."):
        return got.startswith(expected[:-3])
    return expected == got


def test_doc_session_against_katcp_manager_command(tmp_path):
    example = ExampleServerProcess()
    rx1_port = example.start()

    async def main():
        rx2 = await start_device()
        node = await ncp.start_server(_node, "127.0.0.1", 0)
        node_port = node.sockets[0].getsockname()[1]
        with open(CONFIG) as handle:
            text = handle.read()
        audit_log = tmp_path / "audit.log"
        text = text.replace("127.0.0.1:7147", "127.0.0.1:0")
        text = text.replace("127.0.0.1:7148", "127.0.0.1:0")
        text = text.replace("127.0.0.1:7150", f"127.0.0.1:{rx1_port}")
        text = text.replace("127.0.0.1:7151", f"127.0.0.1:{rx2.bind_address[1]}")
        text = text.replace("127.0.0.1:9999", f"127.0.0.1:{node_port}")
        text = text.replace('"manager-audit.log"', f'"{audit_log}"')
        config = tmp_path / "fleet.toml"
        config.write_text(text)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "katcp.manager.cli", "--config", str(config),
            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
        try:
            port = None
            log_lines = []
            while port is None:
                line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
                assert line, "katcp-manager exited: " + "".join(log_lines)
                log_lines.append(line)
                match = re.search(r"listening on [\d.]+:(\d+)", line)
                if match:
                    port = int(match.group(1))
            assert any("every client may do everything" in line for line in log_lines)
            drain = asyncio.ensure_future(proc.stderr.read())
            client = await LineClient.connect(port)
            # Wait (bounded) until every device is up with all its sensors.
            first_request, first_expected = _session()[0]
            for _ in range(200):
                reply, informs = await client.request(first_request)
                if [reply] + informs and all(
                        _matches(e, g) for e, g in zip(first_expected, informs + [reply])):
                    break
                await asyncio.sleep(0.05)
            for request, expected in _session():
                reply, informs = await client.request(request)
                got = informs + [reply]
                assert len(got) == len(expected), (request, got)
                for e, g in zip(expected, got):
                    assert _matches(e, g), (request, e, g)
            await client.close()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            await asyncio.wait_for(drain, 5)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            node.close()
            await stop_device(rx2)
        audit = audit_log.read_text()
        assert re.search(r" user=- addr=127\.0\.0\.1:\d+ event=lock request=lock status=ok "
                         r"detail=device=rx1,holder=127\.0\.0\.1:\d+,lease=60$", audit, re.M)
        assert re.search(r" event=unlock request=unlock status=ok detail=device=rx1,", audit)

    try:
        run(main, timeout=60)
    finally:
        example.kill()


MINIMAL = """
[manager]
listen = "127.0.0.1:7147"

[devices.rx1]
katcp = "127.0.0.1:7150"

[devices.node1]
ncp = "127.0.0.1:9999"
"""


def test_issue_minimal_config_with_devices_down(tmp_path):
    """The issue's minimal file works as is, with neither device running yet."""

    async def main():
        listeners = []
        for _ in range(2):  # two ports nobody listens on
            server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            listeners.append(server.sockets[0].getsockname()[1])
            server.close()
            await server.wait_closed()
        config = tmp_path / "minimal.toml"
        config.write_text(MINIMAL.replace("7147", "0").replace("7150", str(listeners[0]))
                          .replace("9999", str(listeners[1])))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "katcp.manager.cli", "--config", str(config),
            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
        try:
            lines = []
            port = None
            while port is None:
                line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
                assert line, "".join(lines)
                lines.append(line)
                match = re.search(r"listening on [\d.]+:(\d+)", line)
                port = int(match.group(1)) if match else None
            assert any("every client may do everything" in line for line in lines)
            drain = asyncio.ensure_future(proc.stderr.read())
            client = await LineClient.connect(port)
            reply, informs = await client.request("device-list")
            assert reply == "!device-list ok 2"
            assert [line.split()[1::3] for line in informs] == [["rx1", "unreachable"],
                                                                 ["node1", "unreachable"]]
            assert (await client.request("rx1-anything 1"))[0] == (
                "!rx1-anything fail device\\_rx1\\_is\\_unreachable")
            assert (await client.request("node1-dspc-time"))[0] == (
                "!node1-dspc-time fail device\\_node1\\_is\\_unreachable")
            assert (await client.request("lock rx1"))[0].startswith("!lock ok")
            await client.close()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            await asyncio.wait_for(drain, 5)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    run(main, timeout=40)
