#!/usr/bin/env python3
"""A simulated cryostat: a complete KATCP instrument built on ``katcp.DeviceServer``.

Run it, then talk to it with any KATCP client::

    python3 scripts/cryostat.py --port 7147
    katcp-cmd 127.0.0.1:7147 sensor-value temperature

It prints ``cryostat listening on HOST:PORT`` once it accepts connections (``--port 0`` lets
the system pick a free port) and runs until Ctrl-C, SIGTERM or a client's ``?halt``.

The tutorial (doc/tutorial-instrument.rst) explains it part by part: sensors with units,
ranges and statuses; requests whose arguments and replies are typed with ``katcp.kattypes``;
a slow request written as an ``async def`` handler with a timeout hint; and a simulation that
updates the sensors on the server's ioloop, so clients can follow them with any sampling
strategy (``?sensor-sampling temperature event``, ``period 0.5``, ``differential 1``...).
"""

import argparse
import asyncio
import signal
import threading

from tornado.ioloop import PeriodicCallback

from katcp import DeviceServer, FailReply, ProtocolFlags, Sensor
from katcp.kattypes import Bool, Discrete, Float, concurrent_reply, request, \
    request_timeout_hint, return_reply

#: Lowest and highest set point the cryostat accepts, in kelvin.
MIN_SETPOINT, MAX_SETPOINT = 4.0, 300.0
#: How close to the set point counts as "stable", in kelvin.
TOLERANCE = 0.5
#: Kelvin per second the compressor moves the temperature (times ``--speed``).
COOLING_RATE = 20.0
#: Where the temperature drifts with the compressor off, in kelvin.
ROOM_TEMPERATURE = 293.0


class Cryostat(DeviceServer):
    """A cryostat with a compressor, a heater and a temperature set point."""

    VERSION_INFO = ("cryostat", 1, 0)
    BUILD_INFO = ("cryostat", 1, 0, "")
    # KATCP 5.1 with timeout hints, so clients know ?wait-stable may take two minutes.
    PROTOCOL_INFO = ProtocolFlags(5, 1, {ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
                                         ProtocolFlags.REQUEST_TIMEOUT_HINTS})

    def __init__(self, host, port, update_period=0.1, speed=1.0):
        self.update_period = update_period
        self.speed = speed
        self._updater = None
        super().__init__(host, port)          # calls setup_sensors()

    # ------------------------------------------------------------------ sensors

    def setup_sensors(self):
        """Create the sensors; the constructor calls this once."""
        self.temperature = Sensor.float(
            "temperature", "Cold-head temperature", "K", params=[0.0, 400.0],
            default=293.0, initial_status=Sensor.NOMINAL)
        self.setpoint = Sensor.float(
            "setpoint", "Temperature to reach", "K", params=[MIN_SETPOINT, MAX_SETPOINT],
            default=293.0, initial_status=Sensor.NOMINAL)
        self.compressor = Sensor.boolean(
            "compressor.running", "Whether the compressor runs", "",
            default=False, initial_status=Sensor.NOMINAL)
        self.state = Sensor.discrete(
            "state", "What the cryostat is doing", "",
            ["idle", "cooling", "warming", "stable"], default="idle",
            initial_status=Sensor.NOMINAL)
        for sensor in (self.temperature, self.setpoint, self.compressor, self.state):
            self.add_sensor(sensor)

    # ----------------------------------------------------------------- requests

    @request(Float(min=MIN_SETPOINT, max=MAX_SETPOINT))
    @return_reply(Float())
    def request_set_setpoint(self, req, kelvin):
        """Set the temperature to reach, in kelvin (4 to 300); replies with the set point."""
        self.setpoint.set_value(kelvin)
        return ("ok", kelvin)

    @request(Bool())
    @return_reply(Bool())
    def request_compressor(self, req, on):
        """Switch the compressor on (1) or off (0); replies with its new state."""
        if not on and self.temperature.value() < 20.0:
            raise FailReply("refusing to stop the compressor below 20 K")
        self.compressor.set_value(on)
        return ("ok", on)

    @request(Discrete(("celsius", "kelvin"), default="kelvin"))
    @return_reply(Float())
    def request_temperature(self, req, unit):
        """Read the temperature now, in kelvin or celsius."""
        value = self.temperature.value()
        return ("ok", round(value - 273.15, 2) if unit == "celsius" else value)

    @request_timeout_hint(120.0)
    @concurrent_reply
    @request(Float(min=0.0, max=110.0))
    @return_reply(Float())
    async def request_wait_stable(self, req, timeout):
        """Wait until the temperature is within 0.5 K of the set point; reply with it.

        An ``async def`` handler: the server keeps serving other requests (from this
        client too, thanks to ``concurrent_reply``) while it waits.  One
        ``#wait-stable`` inform per second reports the temperature on the way.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_report = loop.time()
        while abs(self.temperature.value() - self.setpoint.value()) >= TOLERANCE:
            if loop.time() >= deadline:
                raise FailReply(f"not stable after {timeout:g} s "
                                f"({self.temperature.value():.1f} K)")
            if loop.time() >= next_report:
                req.inform(round(self.temperature.value(), 1))
                next_report += 1.0
            await asyncio.sleep(self.update_period / 2)
        return ("ok", self.temperature.value())

    # --------------------------------------------------------------- simulation

    def start(self, timeout=None):
        """Start serving, then start the simulation on the server's own ioloop."""
        result = super().start(timeout)
        self.ioloop.add_callback(self._start_simulation)
        return result

    def _start_simulation(self):
        # Runs on the ioloop thread: sensors set there need no locking.
        self._updater = PeriodicCallback(self._simulate, self.update_period * 1000)
        self._updater.start()

    def _simulate(self):
        # With the compressor on, the temperature heads for the set point; with it off,
        # the cryostat drifts back to room temperature, ten times more slowly.
        temp, target = self.temperature.value(), self.setpoint.value()
        if self.compressor.value():
            goal, rate = target, COOLING_RATE * self.speed
        else:
            goal, rate = ROOM_TEMPERATURE, COOLING_RATE * self.speed / 10
        step = rate * self.update_period
        temp += max(-step, min(step, goal - temp))
        if abs(temp - target) < TOLERANCE:
            state = "stable"
        elif temp < target:
            state = "warming"
        else:
            state = "cooling" if self.compressor.value() else "idle"
        self.temperature.set_value(temp)
        if state != self.state.value():
            self.state.set_value(state)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7147, help="TCP port (0: any free port)")
    parser.add_argument("--update-period", type=float, default=0.1,
                        help="seconds between simulation steps")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="run the simulation this many times faster than real time")
    args = parser.parse_args()

    server = Cryostat(args.host, args.port, update_period=args.update_period,
                      speed=args.speed)
    # Handlers run on the ioloop thread itself (no separate handler thread).
    server.set_concurrency_options(thread_safe=False, handler_thread=False)
    # Catch the signals before saying we listen: whoever reads that line may signal at once.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start(timeout=5)               # a managed ioloop in a daemon thread
    host, port = server.bind_address
    print(f"cryostat listening on {host}:{port}", flush=True)

    # Wait in the main thread until a signal arrives or a client sends ?halt.
    while server.running() and not stop.wait(0.2):
        pass
    if server.running():                   # not yet stopped by ?halt
        server.stop().result(timeout=5)
    server.join(timeout=5)
    print("cryostat stopped", flush=True)


if __name__ == "__main__":
    main()
