"""Locks through the manager with concurrent clients, and the audit lines they write."""

import asyncio
import logging
import re
import subprocess
import textwrap

import pytest
from manager_support import (
    LineClient,
    katcp_spec,
    run,
    running_manager,
    start_device,
    stop_device,
    until,
)
from peers import katcp093_env, katcp093_python

from katcp.manager.locks import LockError, LockTable, audit_lock


def _address(client: LineClient) -> str:
    host, port = client.writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


def _escaped(text: str) -> str:
    return text.replace(" ", "\\_")


async def _fleet():
    rx1 = await start_device()
    rx2 = await start_device()
    return (rx1, rx2), {"rx1": katcp_spec("rx1", rx1.bind_address[1]),
                        "rx2": katcp_spec("rx2", rx2.bind_address[1])}


async def _until_ok(client: LineClient, text: str, timeout: float = 5.0) -> None:
    name = text.split()[0]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reply, _ = await client.request(text)
        if reply.startswith(f"!{name} ok"):
            return
        assert loop.time() < deadline, reply
        await asyncio.sleep(0.02)


def test_lock_is_enforced_for_control_but_not_for_reading(caplog):
    caplog.set_level(logging.INFO, logger="katcp.audit")

    async def main():
        devices, specs = await _fleet()
        async with running_manager(specs) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp") and mgr.has_sensor("rx2.temp"))
            a = await LineClient.connect(mgr.bind_address[1])
            b = await LineClient.connect(mgr.bind_address[1])
            holder = _address(a)
            assert (await a.request("lock rx1"))[0] == f"!lock ok {holder}"
            locked = f"device\\_rx1\\_is\\_locked\\_by\\_{holder}"
            assert (await b.request("rx1-echo x"))[0] == f"!rx1-echo fail {locked}"
            assert (await b.request("rx1-set-mode observe"))[0] == f"!rx1-set-mode fail {locked}"
            # Reading stays open to everyone.
            assert (await b.request("sensor-value rx1.temp"))[0] == "!sensor-value ok 1"
            assert (await b.request("sensor-sampling rx1.temp event"))[0].startswith(
                "!sensor-sampling ok")
            assert (await b.request("help rx1-echo"))[0] == "!help ok 1"
            assert (await b.request("sensor-list rx1.temp"))[0] == "!sensor-list ok 1"
            # Other devices are not affected; the holder is.
            assert (await b.request("rx2-echo y"))[0] == "!rx2-echo ok y"
            assert (await a.request("rx1-echo x"))[0] == "!rx1-echo ok x"
            # Only the holder unlocks; a second lock is refused naming the holder.
            assert (await b.request("unlock rx1"))[0] == f"!unlock fail {locked}"
            assert (await b.request("lock rx1"))[0] == f"!lock fail {locked}"
            _, informs = await b.request("lock-list")
            assert informs == [f"#lock-list rx1 {holder} none"]
            assert (await a.request("lock rx1 30"))[0] == f"!lock ok {holder}"  # renew
            assert (await a.request("unlock rx1"))[0] == "!unlock ok"
            assert (await b.request("rx1-echo x"))[0] == "!rx1-echo ok x"
            assert (await b.request("unlock rx1"))[0] == "!unlock fail device\\_rx1\\_is\\_not\\_locked"
            assert (await b.request("lock rx9"))[0] == "!lock fail unknown\\_device\\_rx9"
            assert (await b.request("lock rx1 -1"))[0].startswith("!lock fail lease")
            assert (await b.request("lock rx1 nan"))[0].startswith("!lock fail lease")
            assert (await b.request("lock"))[0].startswith("!lock fail")
            assert (await b.request("lock-list"))[1] == []
            await a.close()
            await b.close()
        for device in devices:
            await stop_device(device)

    run(main)
    lines = [_fields(r.getMessage()) for r in caplog.records if r.name == "katcp.audit"]

    def seen(**wanted):
        return any(all(line.get(k) == v for k, v in wanted.items()) for line in lines)

    assert seen(user="-", event="lock", request="lock", status="ok")
    assert any(line["event"] == "lock" and line["addr"].startswith("127.0.0.1:")
               and line["detail"].startswith("device=rx1,holder=127.0.0.1:") for line in lines)
    assert seen(event="refused", request="rx1-echo", status="fail")
    assert seen(event="request", request="rx1-echo", status="ok", detail="device=rx1")
    assert seen(event="lock-denied", request="lock", status="fail")
    assert any(line["event"] == "lock-renew" and line["detail"].endswith(",lease=30")
               for line in lines)
    assert seen(event="unlock", request="unlock", status="ok")


def _fields(line: str) -> dict:
    """An audit line's ``key=value`` fields (after the time stamp)."""
    return dict(part.split("=", 1) for part in line.split()[1:])


