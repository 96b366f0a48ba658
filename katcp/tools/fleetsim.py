"""A fleet of simulated KATCP devices in one process, for tests, benchmarks and demos.

``katcp-fleetsim --devices 1000 --sensors 100 --rate 10000 --base-port 20000`` runs 1,000
:class:`~katcp.server.AsyncDeviceServer`\\ s on ports 20000..20999 in one event loop, each with
100 sensors of every KATCP type (float, integer, boolean, discrete, LRU, string, timestamp,
address), some with names that need escaping (spaces, quotes, backslashes, non-ASCII), and
changes ``--rate`` randomly chosen sensors per second in total.  ``--write-config FILE``
writes a configuration listing the fleet in the manager's device syntax, ready for
``katcp-exporter --config FILE``.

In Python, :class:`Fleet` does the same in a running loop and lets a test stop and restart
single devices (:meth:`Fleet.stop_device`, :meth:`Fleet.start_device`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import resource
import signal
import sys
import time
from typing import Any, List, Sequence, Tuple

import tornado.ioloop

from katcp.core import ProtocolFlags, Sensor
from katcp.server import AsyncDeviceServer

__all__ = ["Fleet", "SimDevice", "build_parser", "main", "make_sensors", "write_config"]

log = logging.getLogger("katcp.fleetsim")

#: Seconds between two rounds of simulated updates.
TICK = 0.02
MODES = ("idle", "observing", "slewing", "fault")
_KINDS = ("float", "integer", "boolean", "discrete", "string", "timestamp", "address", "lru")


def make_sensors(count: int, seed: int = 0) -> List[Sensor]:
    """`count` sensors cycling through every KATCP type; every 10th has an awkward name.

    Parameters
    ----------
    count : int
        Number of sensors.
    seed : int
        Seed of the initial values (the names depend only on the index).
    """
    rng = random.Random(seed)
    sensors = []
    for i in range(count):
        kind = _KINDS[i % len(_KINDS)]
        if i % 10 == 9:
            name = f'odd {kind} "{i}" \\ é'  # spaces, quotes, backslash, non-ASCII
        else:
            name = f"{kind}.{i}"
        status = Sensor.NOMINAL
        if kind == "float":
            s = Sensor.float(name, "Simulated float", "degC", [-50.0, 50.0],
                             default=rng.uniform(-50, 50), initial_status=status)
        elif kind == "integer":
            s = Sensor.integer(name, "Simulated integer", "", [0, 1000],
                               default=rng.randint(0, 1000), initial_status=status)
        elif kind == "boolean":
            s = Sensor.boolean(name, "Simulated boolean", "", default=True,
                               initial_status=status)
        elif kind == "discrete":
            s = Sensor.discrete(name, "Simulated mode", "", list(MODES), default="idle",
                                initial_status=status)
        elif kind == "string":
            s = Sensor.string(name, "Simulated text", "", default="all \"well\"\n",
                              initial_status=status)
        elif kind == "timestamp":
            s = Sensor.timestamp(name, "Simulated time", "", default=time.time(),
                                 initial_status=status)
        elif kind == "address":
            s = Sensor.address(name, "Simulated address", "", default=("10.0.0.1", 7148),
                               initial_status=status)
        else:
            s = Sensor.lru(name, "Simulated LRU", "", default=Sensor.LRU_NOMINAL,
                           initial_status=status)
        sensors.append(s)
    return sensors


def random_reading(sensor: Sensor, rng: random.Random) -> Tuple[Any, int]:
    """A new random ``(value, status)`` for `sensor`, of its type."""
    stype = sensor.stype
    roll = rng.random()
    status = Sensor.NOMINAL if roll < 0.9 else Sensor.WARN if roll < 0.97 else Sensor.ERROR
    if stype == "float":
        value: Any = rng.uniform(-50.0, 50.0)
    elif stype == "integer":
        value = rng.randint(0, 1000)
    elif stype == "boolean":
        value = rng.random() < 0.5
    elif stype == "discrete":
        value = rng.choice(MODES)
    elif stype == "string":
        value = f"message {rng.randint(0, 99)}"
    elif stype == "timestamp":
        value = time.time()
    elif stype == "address":
        value = (f"10.0.0.{rng.randint(1, 254)}", 7148)
    else:
        value = Sensor.LRU_NOMINAL if status == Sensor.NOMINAL else Sensor.LRU_ERROR
    return value, status


class SimDevice(AsyncDeviceServer):
    """One simulated device: a KATCP 5.1 server (bulk sampling) with the given sensors.

    Parameters
    ----------
    host, port : str, int
        Where to listen.
    sensors : sequence of Sensor
        Its sensors.
    """

    VERSION_INFO = ("katcp-fleetsim", 1, 0)
    BUILD_INFO = ("katcp-fleetsim", 1, 0, "")
    PROTOCOL_INFO = ProtocolFlags(5, 1, {
        ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
        ProtocolFlags.BULK_SET_SENSOR_SAMPLING})

    def __init__(self, host: str, port: int, sensors: Sequence[Sensor]) -> None:
        self._sim_sensors = list(sensors)
        super().__init__(host, port)

    def setup_sensors(self) -> None:
        """Add the simulated sensors."""
        for sensor in self._sim_sensors:
            self.add_sensor(sensor)


class Fleet:
    """Many :class:`SimDevice`\\ s in the running loop, with random updates.

    Parameters
    ----------
    devices : int
        Number of devices.
    sensors : int
        Sensors per device.
    rate : float
        Sensor updates per second, in total over the fleet (0 for none).
    host : str
        Address to listen on.
    base_port : int
        Port of device 0; device i listens on ``base_port + i``.  0 lets each pick a free
        port (see :attr:`ports`).
    seed : int
        Seed of the simulation.
    """

    def __init__(self, devices: int, sensors: int, rate: float = 0.0,
                 host: str = "127.0.0.1", base_port: int = 0, seed: int = 0) -> None:
        if devices < 1 or sensors < 1 or rate < 0:
            raise ValueError("need devices >= 1, sensors >= 1 and rate >= 0")
        self.host = host
        self.rate = rate
        self.base_port = base_port
        self.sensors: List[List[Sensor]] = [make_sensors(sensors, seed + i)
                                            for i in range(devices)]
        self.servers: List[SimDevice | None] = [None] * devices
        self.ports: List[int] = [base_port + i if base_port else 0 for i in range(devices)]
        self.updates = 0
        self._served = [False] * devices
        self._rng = random.Random(seed)
        self._task: asyncio.Task | None = None

    @property
    def names(self) -> List[str]:
        """Device names as in :meth:`config_text`: ``sim0000``, ``sim0001``, ..."""
        return [f"sim{i:04d}" for i in range(len(self.servers))]

    async def start(self) -> None:
        """Start every device, then the updates."""
        for i in range(len(self.servers)):
            await self.start_device(i)
        if self.rate > 0:
            self._task = asyncio.get_running_loop().create_task(self._update_loop())

    async def stop(self) -> None:
        """Stop the updates and every device."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for i in range(len(self.servers)):
            await self.stop_device(i)

    async def start_device(self, index: int) -> None:
        """(Re)start device `index` on its port, with its sensors' current readings."""
        if self.servers[index] is not None:
            return
        sensors = self.sensors[index]
        if self._served[index]:
            # A stopped server leaves its observers on its sensors: give the new one fresh
            # sensors with the same readings.
            fresh = make_sensors(len(sensors))
            for new, sensor in zip(fresh, sensors):
                new.set(*sensor.read())
            self.sensors[index] = sensors = fresh
        server = SimDevice(self.host, self.ports[index], sensors)
        server.set_ioloop(tornado.ioloop.IOLoop.current())
        await server.start()
        self.ports[index] = server.bind_address[1]
        self.servers[index] = server
        self._served[index] = True

    async def stop_device(self, index: int) -> None:
        """Stop device `index` (its clients see the connection close)."""
        server, self.servers[index] = self.servers[index], None
        if server is not None:
            await server.stop()

    def update(self, count: int) -> None:
        """Give `count` random sensors of running devices a new random reading."""
        rng = self._rng
        sensors = self.sensors
        for _ in range(count):
            device = rng.randrange(len(sensors))
            if self.servers[device] is None:
                continue
            row = sensors[device]
            sensor = row[rng.randrange(len(row))]
            value, status = random_reading(sensor, rng)
            sensor.set_value(value, status)
            self.updates += 1

    async def _update_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        owed = 0.0
        while True:
            await asyncio.sleep(TICK)
            now = loop.time()
            owed += (now - last) * self.rate
            last = now
            count = int(owed)
            owed -= count
            self.update(count)

    def config_text(self) -> str:
        """A configuration listing the fleet, in the manager's device syntax (TOML)."""
        return "".join(f'[devices.{name}]\nkatcp = "{self.host}:{port}"\n\n'
                       for name, port in zip(self.names, self.ports))


