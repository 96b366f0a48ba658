"""Benchmark katcp.Sensor against aiokatcp.Sensor (measured in the same run).

Prints, for each library: ns per ``set_value`` with one observer attached,
ns per formatting of a reading for ``#sensor-status`` (timestamp, status and
value as bytes), and bytes of memory per sensor; then the ratios (aiokatcp /
ours: above 1 means we are faster or smaller).

Run from the repository root: ``.venv/bin/python bench/bench_sensor.py``.
"""

import gc
import os
import sys
import timeit
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiokatcp  # noqa: E402
from aiokatcp.core import encode as aio_encode  # noqa: E402

from katcp.sensor import Sensor  # noqa: E402

N_CALLS = 200_000
N_SENSORS = 10_000


def best_ns(stmt, number=N_CALLS, repeat=5):
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e9


def ours():
    class Observer:
        def update(self, sensor, reading):
            pass

    s = Sensor.float("device.temperature", "Temperature", "degC")
    s.attach(Observer())
    set_ns = best_ns(lambda: s.set_value(21.5))
    s.set_value(21.5)
    fmt_ns = best_ns(lambda: s.format_reading(s.read()))
    return set_ns, fmt_ns, memory(lambda i: Sensor.float(
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
    return set_ns, fmt_ns, memory(lambda i: aiokatcp.Sensor(
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
    o_set, o_fmt, o_mem = ours()
    t_set, t_fmt, t_mem = theirs()
    print(f"{'':24}{'katcp':>12}{'aiokatcp':>12}{'ratio':>8}")
    print(f"{'set_value+observer ns':24}{o_set:12.0f}{t_set:12.0f}{t_set / o_set:8.2f}")
    print(f"{'format reading ns':24}{o_fmt:12.0f}{t_fmt:12.0f}{t_fmt / o_fmt:8.2f}")
    print(f"{'bytes per sensor':24}{o_mem:12.0f}{t_mem:12.0f}{t_mem / o_mem:8.2f}")


if __name__ == "__main__":
    main()
