"""The manager over real loopback sockets: proxied requests and sensors, sampling, interface
changes, devices going away and coming back, clients that never read, foreign clients."""

import asyncio
import socket

import aiokatcp
import pytest
from manager_support import (
    ExampleServerProcess,
    LineClient,
    katcp_spec,
    run,
    running_manager,
    start_device,
    stop_device,
    until,
)

from katcp.core import Sensor
from katcp.manager import KatcpDevice
from katcp.manager.cli import main as cli_main


async def _two_devices():
    rx1 = await start_device()
    rx2 = await start_device()
    specs = {"rx1": katcp_spec("rx1", rx1.bind_address[1]),
             "rx2": katcp_spec("rx2", rx2.bind_address[1])}
    return rx1, rx2, specs


def test_requests_sensors_and_help_are_proxied():
    async def main():
        rx1, rx2, specs = await _two_devices()
        async with running_manager(specs) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp") and mgr.has_sensor("rx2.mode"))
            c = await LineClient.connect(mgr.bind_address[1])
            assert await c.request("rx1-echo a b\\_c") == ("!rx1-echo ok a b\\_c", [])
            reply, informs = await c.request("rx2-informs 3")
            assert reply == "!rx2-informs ok 3"
            assert informs == ["#rx2-informs item 0", "#rx2-informs item 1",
                               "#rx2-informs item 2"]
            assert (await c.request("rx1-fail"))[0] == "!rx1-fail fail as\\_asked"
            assert (await c.request("rx1-nope"))[0] == "!rx1-nope invalid Unknown\\_request."
            assert (await c.request("rx9-echo"))[0] == "!rx9-echo invalid Unknown\\_request."
            # Message ids are kept.
            c.writer.write(b"?rx1-echo[42] x\n")
            assert await c.wait_for("!rx1-echo[42]") == "!rx1-echo[42] ok x"
            # Help: the device's text, listed with the manager's own requests.
            reply, informs = await c.request("help")
            names = [line.split()[1] for line in informs]
            assert {"rx1-echo", "rx2-set-mode", "lock", "unlock", "lock-list"} <= set(names)
            assert "rx1-halt" not in names and "rx1-sensor-list" not in names
            assert reply == f"!help ok {len(informs)}"
            assert await c.request("help rx1-echo") == (
                "!help ok 1", ["#help rx1-echo Echo\\_the\\_arguments\\_back."])
            # Sensors keep type, units, range and description.
            assert await c.request("sensor-list rx1.temp") == (
                "!sensor-list ok 1",
                ["#sensor-list rx1.temp Temperature degC float -50.0 150.0"])
            assert (await c.request("sensor-list rx2.mode"))[1] == [
                "#sensor-list rx2.mode Mode \\@ discrete idle observe"]
            # Values and timestamps are the device's.
            rx1.temp.set(1234567890.5, Sensor.WARN, 77.25)
            await until(lambda: mgr.get_sensor("rx1.temp").value() == 77.25)
            assert (await c.request("sensor-value rx1.temp"))[1] == [
                "#sensor-value 1234567890.500000 1 rx1.temp warn 77.25"]
            await c.close()
        await stop_device(rx1)
        await stop_device(rx2)

    run(main)


STRATEGIES = [
    ("event",), ("auto",), ("period", "0.05"), ("differential", "5"),
    ("event-rate", "0.01", "1"), ("differential-rate", "5", "0.01", "1"),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=[s[0] for s in STRATEGIES])
def test_sampling_strategies_on_proxied_sensors(strategy):
    async def main():
        rx1 = await start_device()
        async with running_manager({"rx1": katcp_spec("rx1", rx1.bind_address[1])}) as mgr:
            await until(lambda: mgr.has_sensor("rx1.count"))
            c = await LineClient.connect(mgr.bind_address[1])
            reply, _ = await c.request("sensor-sampling rx1.count " + " ".join(strategy))
            assert reply.startswith("!sensor-sampling ok rx1.count " + strategy[0])
            await c.wait_for("#sensor-status")
            for value in (10, 20, 30):
                rx1.count.set_value(value)
                line = await c.wait_for("#sensor-status")
                if strategy[0] != "period":
                    assert line.endswith(f" 1 rx1.count nominal {value}")
            await until(lambda: mgr.get_sensor("rx1.count").value() == 30)
            none, _ = await c.request("sensor-sampling rx1.count none")
            assert none == "!sensor-sampling ok rx1.count none"
            await c.close()
        await stop_device(rx1)

    run(main)