def write_config(fleet: Fleet, path: str) -> None:
    """Write :meth:`Fleet.config_text` to `path`."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(fleet.config_text())


def raise_fd_limit(needed: int) -> None:
    """Raise the soft limit of open files towards `needed` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def run_fleet(args: argparse.Namespace) -> None:
    """Run a fleet until SIGINT or SIGTERM."""
    fleet = Fleet(args.devices, args.sensors, args.rate, args.host, args.base_port, args.seed)
    await fleet.start()
    if args.write_config:
        write_config(fleet, args.write_config)
    log.info("%d devices x %d sensors on %s ports %d..%d, %.0f updates/s", args.devices,
             args.sensors, args.host, fleet.ports[0], fleet.ports[-1], args.rate)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await fleet.stop()


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``katcp-fleetsim``."""
    parser = argparse.ArgumentParser(
        prog="katcp-fleetsim", description="Run many simulated KATCP devices in one process.")
    parser.add_argument("--devices", type=int, default=10, help="number of devices (10)")
    parser.add_argument("--sensors", type=int, default=100,
                        help="sensors per device (100)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="sensor updates per second over the whole fleet (100)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--base-port", type=int, default=20000,
                        help="port of the first device; the others follow (20000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--write-config", metavar="FILE",
                        help="write a katcp-exporter/katcp-manager config listing the fleet")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``katcp-fleetsim``; returns the exit status (2 for bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.devices < 1 or args.sensors < 1 or args.rate < 0:
        parser.error("--devices and --sensors must be >= 1 and --rate >= 0")
    if not 0 < args.base_port <= 65536 - args.devices:
        parser.error("--base-port must leave room for every device below port 65536")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Each device has a listening socket and one per client.
    raise_fd_limit(4 * args.devices + 64)
    try:
        asyncio.run(run_fleet(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        log.error("Cannot run the fleet: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
