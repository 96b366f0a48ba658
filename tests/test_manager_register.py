"""Devices that dial out to the manager and register themselves."""

import asyncio

from manager_support import (
    LineClient,
    katcp_spec,
    run,
    running_manager,
    start_device,
    stop_device,
    until,
)

from katcp.core import Sensor
from katcp.manager import register_device


def test_registered_device_is_proxied_and_comes_back_after_a_drop():
    async def main():
        rx0 = await start_device()
        hidden = await start_device()
        async with running_manager({"rx0": katcp_spec("rx0", rx0.bind_address[1])},
                                   register=True) as mgr:
            registration = register_device("rx9", mgr.registration_address,
                                           hidden.bind_address, retry_delay=0.05)
            await asyncio.wait_for(registration.registered.wait(), 5)
            await until(lambda: mgr.has_sensor("rx9.temp") and mgr.devices["rx9"].up)
            c = await LineClient.connect(mgr.bind_address[1])
            assert (await c.request("rx9-echo through the firewall"))[0] == (
                "!rx9-echo ok through the firewall")
            reply, informs = await c.request("rx9-informs 2")
            assert informs == ["#rx9-informs item 0", "#rx9-informs item 1"]
            hidden.temp.set_value(33.5)
            await until(lambda: mgr.get_sensor("rx9.temp").value() == 33.5)
            assert (await c.request("lock rx9"))[0].startswith("!lock ok")
            _, informs = await c.request("device-list")
            assert any(line.startswith("#device-list rx9 registered 127.0.0.1:") and
                       line.endswith(" up 3") for line in informs)
            # A second link with the same name, or a configured name, is refused.
            reader, writer = await asyncio.open_connection(*mgr.registration_address)
            writer.write(b"?register-device rx9\n")
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(
                b"!register-device fail")
            writer.close()
            reader, writer = await asyncio.open_connection(*mgr.registration_address)
            writer.write(b"?register-device rx0\n")
            assert b"configured" in await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            reader, writer = await asyncio.open_connection(*mgr.registration_address)
            writer.write(b"hello there\n")
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(
                b"!register-device fail")
            writer.close()
            # The device goes away: unreachable; it comes back by registering again.
            await registration.stop()
            await until(lambda: mgr.get_sensor("rx9.temp").status() == Sensor.UNREACHABLE)
            assert (await c.request("rx9-echo x"))[0] == (
                "!rx9-echo fail device\\_rx9\\_is\\_unreachable")
            assert (await c.request("rx0-echo x"))[0] == "!rx0-echo ok x"
            registration = register_device("rx9", mgr.registration_address,
                                           hidden.bind_address, retry_delay=0.05)
            await until(lambda: mgr.devices["rx9"].up
                        and mgr.get_sensor("rx9.temp").status() == Sensor.NOMINAL, timeout=10)
            assert (await c.request("rx9-echo again"))[0] == "!rx9-echo ok again"
            await registration.stop()
            await c.close()
        await stop_device(rx0)
        await stop_device(hidden)

    run(main, timeout=30)
