"""KATCPClientResource: a device's sensors and requests as Python attributes.

The resource inspects the device (``?help``, ``?sensor-list``), then offers
``resource.req.<request>(...)`` and ``resource.sensor.<sensor>``, keeps
sampling strategies and listeners across reconnects, and can wait for a
sensor to reach a value.  Everything here runs on one asyncio loop.
"""

import asyncio

from katcp import AsyncDeviceServer, KATCPClientResource, Sensor
from katcp.kattypes import Float, request, return_reply


class Receiver(AsyncDeviceServer):
    VERSION_INFO = ("receiver", 1, 0)
    BUILD_INFO = ("receiver", 1, 0, "")

    def setup_sensors(self):
        self.gain = Sensor.float("rx.gain", "Receiver gain", "dB", default=1.0,
                                 initial_status=Sensor.NOMINAL)
        self.add_sensor(self.gain)

    @request(Float(min=0.0, max=10.0))
    @return_reply(Float())
    def request_set_gain(self, req, gain):
        """Set the receiver gain in dB."""
        self.gain.set_value(gain)
        return ("ok", gain)


async def main():
    server = Receiver("127.0.0.1", 0)
    await server.start()

    rx = KATCPClientResource(dict(name="rx1", address=server.bind_address, controlled=True))
    rx.set_ioloop()                        # the running loop
    rx.start()
    await rx.until_synced(timeout=5)       # connected, requests and sensors known
    print("synced:", rx.synced, rx.state)

    # Names: "set-gain" -> req.set_gain, "rx.gain" -> sensor.rx_gain.
    print("requests:", sorted(rx.req)[:4], "sensors:", sorted(rx.sensor))
    print("help:", rx.req.set_gain.description)

    reply = await rx.req.set_gain(2.5)     # a KATCPReply: reply + informs, with .succeeded
    print(bytes(reply.reply), reply.succeeded)
    reply = await rx.req.set_gain(99)      # refused by the server: a fail reply, no exception
    print(reply.succeeded, reply.reply.arguments[1].decode())

    gain = rx.sensor.rx_gain
    print("polled value:", await gain.get_value())

    # Listen to updates: set a strategy, register a listener, wait for a value.
    seen = []
    gain.register_listener(lambda sensor, reading: seen.append(reading.value), reading=True)
    await gain.set_strategy("event")
    server.gain.set_value(4.0)
    print("reached 4.0:", await rx.wait("rx_gain", 4.0, timeout=5))
    print("reached 7.0:", await rx.wait("rx_gain", 7.0, timeout=0.1))   # False on timeout
    print("listener saw:", seen)

    rx.stop()
    await rx.until_stopped(timeout=5)
    await server.stop()


asyncio.run(main())
