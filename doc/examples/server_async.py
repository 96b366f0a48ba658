"""An AsyncDeviceServer and an AsyncClient sharing one asyncio event loop.

Shows coroutine request handlers, progress informs, a reply sent later with
AsyncReply, a request timeout, and sensor updates pushed to the client with
``?sensor-sampling``.
"""

import asyncio

from katcp import AsyncClient, AsyncDeviceServer, AsyncReply, Message, Sensor
from katcp.kattypes import Float, Int, request, return_reply


class Receiver(AsyncDeviceServer):
    VERSION_INFO = ("receiver", 1, 0)
    BUILD_INFO = ("receiver", 1, 0, "")

    def setup_sensors(self):
        self.level = Sensor.integer("level", "Signal level", "", params=[0, 100], default=0,
                                    initial_status=Sensor.NOMINAL)
        self.add_sensor(self.level)

    @request(Int(min=1, max=10))
    @return_reply()
    async def request_countdown(self, req, start):
        """Count down to zero, one #countdown inform per step, then reply ok."""
        for n in range(start, 0, -1):
            req.inform(n)              # informs carry the request's name and message id
            await asyncio.sleep(0.01)
        return ("ok",)

    def request_later(self, req, msg):
        """Reply after a short delay, without blocking the server meanwhile."""
        asyncio.get_running_loop().call_later(0.05, req.reply, "ok", "done later")
        raise AsyncReply()             # "I will reply later": no reply is sent now

    @request(Float())
    @return_reply()
    async def request_sleep(self, req, seconds):
        """Sleep, then reply (used to show a client-side timeout)."""
        await asyncio.sleep(seconds)
        return ("ok",)


class Client(AsyncClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.levels = []
        self.got_30 = asyncio.Event()

    def inform_sensor_status(self, msg):
        """Called for every #sensor-status inform: timestamp, count, name, status, value."""
        self.levels.append(int(msg.arguments[4]))
        if self.levels[-1] == 30:
            self.got_30.set()


async def main():
    server = Receiver("127.0.0.1", 0)      # uses the running loop (IOLoop.current())
    await server.start()
    host, port = server.bind_address

    client = Client(host, port)
    client.set_ioloop()                    # share this loop rather than start a thread
    client.start()
    await client.until_protocol(timeout=5)
    print("server protocol:", client.protocol_flags)

    reply, informs = await client.future_request(Message.request("countdown", 3))
    print([bytes(i) for i in informs], bytes(reply))
    reply, informs = await client.future_request(Message.request("later"))
    print(bytes(reply))

    # A request that takes longer than its timeout resolves with a fail reply.
    reply, informs = await client.future_request(Message.request("sleep", 1.0), timeout=0.1)
    print(bytes(reply).split(b"\\_after")[0])

    # Ask for every change of "level", then change it on the server side.
    reply, informs = await client.future_request(
        Message.request("sensor-sampling", "level", "event"))
    print(bytes(reply))
    for value in (10, 20, 20, 30):         # the repeated 20 is not reported by "event"
        server.level.set_value(value)
    await asyncio.wait_for(client.got_30.wait(), timeout=5)
    print("levels pushed to the client:", client.levels)

    client.stop()
    await client.until_stopped(timeout=5)
    # stop() returns a thread-safe concurrent.futures.Future that can also be awaited.
    await server.stop()


asyncio.run(main())
