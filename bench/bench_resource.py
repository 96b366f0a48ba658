"""Benchmark the high-level clients against aiokatcp's client on the same devices.

Devices run in a separate process (aiokatcp DeviceServers by default, or ours
with ``--server ours``).  Measured, for our KATCPClientResourceContainer and
for an equivalent aiokatcp client script:

1. container: N devices x M sensors, from start until every child is synced
   with an ``event`` strategy on every sensor and every sensor has a reading;
2. one device with S sensors: time to set a strategy on all of them (and get
   the first reading of each), after sync.

Usage::

    .venv/bin/python bench/bench_resource.py [--devices 100] [--sensors 100]
        [--big 10000] [--server aio|ours]
"""

import argparse
import asyncio
import logging
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def serve(kind, n_devices, n_sensors, big, port_queue, stop_event):
    """Run the devices in this (child) process until stop_event is set."""

    async def main():
        servers = []
        ports = []
        if kind == "aio":
            import aiokatcp

            class Dev(aiokatcp.DeviceServer):
                VERSION = "bench-1.0"
                BUILD_STATE = "bench-1.0"

            for count in [n_sensors] * n_devices + [big]:
                srv = Dev("127.0.0.1", 0)
                for i in range(count):
                    srv.sensors.add(aiokatcp.Sensor(int, f"s{i}.value", "bench", "", default=i,
                                                    initial_status=aiokatcp.Sensor.Status.NOMINAL))
                await srv.start()
                servers.append(srv)
                ports.append(srv.server.sockets[0].getsockname()[1])
        else:
            import tornado.ioloop

            from katcp import server as kserver
            from katcp.core import ProtocolFlags, Sensor

            for count in [n_sensors] * n_devices + [big]:
                class Dev(kserver.DeviceServer):
                    VERSION_INFO = ("bench", 1, 0)
                    BUILD_INFO = ("bench", 1, 0, "")
                    PROTOCOL_INFO = ProtocolFlags(
                        5, 1, set("MIT") if kind == "ours-nobulk" else set("MIBT"))
                    N = count

                    def setup_sensors(self):
                        for i in range(self.N):
                            self.add_sensor(Sensor.integer(f"s{i}.value", "bench", "", None,
                                                           default=i,
                                                           initial_status=Sensor.NOMINAL))

                srv = Dev("127.0.0.1", 0)
                srv.set_ioloop(tornado.ioloop.IOLoop.current())
                started = srv.start()
                if started is not None:
                    await started
                servers.append(srv)
                ports.append(srv.bind_address[1])
        port_queue.put(ports)
        while not stop_event.is_set():
            await asyncio.sleep(0.1)

    asyncio.run(main())


async def all_read(sensors):
    """Return once every sensor has a reading.

    Readings stay once they have come, so each sensor is looked at until it has one and
    never again: rescanning 100,000 sensors every 10 ms would cost this process (and the
    devices' process, on the same cores) more than the readings themselves.
    """
    i, n = 0, len(sensors)
    while i < n:
        if sensors[i].reading.timestamp:
            i += 1
        else:
            await asyncio.sleep(0.01)


async def ours_container(ports, n_sensors):
    from katcp.resource_client import KATCPClientResourceContainer

    spec = dict(name="bench", clients={
        f"dev{i}": dict(address=("127.0.0.1", p), controlled=True)
        for i, p in enumerate(ports)})
    cont = KATCPClientResourceContainer(spec)
    for child in cont.children.values():
        await child.set_sampling_strategies(".", "event")
    t0 = time.perf_counter()
    cont.start()
    await cont.until_synced(timeout=120)
    t_synced = time.perf_counter() - t0
    sensors = list(cont.sensor.values())
    await all_read(sensors)
    t_all = time.perf_counter() - t0
    assert len(sensors) == len(ports) * n_sensors, len(sensors)
    cont.stop()
    for f in cont.until_stopped(timeout=10).values():
        await f
    return t_synced, t_all


async def aio_sampling(client, names, bulk):
    if bulk:
        await client.request("sensor-sampling", ",".join(names), "event")
    else:
        await asyncio.gather(*(client.request("sensor-sampling", n, "event") for n in names))


