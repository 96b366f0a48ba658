"""Benchmark katcp.Sensor against aiokatcp.Sensor (measured in the same run).

Prints, for each library: ns per ``set_value`` with one observer attached,
ns per formatting of a reading for ``#sensor-status`` (timestamp, status and
value as bytes), ns per report of a sensor sampled with the ``event`` strategy
by ten clients (``set_value`` in the loop thread, ten strategies, each calling
a do-nothing callback: the strategy layer of the fan-out, without sockets), and
bytes of memory per sensor; then the ratios (aiokatcp / ours: above 1 means we
are faster or smaller).

Run from the repository root: ``.venv/bin/python bench/bench_sensor.py``.
"""

import asyncio
import gc
import os
import sys
import time
import timeit
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiokatcp  # noqa: E402
from aiokatcp.core import encode as aio_encode  # noqa: E402

from katcp.sampling import SampleStrategy  # noqa: E402
from katcp.sensor import Sensor  # noqa: E402

N_CALLS = 200_000
N_SENSORS = 10_000
N_CLIENTS = 10
N_SETS = 20_000


def best_ns(stmt, number=N_CALLS, repeat=5):
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e9


def fanout_ns(make_strategy, sensor) -> float:
    """CPU ns per report: ``N_CLIENTS`` event strategies on ``sensor``, set in the loop."""

    async def run() -> float:
        loop = asyncio.get_running_loop()
        reports = [0]

        def callback(sensor, reading):
            reports[0] += 1

        strategies = [make_strategy(callback, loop) for _ in range(N_CLIENTS)]
        await asyncio.sleep(0)
        best = float("inf")
        for rep in range(5):
            reports[0] = 0
            base = (rep + 1) * 1_000_000
            t0 = time.thread_time()
            for i in range(N_SETS):
                sensor.set_value(base + i)
            elapsed = time.thread_time() - t0
            assert reports[0] == N_SETS * N_CLIENTS, reports[0]
            best = min(best, elapsed / reports[0] * 1e9)
        for strategy in strategies:
            strategy.cancel() if hasattr(strategy, "cancel") else strategy.close()
        return best

    return asyncio.run(run())


def ours():
    class Observer:
        def update(self, sensor, reading):
            pass

    s = Sensor.float("device.temperature", "Temperature", "degC")
    s.attach(Observer())
    set_ns = best_ns(lambda: s.set_value(21.5))
    s.set_value(21.5)
    fmt_ns = best_ns(lambda: s.format_reading(s.read()))

    def event(callback, loop):
        strategy = SampleStrategy.get_strategy("event", callback, fan, ioloop=loop)
        strategy.start()
        return strategy

    fan = Sensor.integer("device.counter", "Counter", "")
    return set_ns, fmt_ns, fanout_ns(event, fan), memory(lambda i: Sensor.float(
        f"device.sensor-{i:05d}", f"Sensor number {i}", "degC"), lambda s: s.set_value(1.5))


def theirs():
    def observer(sensor, reading):
        pass

    s = aiokatcp.Sensor(float, "device.temperature", "Temperature", "degC")
    s.attach(observer)
    set_ns = best_ns(lambda: s.set_value(21.5))
    s.set_value(21.5)

    def fmt():
        r = s.reading
        return aio_encode(r.timestamp), aio_encode(r.status), aio_encode(r.value)

    fmt_ns = best_ns(fmt)

    def event(callback, loop):
        return aiokatcp.SensorSampler.factory(fan, callback, loop,
                                              aiokatcp.SensorSampler.Strategy.EVENT)

    fan = aiokatcp.Sensor(int, "device.counter", "Counter")
    return set_ns, fmt_ns, fanout_ns(event, fan), memory(lambda i: aiokatcp.Sensor(
        float, f"device.sensor-{i:05d}", f"Sensor number {i}", "degC"),
        lambda s: s.set_value(1.5))


def memory(make, touch):
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    sensors = [make(i) for i in range(N_SENSORS)]
    for s in sensors:
        touch(s)
    used = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    del sensors
    return used / N_SENSORS


def main():
    o_set, o_fmt, o_fan, o_mem = ours()
    t_set, t_fmt, t_fan, t_mem = theirs()
    print(f"{'':24}{'katcp':>12}{'aiokatcp':>12}{'ratio':>8}")
    print(f"{'set_value+observer ns':24}{o_set:12.0f}{t_set:12.0f}{t_set / o_set:8.2f}")
    print(f"{'format reading ns':24}{o_fmt:12.0f}{t_fmt:12.0f}{t_fmt / o_fmt:8.2f}")
    print(f"{'event x10: ns per report':24}{o_fan:12.0f}{t_fan:12.0f}{t_fan / o_fan:8.2f}")
    print(f"{'bytes per sensor':24}{o_mem:12.0f}{t_mem:12.0f}{t_mem / o_mem:8.2f}")


if __name__ == "__main__":
    main()