def test_interface_changes_follow_the_devices():
    async def main():
        rx1 = await start_device()
        async with running_manager({"rx1": katcp_spec("rx1", rx1.bind_address[1])}) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp"))
            c = await LineClient.connect(mgr.bind_address[1])
            await c.request("watchdog")
            rx1.add_sensor(Sensor.boolean("new-one", "Added late", ""))
            assert await c.wait_for("#interface-changed") == "#interface-changed sensor-list"
            await until(lambda: mgr.has_sensor("rx1.new-one"))
            rx1.remove_sensor("new-one")
            await c.wait_for("#interface-changed sensor-list")
            await until(lambda: not mgr.has_sensor("rx1.new-one"))
            # A sensor that changes type is replaced, and clients are told.
            rx1.add_sensor(Sensor.string("count", "Now a string", ""))
            await c.wait_for("#interface-changed sensor-list")
            await until(lambda: mgr.get_sensor("rx1.count").stype == "string")
            assert (await c.request("sensor-list rx1.count"))[1] == [
                "#sensor-list rx1.count Now\\_a\\_string \\@ string"]
            # A device appearing and disappearing.
            rx2 = await start_device()
            await mgr.add_device(KatcpDevice(katcp_spec("rx2", rx2.bind_address[1]), mgr))
            await c.wait_for("#interface-changed request-list")
            await until(lambda: mgr.has_sensor("rx2.temp"))
            assert (await c.request("rx2-echo hi"))[0] == "!rx2-echo ok hi"
            await mgr.remove_device("rx2")
            await c.wait_for("#interface-changed")
            assert not mgr.has_sensor("rx2.temp")
            assert (await c.request("rx2-echo hi"))[0] == "!rx2-echo invalid Unknown\\_request."
            await c.close()
            await stop_device(rx2)
        await stop_device(rx1)

    run(main)


def test_device_killed_and_restarted_only_affects_itself():
    async def main():
        rx1, rx2, specs = await _two_devices()
        port1 = rx1.bind_address[1]
        async with running_manager(specs) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp") and mgr.has_sensor("rx2.temp"))
            c = await LineClient.connect(mgr.bind_address[1])
            await c.request("sensor-sampling rx1.temp event")
            assert (await c.wait_for("#sensor-status")).endswith("rx1.temp nominal 20.0")
            await stop_device(rx1)
            assert (await c.wait_for("#sensor-status")).endswith("rx1.temp unreachable 20.0")
            loop = asyncio.get_running_loop()
            start = loop.time()
            reply, _ = await c.request("rx1-echo x")
            assert reply == "!rx1-echo fail device\\_rx1\\_is\\_unreachable"
            assert loop.time() - start < 0.5
            assert (await c.request("rx2-echo y"))[0] == "!rx2-echo ok y"
            assert mgr.get_sensor("rx2.temp").status() == Sensor.NOMINAL
            # The device comes back on the same port: the manager reconnects.
            rx1 = await start_device(port=port1)
            assert (await c.wait_for("#sensor-status", timeout=10)).endswith(
                "rx1.temp nominal 20.0")
            assert (await c.request("rx1-echo x"))[0] == "!rx1-echo ok x"
            await c.close()
        await stop_device(rx1)
        await stop_device(rx2)

    run(main, timeout=30)


def test_client_that_never_reads_is_dropped_others_served():
    async def main():
        rx1 = await start_device()
        async with running_manager({"rx1": katcp_spec("rx1", rx1.bind_address[1])},
                                   max_write_buffer_size=100_000) as mgr:
            await until(lambda: mgr.has_sensor("rx1.count"))
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", mgr.bind_address[1]))
            sock.setblocking(False)
            # Asks for about 4 MB of informs and never reads them.
            sock.sendall(b"?rx1-informs 8000\n" * 20)
            good = await LineClient.connect(mgr.bind_address[1])
            # (generous bounds: the flood shares the device link with these requests, and on
            # a loaded 2-core machine it takes the manager seconds to relay)
            for i in range(20):
                assert (await good.request(f"rx1-echo {i}", 15))[0] == f"!rx1-echo ok {i}"
            clients = []

            async def count_clients():
                _, informs = await good.request("client-list", 15)
                clients.append(len(informs))

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while loop.time() < deadline:
                await count_clients()
                if clients[-1] == 1:
                    break
                await asyncio.sleep(0.05)
            assert clients[-1] == 1, "the client that never reads was not disconnected"
            assert (await good.request("rx1-echo done", 15))[0] == "!rx1-echo ok done"
            sock.close()
            await good.close()
        await stop_device(rx1)

    run(main, timeout=50)


