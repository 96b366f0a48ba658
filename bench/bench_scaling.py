#!/usr/bin/env python3
"""How cost grows with the work: clients, sensors, connections and devices.

Four axes, each measured for our implementation and for aiokatcp in the same run wherever
aiokatcp has the feature (servers in processes of their own, load from ``bench/loadgen.py``,
as in ``bench/bench_server.py``, whose server processes and measurements this reuses):

``fanout``
    ``#sensor-status`` informs/s and server CPU (µs per inform, and % of one core) with the
    ``event`` strategy on 1,000 sensors, as the number of subscribed clients grows
    (1, 10, 100, 1,000).  Ours is the ``AsyncDeviceServer``.
``sensors``
    Server resident memory as sensors are added (1k, 10k, 100k, 1M integer sensors, added
    to one server in steps), in KB per sensor (goal: linear, <= 0.4 KB per sensor).
``idle``
    Resident memory per idle connection with 10,000 connections open (goal <= 4 KB).  The
    open-files limit is raised to its hard limit; if that is too low the largest count
    allowed is measured and the table says so.
``container``
    ``KATCPClientResourceContainer``: time from ``start()`` until every child is synced with
    the ``event`` strategy on every sensor and every sensor has a reading, as devices grow
    (10, 100, 1,000 devices x 100 sensors, served by the fleet simulator
    :mod:`katcp.tools.fleetsim` in a process of its own).  aiokatcp has no resource
    container; its row is the equivalent script of ``bench/bench_resource.py`` (one
    ``aiokatcp.Client`` per device: connect, ``?help``, ``?sensor-list``, bulk
    ``?sensor-sampling``, wait for every first reading).  The two take turns on the same
    fleet; medians of the wall time and of the client process's CPU time are reported.

Usage::

    python bench/bench_scaling.py                    # full scale (several minutes)
    python bench/bench_scaling.py --small            # scaled down (about a minute)
    python bench/bench_scaling.py --axes fanout --clients 1,10,100
    python bench/bench_scaling.py --csv doc/scaling.csv   # the table the docs show

Prints one table per axis.  ``--csv FILE`` writes the rows (``axis,x,impl,metric,value,
unit``) that ``bench/plot.py --scaling`` draws as line charts.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import multiprocessing
import os
import resource
import statistics
import sys
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import bench_resource  # noqa: E402
import bench_server  # noqa: E402
from bench_server import ServerProcess, measure_idle_memory, measure_informs  # noqa: E402

#: Implementations measured on the server axes: (bench_server kind, label).
SERVER_IMPLS = (("async", "katcp"), ("aiokatcp", "aiokatcp"))
AXES = ("fanout", "sensors", "idle", "container")
FULL = {"clients": [1, 10, 100, 1000], "sensors": [1000, 10000, 100000, 1000000],
        "idle": [1000, 2000, 10000], "devices": [10, 100, 1000]}
SMALL = {"clients": [1, 10, 100], "sensors": [1000, 10000, 100000], "idle": [500, 1000],
         "devices": [10, 100]}

Row = Tuple[str, int, str, str, float, str]


def _ints(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x]


def _table(title: str, header: List[str], rows: List[List[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  " + "  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)))


# ------------------------------------------------------------------------------ the axes
def axis_fanout(clients: List[int], timeout: float) -> List[Row]:
    """Informs/s and server CPU vs subscribed clients; both servers up, runs interleaved."""
    rows: List[Row] = []
    servers = {label: ServerProcess(kind, timeout) for kind, label in SERVER_IMPLS}
    try:
        for n in clients:
            # about 200k informs per run (1M for 1,000 clients: one round of updates)
            rounds = max(1, 200 // n)
            # the slower peer may take ~0.1 ms per inform, set-up included
            step_timeout = timeout + n * 1000 * (rounds + 1) / 10000
            for label, server in servers.items():
                c0, t0 = server.cpu_seconds(), time.perf_counter()
                try:
                    res = measure_informs(server, n, rounds, step_timeout)
                except Exception as exc:  # keep the other points
                    print(f"  fanout: {n} clients, {label}: FAILED: {str(exc)[-300:]}",
                          flush=True)
                    continue
                busy = (server.cpu_seconds() - c0) / (time.perf_counter() - t0)
                rows += [("fanout", n, label, "informs/s", res["informs_per_s"], "1/s"),
                         ("fanout", n, label, "server CPU per inform", res["cpu_us_per_inform"],
                          "us"),
                         ("fanout", n, label, "server CPU", busy * 100, "% of a core")]
                print(f"  fanout: {n} clients, {label}: {res['informs_per_s']:,.0f} informs/s",
                      flush=True)
    finally:
        for server in servers.values():
            server.stop()
    table = []
    for n in clients:
        line = [f"{n:,}"]
        for _, label in SERVER_IMPLS:
            got = {m: v for a, x, i, m, v, _ in rows if x == n and i == label}
            line += [f"{got.get('informs/s', 0):,.0f}", f"{got.get('server CPU per inform', 0):.2f}",
                     f"{got.get('server CPU', 0):.0f}"]
        k = [v for a, x, i, m, v, _ in rows if x == n and m == "informs/s"]
        line.append(f"{k[0] / k[1]:.1f}x" if len(k) == 2 and k[1] else "-")
        table.append(line)
    _table("Fan-out: 1,000 sensors (event strategy), informs/s and server CPU vs clients",
           ["clients", "katcp /s", "us/inform", "CPU %", "aiokatcp /s", "us/inform", "CPU %",
            "ratio"], table)
    return rows


def axis_sensors(totals: List[int], timeout: float) -> List[Row]:
    """Server RSS as sensors are added in steps to one server of each kind."""
    rows: List[Row] = []
    servers = {label: ServerProcess(kind, timeout) for kind, label in SERVER_IMPLS}
    try:
        time.sleep(0.5)
        base = {label: s.rss_kb() for label, s in servers.items()}
        have = 0
        for total in totals:
            for label, server in servers.items():  # interleaved: one step each
                # In requests of at most 50,000: a server may tell its clients about every
                # added sensor (#interface-changed), and a bigger burst would pass the write
                # buffer limit of this very connection.
                for start in range(have, total, 50000):
                    count = min(50000, total - start)
                    reply = bench_server._request(
                        server.port, b"?bench-add-sensors %d %d" % (count, start),
                        timeout + count / 2000)  # about 0.5 ms per sensor at worst
                    if reply.split()[1:2] != [b"ok"]:
                        raise RuntimeError(f"{label}: bench-add-sensors failed: {reply!r}")
                time.sleep(0.3)
                kb = server.rss_kb() - base[label]
                rows += [("sensors", total, label, "RSS growth", kb / 1024, "MB"),
                         ("sensors", total, label, "KB per sensor", kb / total, "KB")]
                print(f"  sensors: {total:,}, {label}: {kb / total:.3f} KB/sensor", flush=True)
            have = total
    finally:
        for server in servers.values():
            server.stop()
    table = []
    for total in totals:
        line = [f"{total:,}"]
        for _, label in SERVER_IMPLS:
            got = {m: v for a, x, i, m, v, _ in rows if x == total and i == label}
            line += [f"{got.get('RSS growth', 0):,.1f}", f"{got.get('KB per sensor', 0):.3f}"]
        table.append(line)
    _table("Server memory vs sensors (RSS growth over the empty server; goal <= 0.4 KB/sensor)",
           ["sensors", "katcp MB", "KB/sensor", "aiokatcp MB", "KB/sensor"], table)
    return rows


def axis_idle(counts: List[int], timeout: float, peer_max: int) -> List[Row]:
    """RSS per idle connection at each count (capped by the open-files limit).

    Our server announces every new client to the others (``#client-connected``), so the
    bytes sent while n clients connect grow as n^2 (about 1.7 GB for 10,000); the load
    generator reads them as they come, and the step timeout allows for them.  aiokatcp is
    measured up to ``peer_max`` connections: its set-up time grows faster still (its
    server took 52 s for 1,000 and 195 s for 2,000 on the development machine).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    rows: List[Row] = []
    notes = []
    for n in counts:
        allowed = n if hard == resource.RLIM_INFINITY else min(n, hard - 200)
        if allowed != n:
            notes.append(f"open-files hard limit {hard}: {allowed:,} measured for {n:,}")
        for kind, label in SERVER_IMPLS:
            if label != "katcp" and allowed > peer_max:
                notes.append(f"{label} not run above {peer_max:,}")
                continue
            server = ServerProcess(kind, timeout)
            t0, c0 = time.perf_counter(), server.cpu_seconds()
            try:
                kb = measure_idle_memory(server, allowed, timeout + (allowed / 300) ** 2)
                cpu = server.cpu_seconds() - c0
            except Exception as exc:  # keep the other points
                print(f"  idle: {allowed:,} connections, {label}: FAILED: {str(exc)[-300:]}",
                      flush=True)
                continue
            finally:
                server.stop()
            took = time.perf_counter() - t0
            rows += [("idle", allowed, label, "KB per idle connection", kb, "KB"),
                     ("idle", allowed, label, "time to connect and greet all", took, "s"),
                     ("idle", allowed, label, "server CPU to connect all", cpu, "s")]
            print(f"  idle: {allowed:,} connections, {label}: {kb:.2f} KB each ({took:.0f} s, "
                  f"server CPU {cpu:.1f} s)", flush=True)
    table = []
    for x in sorted({r[1] for r in rows}):
        line = [f"{x:,}"]
        for _, label in SERVER_IMPLS:
            got = {m: v for a, xx, i, m, v, _ in rows if xx == x and i == label}
            if not got:
                line += ["-", "-", "-"]
                continue
            line += [f"{got['KB per idle connection']:.2f}",
                     f"{got['time to connect and greet all']:.0f}",
                     f"{got['server CPU to connect all']:.1f}"]
        table.append(line)
    note = f" ({'; '.join(dict.fromkeys(notes))})" if notes else ""
    _table(f"Memory per idle connection (goal <= 4 KB at 10,000){note}",
           ["connections", "katcp KB", "set-up s", "CPU s", "aiokatcp KB", "set-up s",
            "CPU s"], table)
    return rows


def _serve_fleet(devices: int, sensors: int, port_queue, stop_event) -> None:
    from katcp.tools.fleetsim import Fleet, raise_fd_limit

    raise_fd_limit(devices * 4 + 100)
    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        fleet = Fleet(devices, sensors, rate=0.0)
        await fleet.start()
        port_queue.put(list(fleet.ports))
        while not stop_event.is_set():
            await asyncio.sleep(0.1)
        await fleet.stop()

    asyncio.run(main())


#: Interleaved runs (ours, then aiokatcp's script) per device count on the container axis.
CONTAINER_REPEATS = 3


def axis_container(device_counts: List[int], sensors: int, timeout: float,
                   repeats: int = CONTAINER_REPEATS) -> List[Row]:
    """Container sync time vs devices (fleet simulator in a child process).

    For each device count, ours and aiokatcp's script take turns ``repeats`` times on the
    same fleet; the medians of the wall time and of this (client) process's CPU time are
    reported.  The fleet's own process serves both alike.
    """
    from katcp.tools.fleetsim import raise_fd_limit

    raise_fd_limit(max(device_counts) * 4 + 100)
    logging.getLogger("katcp").setLevel(logging.ERROR)
    ctx = multiprocessing.get_context("spawn")
    rows: List[Row] = []
    med = statistics.median
    for devices in device_counts:
        port_queue, stop_event = ctx.Queue(), ctx.Event()
        proc = ctx.Process(target=_serve_fleet, args=(devices, sensors, port_queue, stop_event),
                           daemon=True)
        proc.start()
        got: Dict[str, List[Tuple[float, float]]] = {"katcp": [], "aiokatcp": []}
        try:
            ports = port_queue.get(timeout=timeout + devices * 0.1)
            for _ in range(repeats):
                c0 = time.process_time()
                _, t_all = asyncio.run(bench_resource.ours_container(ports, sensors))
                got["katcp"].append((t_all, time.process_time() - c0))
                c0 = time.process_time()
                t_aio = asyncio.run(bench_resource.aio_container(ports, sensors, bulk=True))
                got["aiokatcp"].append((t_aio, time.process_time() - c0))
                print(f"  container: {devices} devices, katcp {t_all:.2f} s "
                      f"(CPU {got['katcp'][-1][1]:.2f} s), aiokatcp clients {t_aio:.2f} s "
                      f"(CPU {got['aiokatcp'][-1][1]:.2f} s)", flush=True)
        finally:
            stop_event.set()
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
        for impl, runs in got.items():
            rows += [("container", devices, impl, "sync time", med(w for w, _ in runs), "s"),
                     ("container", devices, impl, "client CPU", med(c for _, c in runs), "s")]
    table = []
    for devices in device_counts:
        got_m = {(i, m): v for a, x, i, m, v, _ in rows if x == devices}
        ours, theirs = got_m[("katcp", "sync time")], got_m[("aiokatcp", "sync time")]
        ours_cpu, their_cpu = got_m[("katcp", "client CPU")], got_m[("aiokatcp", "client CPU")]
        table.append([f"{devices:,}", f"{devices * sensors:,}", f"{ours:.2f}",
                      f"{ours / devices * 1000:.1f}", f"{theirs:.2f}", f"{ours / theirs:.2f}x",
                      f"{ours_cpu:.2f}", f"{their_cpu:.2f}", f"{ours_cpu / their_cpu:.2f}x"])
    _table(f"Resource container sync (all strategies set, every first reading) vs devices x "
           f"{sensors} sensors (medians of {repeats} interleaved runs)",
           ["devices", "sensors", "katcp s", "ms/device", "aiokatcp clients s", "ratio",
            "katcp CPU s", "aiokatcp CPU s", "CPU ratio"], table)
    return rows


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="scaled-down preset (about a minute)")
    ap.add_argument("--axes", default=",".join(AXES), help=f"comma-separated subset of {AXES}")
    ap.add_argument("--clients", type=_ints, help="fan-out client counts (1,10,100,1000)")
    ap.add_argument("--sensors", type=_ints,
                    help="sensor totals for the memory axis (1000,10000,100000,1000000)")
    ap.add_argument("--idle", type=_ints, help="idle connection counts (1000,10000)")
    ap.add_argument("--peer-idle-max", type=int, default=2000,
                    help="most idle connections measured for aiokatcp (2000)")
    ap.add_argument("--devices", type=_ints, help="container device counts (10,100,1000)")
    ap.add_argument("--device-sensors", type=int, default=100, help="sensors per device (100)")
    ap.add_argument("--timeout", type=float, default=120.0, help="base timeout of each step (s)")
    ap.add_argument("--csv", metavar="FILE", help="write the rows as CSV (for bench/plot.py)")
    args = ap.parse_args(argv)
    preset = SMALL if args.small else FULL
    clients = args.clients or preset["clients"]
    sensor_totals = args.sensors or preset["sensors"]
    idle = args.idle or preset["idle"]
    devices = args.devices or preset["devices"]
    axes = [a for a in args.axes.split(",") if a]
    for a in axes:
        if a not in AXES:
            ap.error(f"unknown axis {a!r}")
    bench_server._raise_fd_limit()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; katcp vs aiokatcp, "
          f"same run; axes: {', '.join(axes)}", flush=True)
    rows: List[Row] = []
    t0 = time.perf_counter()
    runners: Dict[str, object] = {
        "fanout": lambda: axis_fanout(clients, args.timeout),
        "sensors": lambda: axis_sensors(sensor_totals, args.timeout),
        "idle": lambda: axis_idle(idle, args.timeout, args.peer_idle_max),
        "container": lambda: axis_container(devices, args.device_sensors, args.timeout),
    }
    for axis in axes:
        try:
            rows += runners[axis]()  # type: ignore[operator]
        except Exception as exc:  # report it and carry on with the other axes
            print(f"\n{axis}: FAILED: {str(exc)[:600]}", flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["axis", "x", "impl", "metric", "value", "unit"])
            for axis, x, impl, metric, value, unit in rows:
                w.writerow([axis, x, impl, metric, f"{value:.4g}", unit])
    return 0


if __name__ == "__main__":
    sys.exit(main())
