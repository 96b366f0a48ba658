#!/usr/bin/env python3
"""Monitor and command a fleet of cryostats with ``KATCPClientResourceContainer``.

Usage::

    python3 scripts/fleet_monitor.py 127.0.0.1:7147 127.0.0.1:7148 --setpoint 77

The container connects to every instrument, inspects it and offers the union of their
sensors and requests, each name prefixed by the instrument's name (``cryo1_temperature``,
``cryo2_req_set_setpoint``...).  The script subscribes to sensors with sampling strategies,
listens to the updates, commands all instruments at once through a group, waits until they
all reach a condition, and stops cleanly.  Everything runs on one asyncio event loop.
"""

import argparse
import asyncio
import sys

import tornado.gen

from katcp import KATCPClientResourceContainer


def on_state(sensor, reading):
    """Listener: called on the loop for every update of a subscribed sensor."""
    print(f"  {sensor.parent_name}: {sensor.name} = {reading.value} ({reading.status})")


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addresses", metavar="HOST:PORT", nargs="+")
    parser.add_argument("--setpoint", type=float, default=77.0, help="kelvin")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for every cryostat to settle")
    args = parser.parse_args()

    names = [f"cryo{i}" for i in range(1, len(args.addresses) + 1)]
    spec = {
        "name": "fleet",
        "clients": {
            name: {"address": (addr.rsplit(":", 1)[0], int(addr.rsplit(":", 1)[1])),
                   "controlled": True}            # expose the requests, not only sensors
            for name, addr in zip(names, args.addresses)
        },
        "groups": {"all": names},
    }
    fleet = KATCPClientResourceContainer(spec)
    fleet.set_ioloop()                            # this event loop (no extra thread)
    fleet.start()                                 # returns at once; connects in the loop
    try:
        # 1. Sync: connected, requests and sensors known, for every instrument.
        await fleet.until_synced(timeout=10)
        print("synced:", ", ".join(sorted(fleet.children)))
        print("sensors:", len(fleet.sensor), "e.g.", sorted(fleet.sensor)[:4])

        # 2. Subscribe: every change of the "state" sensors, and the temperatures when they
        #    have moved by 5 K.  The filter is a regular expression on the sensor names.
        await fleet.set_sampling_strategies("state", "event")
        await fleet.set_sampling_strategies("temperature", "differential 5")
        for name in names:
            fleet.children[name].sensor.state.register_listener(on_state, reading=True)

        # 3. Command every instrument at once through the group: one reply per member.
        group = fleet.groups.all
        results = await group.req.set_setpoint(args.setpoint)
        print("set point:", {name: reply.succeeded for name, reply in sorted(results.items())})
        results = await group.req.compressor(True)
        print("compressors on:", bool(results))

        # 4. Wait on sensor conditions: each instrument's own sensor, then the whole group.
        first = fleet.children[names[0]]
        below = await first.wait("temperature", lambda reading: reading.value < 200,
                                 timeout=args.timeout)
        print(f"{first.name} below 200 K:", below)
        stable = await group.wait("state", "stable", timeout=args.timeout)
        print("all stable:", bool(stable), dict(sorted(stable.items())))
        for name in names:
            temperature = fleet.sensor[f"{name}_temperature"]
            print(f"  {name}: {await temperature.get_value():.1f} K")
        return 0 if stable else 1
    finally:
        # 5. Stop: until_stopped() gives one future per child; wait for them together.
        fleet.stop()
        await tornado.gen.multi(fleet.until_stopped(timeout=5))
        print("stopped")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
