"""The same instrument written with aiokatcp and with katcp, each driven by both clients.

aiokatcp's annotations and katcp's kattypes decorators describe the same typed request;
aiokatcp's ``Client.request`` raises ``FailReply`` where a katcp resource returns a reply whose
``succeeded`` is False.  Both libraries speak the same KATCP, so either client drives either
server.  Everything shares one asyncio event loop.
"""

import asyncio

import aiokatcp

from katcp import AsyncDeviceServer, KATCPClientResource, Sensor
from katcp.kattypes import Float, request, return_reply


class AioThermostat(aiokatcp.DeviceServer):
    """aiokatcp: sensors in ``self.sensors``, arguments typed by annotations."""

    VERSION = "thermostat-1.0"
    BUILD_STATE = "thermostat-1.0.0"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sensors.add(aiokatcp.Sensor(float, "temperature", "Measured temperature", "degC",
                                         default=20.0,
                                         initial_status=aiokatcp.Sensor.Status.NOMINAL))

    async def request_set_point(self, ctx, degrees: float) -> float:
        """Set the temperature (degC, -50 to 150)."""
        if not -50.0 <= degrees <= 150.0:
            raise aiokatcp.FailReply("out of range")
        self.sensors["temperature"].value = degrees
        return degrees


class Thermostat(AsyncDeviceServer):
    """katcp: sensors from setup_sensors(), arguments typed by kattypes decorators."""

    VERSION_INFO = ("thermostat", 1, 0)
    BUILD_INFO = ("thermostat", 1, 0, "")

    def setup_sensors(self):
        self.temperature = Sensor.float("temperature", "Measured temperature", "degC",
                                        default=20.0, initial_status=Sensor.NOMINAL)
        self.add_sensor(self.temperature)

    @request(Float(min=-50.0, max=150.0))
    @return_reply(Float())
    async def request_set_point(self, req, degrees):
        """Set the temperature (degC, -50 to 150)."""
        self.temperature.set_value(degrees)
        return ("ok", degrees)


async def with_aiokatcp_client(port):
    client = await aiokatcp.Client.connect("127.0.0.1", port)
    try:
        reply, informs = await client.request("set-point", 42.5)
        print("  aiokatcp Client:", reply)
        try:
            await client.request("set-point", 500)
        except aiokatcp.FailReply:
            print("  aiokatcp Client: FailReply raised")
    finally:
        client.close()
        await client.wait_closed()


async def with_katcp_resource(port):
    res = KATCPClientResource(dict(name="thermostat", address=("127.0.0.1", port),
                                   controlled=True))
    res.set_ioloop()
    res.start()
    await res.until_synced(timeout=5)
    reply = await res.req.set_point(21.5)
    print("  katcp resource:", reply.reply.arguments, reply.succeeded)
    reply = await res.req.set_point(500)
    print("  katcp resource: refused, succeeded =", reply.succeeded)
    # Like aiokatcp's SensorWatcher, the resource mirrors the sensor once it samples it.
    await res.sensor.temperature.set_strategy("event")
    print("  katcp resource: temperature is 21.5:", await res.wait("temperature", 21.5, 5))
    res.stop()
    await res.until_stopped(timeout=5)


async def main():
    aio = AioThermostat("127.0.0.1", 0)
    await aio.start()
    ours = Thermostat("127.0.0.1", 0)
    await ours.start()
    servers = [("aiokatcp server", aio.sockets[0].getsockname()[1]),
               ("katcp server", ours.bind_address[1])]
    for name, port in servers:
        print(name)
        await with_aiokatcp_client(port)
        await with_katcp_resource(port)
    await aio.stop()
    await ours.stop()


asyncio.run(main())