def test_aiokatcp_client_through_the_manager():
    async def main():
        rx1 = await start_device()
        async with running_manager({"rx1": katcp_spec("rx1", rx1.bind_address[1])}) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp"))
            client = await asyncio.wait_for(
                aiokatcp.Client.connect("127.0.0.1", mgr.bind_address[1]), 5)
            try:
                reply, informs = await client.request("rx1-informs", 2)
                assert reply == [b"2"]
                assert [m.arguments for m in informs] == [[b"item", b"0"], [b"item", b"1"]]
                with pytest.raises(aiokatcp.FailReply, match="as asked"):
                    await client.request("rx1-fail")
                _, informs = await client.request("sensor-value", "rx1.mode")
                assert informs[0].arguments[2:] == [b"rx1.mode", b"nominal", b"idle"]
                await client.request("lock", "rx1")
                _, informs = await client.request("lock-list")
                assert informs[0].arguments[0] == b"rx1"
            finally:
                client.close()
                await client.wait_closed()
        await stop_device(rx1)

    run(main)


def test_example_server_subprocess_killed_and_restarted():
    example = ExampleServerProcess()
    port = example.start()
    try:
        async def main():
            nonlocal port
            async with running_manager({"ex": katcp_spec("ex", port)}) as mgr:
                await until(lambda: mgr.has_sensor("ex.temperature"), timeout=10)
                c = await LineClient.connect(mgr.bind_address[1])
                assert (await c.request("ex-add 2 3"))[0] == "!ex-add ok 5"
                reply, informs = await c.request("ex-countdown 2")
                assert reply.startswith("!ex-countdown ok")
                assert informs and all(i.startswith("#ex-countdown") for i in informs)
                await asyncio.get_running_loop().run_in_executor(None, example.kill)
                await until(lambda: not mgr.devices["ex"].up, timeout=5)
                assert (await c.request("ex-add 2 3"))[0].startswith("!ex-add fail")
                await until(lambda: mgr.get_sensor("ex.temperature").status()
                            == Sensor.UNREACHABLE)
                await asyncio.get_running_loop().run_in_executor(None, example.start, port)
                await until(lambda: mgr.devices["ex"].up, timeout=10)
                await until(lambda: mgr.get_sensor("ex.temperature").status()
                            != Sensor.UNREACHABLE, timeout=10)
                assert (await c.request("ex-add 2 3"))[0] == "!ex-add ok 5"
                await c.close()

        run(main, timeout=40)
    finally:
        example.kill()


def test_minimal_setup_warns_that_everyone_may_do_everything(caplog):
    async def main():
        async with running_manager({}):
            pass

    run(main)
    assert "every client may do everything" in caplog.text


def test_cli_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[devices.rx_1]\nkatcp = '127.0.0.1:1'\n")
    assert cli_main(["--config", str(bad)]) == 2
    assert "rx_1" in capsys.readouterr().err


def test_bad_input_never_takes_the_manager_down():
    async def main():
        rx1 = await start_device()
        async with running_manager({"rx1": katcp_spec("rx1", rx1.bind_address[1])}) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp"))
            c = await LineClient.connect(mgr.bind_address[1])
            for text in ("rx1-", "rx1--", "rx1-echo " + "x" * 100_000, "lock rx1 1e999",
                         "lock-break", "unlock", "help rx1-nope", "sensor-sampling rx1.temp bogus",
                         "device-list extra args", "rx1-informs notanumber"):
                reply, _ = await c.request(text, timeout=10)
                assert reply.startswith("!"), (text, reply)
            c.writer.write(b"\x00\xff garbage\n!rx1-echo ok\n#rx1-echo\n?\n?-\n")
            assert (await c.request("rx1-echo still here"))[0] == "!rx1-echo ok still here"
            # A client that goes away with a request in flight.
            gone = await LineClient.connect(mgr.bind_address[1])
            gone.writer.write(b"?rx1-informs 200\n")
            await gone.close()
            assert (await c.request("rx1-echo fine"))[0] == "!rx1-echo ok fine"
            await c.close()
        await stop_device(rx1)

    run(main)