async def aio_container(ports, n_sensors, bulk=True):
    import aiokatcp

    t0 = time.perf_counter()
    counts = []

    async def one(port):
        client = await aiokatcp.Client.connect("127.0.0.1", port)
        seen = set()
        done = asyncio.Event()

        def on_status(timestamp: bytes, count: bytes, name: bytes, *rest: bytes) -> None:
            seen.add(name)
            if len(seen) >= n_sensors:
                done.set()

        client.add_inform_callback("sensor-status", on_status)
        await client.request("help")
        _, informs = await client.request("sensor-list")
        names = [i.arguments[0].decode() for i in informs]
        await aio_sampling(client, names, bulk)
        await asyncio.wait_for(done.wait(), 120)
        counts.append(len(seen))
        return client

    clients = await asyncio.gather(*(one(p) for p in ports))
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
        await c.wait_closed()
    assert all(c == n_sensors for c in counts)
    return elapsed


async def ours_big(port, n):
    from katcp.resource_client import KATCPClientResource

    res = KATCPClientResource(dict(name="big", address=("127.0.0.1", port), controlled=True))
    t0 = time.perf_counter()
    res.start()
    await res.until_synced(timeout=120)
    t_sync = time.perf_counter() - t0
    sensors = list(res.sensor.values())
    assert len(sensors) == n
    t0 = time.perf_counter()
    await res.set_sampling_strategies(".", "event")
    t_set = time.perf_counter() - t0
    await all_read(sensors)
    t_first = time.perf_counter() - t0
    res.stop()
    await res.until_stopped(timeout=10)
    return t_sync, t_set, t_first


async def aio_big(port, n, bulk=True):
    import aiokatcp

    t0 = time.perf_counter()
    client = await aiokatcp.Client.connect("127.0.0.1", port)
    await client.request("help")
    _, informs = await client.request("sensor-list")
    names = [i.arguments[0].decode() for i in informs]
    t_sync = time.perf_counter() - t0
    seen = set()
    done = asyncio.Event()

    def on_status(timestamp: bytes, count: bytes, name: bytes, *rest: bytes) -> None:
        seen.add(name)
        if len(seen) >= n:
            done.set()

    client.add_inform_callback("sensor-status", on_status)
    t0 = time.perf_counter()
    await aio_sampling(client, names, bulk)
    t_set = time.perf_counter() - t0
    await asyncio.wait_for(done.wait(), 120)
    t_first = time.perf_counter() - t0
    client.close()
    await client.wait_closed()
    return t_sync, t_set, t_first


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--big", type=int, default=10000)
    parser.add_argument("--server", choices=["aio", "ours", "ours-nobulk"], default="aio",
                        help="devices: aiokatcp, ours (flag B), or ours without flag B "
                             "(strategies then go one request per sensor, pipelined)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    ctx = multiprocessing.get_context("spawn")
    port_queue = ctx.Queue()
    stop_event = ctx.Event()
    proc = ctx.Process(target=serve, args=(args.server, args.devices, args.sensors, args.big,
                                           port_queue, stop_event), daemon=True)
    proc.start()
    try:
        ports = port_queue.get(timeout=300)
        dev_ports, big_port = ports[:-1], ports[-1]
        print(f"devices served by {args.server}: {args.devices} x {args.sensors} sensors, "
              f"plus one device with {args.big} sensors")

        t_synced, t_all = asyncio.run(ours_container(dev_ports, args.sensors))
        bulk = args.server != "ours-nobulk"
        t_aio = asyncio.run(aio_container(dev_ports, args.sensors, bulk))
        print(f"container sync+strategies: ours synced {t_synced:.2f} s, all readings "
              f"{t_all:.2f} s; aiokatcp clients {t_aio:.2f} s; ratio ours/aiokatcp "
              f"{t_all / t_aio:.2f}")

        o_sync, o_set, o_first = asyncio.run(ours_big(big_port, args.big))
        a_sync, a_set, a_first = asyncio.run(aio_big(big_port, args.big, bulk))
        print(f"{args.big} sensors, one device: sync ours {o_sync:.2f} s / aiokatcp "
              f"{a_sync:.2f} s; set strategies ours {o_set:.2f} s / aiokatcp {a_set:.2f} s; "
              f"all first readings ours {o_first:.2f} s / aiokatcp {a_first:.2f} s; "
              f"ratio {o_first / a_first:.2f}")
    finally:
        stop_event.set()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()


if __name__ == "__main__":
    main()
