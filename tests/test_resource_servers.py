"""Loopback KATCP servers used by the resource / inspecting client tests.

Two real peers: aiokatcp's DeviceServer (foreign implementation) and our own
katcp DeviceServer (with the B and T protocol flags).  Both run in the test's
asyncio loop.  The module also holds a smoke test of the servers themselves.
"""

import asyncio
import concurrent.futures
from typing import Optional

import aiokatcp
import tornado.gen
import tornado.ioloop

from katcp import server as kserver
from katcp.core import ProtocolFlags, Sensor
from katcp.kattypes import Int, request, request_timeout_hint, return_reply


def run(coro_fn, timeout=10):
    """Run ``coro_fn()`` in a fresh event loop with an overall timeout."""

    async def main():
        return await asyncio.wait_for(tornado.gen.convert_yielded(coro_fn()), timeout)

    return asyncio.run(main())


class AioServer(aiokatcp.DeviceServer):
    """aiokatcp device with a few sensors and requests; counts ?sensor-sampling."""

    VERSION = "aio-test-1.0"
    BUILD_STATE = "aio-test-1.0.0"

    def __init__(self, host="127.0.0.1", port=0, n_sensors=0, **kwargs):
        super().__init__(host, port, **kwargs)
        self.sampling_requests = []
        self.sensors.add(aiokatcp.Sensor(int, "int-sensor", "An int", "u", default=3,
                                         initial_status=aiokatcp.Sensor.Status.NOMINAL))
        self.sensors.add(aiokatcp.Sensor(float, "float.sensor", "A float", "", default=1.5,
                                         initial_status=aiokatcp.Sensor.Status.WARN))
        self.sensors.add(aiokatcp.Sensor(str, "str-sensor", "A string", "",
                                         default="hello",
                                         initial_status=aiokatcp.Sensor.Status.NOMINAL))
        for i in range(n_sensors):
            self.sensors.add(aiokatcp.Sensor(int, f"many.s{i}", "Many", "", default=i,
                                             initial_status=aiokatcp.Sensor.Status.NOMINAL))

    @property
    def port(self):
        return self.server.sockets[0].getsockname()[1]

    async def request_add(self, ctx, a: int, b: int) -> int:
        """Add two integers (?add a b)."""
        return a + b

    async def request_fail_me(self, ctx) -> None:
        """Always fails."""
        raise aiokatcp.FailReply("as requested")

    async def request_sensor_sampling(
        self, ctx, name: str,
        strategy: Optional[aiokatcp.SensorSampler.Strategy] = None, *args: bytes
    ) -> tuple:
        """Set sampling strategy (counted)."""
        self.sampling_requests.append(name)
        return await super().request_sensor_sampling(ctx, name, strategy, *args)

    def add_int_sensor(self, name, value=0):
        s = aiokatcp.Sensor(int, name, "Added", "", default=value,
                            initial_status=aiokatcp.Sensor.Status.NOMINAL)
        self.sensors.add(s)
        self.mass_inform("interface-changed", "sensor", name, "added")
        return s

    def remove_sensor(self, name):
        del self.sensors[name]
        self.mass_inform("interface-changed", "sensor", name, "removed")


class OurServer(kserver.DeviceServer):
    """Our katcp DeviceServer (protocol 5.1 with flags M, I, B and T)."""

    VERSION_INFO = ("our-test", 1, 0)
    BUILD_INFO = ("our-test", 1, 0, "")
    PROTOCOL_INFO = ProtocolFlags(5, 1, set("MIBT"))

    def __init__(self, *args, n_sensors=0, **kwargs):
        self._n_sensors = n_sensors
        super().__init__(*args, **kwargs)

    def setup_sensors(self):
        self.add_sensor(Sensor.integer("int-sensor", "An int", "u", [0, 1000], default=3,
                                       initial_status=Sensor.NOMINAL))
        self.add_sensor(Sensor.float("float.sensor", "A float", "", [0.0, 100.0], default=1.5,
                                     initial_status=Sensor.WARN))
        for i in range(self._n_sensors):
            self.add_sensor(Sensor.integer(f"many.s{i}", "Many", "", [0, 10 ** 6], default=i,
                                           initial_status=Sensor.NOMINAL))

    @request(Int(), Int())
    @return_reply(Int())
    def request_add(self, req, a, b):
        """Add two integers (?add a b)."""
        return ("ok", a + b)

    @request_timeout_hint(12.5)
    @request()
    @return_reply()
    def request_slow_thing(self, req):
        """A request with a timeout hint."""
        return ("ok",)

    @property
    def port(self):
        return self.bind_address[1]


async def start_aio(port=0, n_sensors=0):
    srv = AioServer("127.0.0.1", port, n_sensors=n_sensors)
    await srv.start()
    return srv


async def start_ours(port=0, n_sensors=0):
    srv = OurServer("127.0.0.1", port, n_sensors=n_sensors)
    srv.set_ioloop(tornado.ioloop.IOLoop.current())
    started = srv.start()
    if started is not None:
        await started
    return srv


async def stop_server(srv):
    if isinstance(srv, AioServer):
        await srv.stop()
    else:
        result = srv.stop()
        if isinstance(result, concurrent.futures.Future):
            result = asyncio.wrap_future(result)
        if result is not None:
            await asyncio.wait_for(result, 5)


def test_servers_start_and_stop():
    async def main():
        for starter in (start_aio, start_ours):
            srv = await starter()
            assert srv.port > 0
            await stop_server(srv)

    run(main)
