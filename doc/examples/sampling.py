"""Sampling strategies on their own: which updates of a sensor get reported, and when.

A device server creates one strategy per (client, sensor) when a client sends
``?sensor-sampling``; here we create them directly with an inform callback that
prints, and drive them from an asyncio loop.
"""

import asyncio

from katcp import Sensor
from katcp.sampling import SampleStrategy


async def main():
    power = Sensor.float("power", "Input power", "dBm", default=-40.0,
                         initial_status=Sensor.NOMINAL)
    reports = {}

    def make_callback(label):
        def inform_callback(sensor, reading):
            reports.setdefault(label, []).append(reading.value)
        return inform_callback

    strategies = [
        # name, parameters (as a client would send them)
        SampleStrategy.get_strategy("auto", make_callback("auto"), power),
        SampleStrategy.get_strategy("event", make_callback("event"), power),
        SampleStrategy.get_strategy("differential", make_callback("differential 1.0"),
                                    power, "1.0"),
        SampleStrategy.get_strategy("event-rate", make_callback("event-rate 0.05 10"),
                                    power, "0.05", "10"),
        SampleStrategy.get_strategy("period", make_callback("period 0.05"), power, "0.05"),
    ]
    for strategy in strategies:
        strategy.start()                       # every strategy but none reports at once
    await asyncio.sleep(0)

    for value in [-40.0, -39.5, -38.0, -38.0, -45.0]:
        power.set_value(value)                 # same value twice: auto reports, event not
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.12)                  # let period and event-rate timers fire

    for strategy in strategies:
        strategy.cancel()                      # no more reports after cancel()
    power.set_value(-10.0)
    await asyncio.sleep(0.06)

    for label, values in reports.items():
        print(f"{label:20} {values}")
    print("formatted:", strategies[2].get_sampling_formatted())

    # Bad requests are refused with ValueError (the server turns it into a fail reply).
    mode = Sensor.discrete("mode", "Mode", "", ["a", "b"], default="a")
    for args in [("sometimes",), ("period",), ("period", "-1"), ("differential", "1")]:
        try:
            SampleStrategy.get_strategy(args[0], make_callback("x"),
                                        mode if args[0] == "differential" else power,
                                        *args[1:])
        except ValueError as exc:
            print("ValueError:", exc)


asyncio.run(main())
