"""Our device server with our own clients (BlockingClient, InspectingClientAsync)."""

from __future__ import annotations

import asyncio

from test_server_support import TIMEOUT, ExampleServer, run, running

from katcp.client import BlockingClient
from katcp.core import Message
from katcp.inspecting_client import InspectingClientAsync
from katcp.sensor import Sensor


def test_blocking_client_requests():
    with running(ExampleServer("127.0.0.1", 0)) as srv:
        client = BlockingClient(*srv.bind_address)
        client.start()
        try:
            assert client.wait_protocol(timeout=TIMEOUT)
            reply, informs = client.blocking_request(
                Message.request("sensor-list", "an.int"), timeout=TIMEOUT)
            assert reply.reply_ok() and reply.mid is not None
            assert informs[0].arguments[:4] == [b"an.int", b"An integer.", b"count",
                                                b"integer"]
            reply, _ = client.blocking_request(Message.request("native", "0.01"),
                                               timeout=TIMEOUT)
            assert reply.arguments == [b"ok", b"native"]
        finally:
            client.stop()
            client.join(TIMEOUT)


def test_inspecting_client_follows_interface_changes():
    with running(ExampleServer("127.0.0.1", 0)) as srv:
        async def main():
            ic = InspectingClientAsync(*srv.bind_address)
            await ic.connect()
            try:
                await ic.until_synced(timeout=TIMEOUT)
                assert "an.int" in ic.sensors and "echo" in ic.requests
                srv.add_sensor(Sensor.integer("late.sensor", "Added later.", "", default=2))
                srv.remove_sensor("a.bool")
                loop = asyncio.get_running_loop()
                deadline = loop.time() + TIMEOUT
                while "late.sensor" not in ic.sensors or "a.bool" in ic.sensors:
                    assert loop.time() < deadline, "interface change not seen"
                    await asyncio.sleep(0.01)
                sensor = await ic.future_get_sensor("late.sensor")
                assert sensor.name == "late.sensor"
            finally:
                ic.close()
        run(main())