def test_lock_ends_on_lease_disconnect_and_break(caplog):
    caplog.set_level(logging.INFO, logger="katcp.audit")

    async def main():
        devices, specs = await _fleet()
        async with running_manager(specs) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp"))
            a = await LineClient.connect(mgr.bind_address[1])
            b = await LineClient.connect(mgr.bind_address[1])
            # Lease.
            assert (await a.request("lock rx1 0.15"))[0].startswith("!lock ok")
            assert (await b.request("rx1-echo x"))[0].startswith("!rx1-echo fail")
            await _until_ok(b, "rx1-echo x")
            # Holder disconnects.
            assert (await a.request("lock rx1"))[0].startswith("!lock ok")
            assert (await b.request("rx1-echo x"))[0].startswith("!rx1-echo fail")
            await a.close()
            await _until_ok(b, "rx1-echo x")
            # Break (no user store: anyone may).
            a = await LineClient.connect(mgr.bind_address[1])
            assert (await a.request("lock rx1"))[0].startswith("!lock ok")
            assert (await b.request("lock-break rx1"))[0] == f"!lock-break ok {_address(a)}"
            assert (await b.request("rx1-echo x"))[0] == "!rx1-echo ok x"
            assert (await b.request("lock-break rx1"))[0].startswith("!lock-break fail")
            await a.close()
            await b.close()
        for device in devices:
            await stop_device(device)

    run(main)
    events = [_fields(r.getMessage())["event"] for r in caplog.records
              if r.name == "katcp.audit"]
    for event in ("lock-expire", "lock-release", "lock-break"):
        assert event in events


def test_concurrent_lock_requests_have_one_winner():
    async def main():
        devices, specs = await _fleet()
        async with running_manager(specs) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp"))
            clients = [await LineClient.connect(mgr.bind_address[1]) for _ in range(6)]
            replies = await asyncio.gather(*(c.request("lock rx1") for c in clients))
            winners = [c for c, (reply, _) in zip(clients, replies) if reply.startswith("!lock ok")]
            assert len(winners) == 1
            holder = _address(winners[0])
            for c, (reply, _) in zip(clients, replies):
                if c is not winners[0]:
                    assert reply == f"!lock fail device\\_rx1\\_is\\_locked\\_by\\_{holder}"
            # Everyone hammers the device; only the holder gets through.
            results = await asyncio.gather(*(c.request("rx1-echo go") for c in clients))
            ok = [c for c, (reply, _) in zip(clients, results) if reply == "!rx1-echo ok go"]
            assert ok == winners
            for c in clients:
                await c.close()
        for device in devices:
            await stop_device(device)

    run(main)


def test_lock_table_on_its_own():
    async def main():
        changes = []
        table = LockTable(asyncio.get_running_loop(), on_change=changes.append)
        table.acquire("rx1", "a", "alice", lease=0.05)
        with pytest.raises(LockError, match="locked by alice"):
            table.acquire("rx1", "b", "bob")
        assert table.remaining(table.holder_of("rx1")) <= 0.05
        await until(lambda: table.holder_of("rx1") is None, timeout=2)
        table.acquire("rx1", "b", "bob")
        table.acquire("rx2", "b", "bob")
        assert [lock.device for lock in table.release_owner("b", "gone")] == ["rx1", "rx2"]
        assert changes == ["rx1", "rx1", "rx1", "rx2", "rx1", "rx2"]
        table.close()

    run(main)


def test_audit_line_format():
    line = audit_lock("lock", "rx1", "alice", user="alice", addr=("127.0.0.1", 5555),
                      request="lock", lease=30.0)
    assert line.split(" ", 1)[1] == ("user=alice addr=127.0.0.1:5555 event=lock request=lock "
                                     "status=ok detail=device=rx1,holder=alice,lease=30")
    line = audit_lock("lock-expire", "rx1", "a b\nc")
    assert line.split(" ", 1)[1] == ("user=- addr=- event=lock-expire request=- status=ok "
                                     "detail=device=rx1,holder=a\\_b\\nc")


KATCP093_CLIENT = textwrap.dedent("""
    import sys
    import katcp
    client = katcp.BlockingClient("127.0.0.1", int(sys.argv[1]))
    client.start()
    client.wait_protocol(5)
    for args in (("rx1-echo", "a", "b"), ("rx1-informs", "2"), ("lock", "rx1"),
                 ("lock-list",), ("sensor-value", "rx1.mode")):
        reply, informs = client.blocking_request(katcp.Message.request(*args), timeout=5)
        print(reply)
        for inform in informs:
            print(inform)
    client.stop()
    client.join(5)
""")


def test_katcp_python_093_client_through_the_manager():
    python = katcp093_python()

    async def main():
        devices, specs = await _fleet()
        async with running_manager(specs) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp"))
            proc = await asyncio.create_subprocess_exec(
                python, "-c", KATCP093_CLIENT, str(mgr.bind_address[1]), cwd="/", env=katcp093_env(),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()[-2000:]
            # katcp-python numbers its requests when the manager offers message ids.
            lines = [re.sub(r"^([!#][A-Za-z0-9-]+)\[[0-9]+\]", r"\1", line)
                     for line in out.decode().splitlines()]
            assert lines[0] == "!rx1-echo ok a b"
            # The client script prints each reply, then its informs.
            assert lines[1:4] == ["!rx1-informs ok 2", "#rx1-informs item 0",
                                  "#rx1-informs item 1"]
            assert lines[4].startswith("!lock ok 127.0.0.1:")
            assert lines[5].startswith("!lock-list ok 1")
            assert lines[-2] == "!sensor-value ok 1"
            assert lines[-1].split()[3:] == ["rx1.mode", "nominal", "idle"]
        for device in devices:
            await stop_device(device)

    run(main, timeout=40)
