"""Benchmark katcp.ncp against ncplib 6.1.0, measured side by side in the same run.

Run from the work tree: ``.venv/bin/python bench/bench_ncp.py [--quick]``.

Figures: encode/decode packets per second for a control packet (1 field, 4 params) and a data
packet (one f32 array of 4096 items), and request round-trip time over loopback (client sends a
request, server replies; both ends of the same library), plus the RTT of
``katcp.ncp.blocking`` from a plain thread against ncplib's async RTT. Ratios > 1 mean katcp.ncp is faster
(for RTT, katcp/ncplib time is printed: < 1 means katcp.ncp is faster).
"""

from __future__ import annotations

import argparse
import json
import asyncio
import os
import statistics
import sys
import threading
import time
import warnings
from array import array
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ncplib  # noqa: E402
import ncplib.packets as ncp_packets  # noqa: E402

from katcp import ncp as kncp  # noqa: E402
from katcp.ncp import packets as k_packets  # noqa: E402

TS = datetime(2021, 2, 18, 13, 17, 20, 123456, tzinfo=timezone.utc)
INFO = b"\x00\x00\xfc\x02"


def control_fields(mod):
    return [
        ("TIME", 5, [("SAMP", 1024), ("FCTR", 1200), ("NAME", "node"), ("FREQ", mod.u32(2400))])
    ]


def data_fields(mod):
    return [("SWEP", 6, [("DATA", array("f", [float(i % 97) for i in range(4096)]))])]


def _calibrate(fn, min_time):
    n = 1
    while True:
        t0 = _cpu()
        for _ in range(n):
            fn()
        if _cpu() - t0 >= min_time / 5:
            return n
        n *= 2


#: Codec timings use this process's CPU time, not the wall clock: on a shared machine the
#: time a process spends descheduled would otherwise land on whichever side was running.
_cpu = time.process_time


def rates(fn_a, fn_b, min_time, rounds=7, spread=None):
    """Median rates of two functions over ``rounds`` alternating runs (the machine is
    shared, so interleaving keeps load changes from favouring either side).  If ``spread``
    is a list, the per-round ratios a/b are appended to it."""
    n_a, n_b = _calibrate(fn_a, min_time), _calibrate(fn_b, min_time)
    got_a, got_b = [], []
    for _ in range(rounds):
        for fn, n, got in ((fn_a, n_a, got_a), (fn_b, n_b, got_b)):
            t0 = _cpu()
            for _ in range(n):
                fn()
            got.append(n / max(_cpu() - t0, 1e-9))
    if spread is not None:
        spread.extend(a / b for a, b in zip(got_a, got_b))
    return statistics.median(got_a), statistics.median(got_b)


#: Results for ``--json``: one record per case (see bench/plot.py).
RESULTS = []


def _record(case, ours, theirs, unit, lower_is_better):
    RESULTS.append({"bench": "ncp", "case": case, "ours": ours, "peer": theirs,
                    "peer_name": "ncplib", "unit": unit, "lower_is_better": lower_is_better})


def bench_codec(min_time):
    print(f"{'case':28s} {'katcp.ncp /s':>14s} {'ncplib /s':>14s} {'ratio':>7s}  "
          "(CPU time, medians of 7 interleaved rounds)")
    for label, fields_of in (
        ("control (1 field, 4 params)", control_fields),
        ("data (f32 x 4096)", data_fields),
    ):
        kf, nf = fields_of(kncp), fields_of(ncplib)
        k_enc, n_enc = rates(
            lambda kf=kf: k_packets.encode_packet("DSPC", 1, TS, INFO, kf),
            lambda nf=nf: ncp_packets.encode_packet("DSPC", 1, TS, INFO, nf),
            min_time,
        )
        data = ncp_packets.encode_packet("DSPC", 1, TS, INFO, nf)
        assert k_packets.encode_packet("DSPC", 1, TS, INFO, kf) == data
        dec_spread = []
        k_dec, n_dec = rates(
            lambda data=data: k_packets.decode_packet(data),
            lambda data=data: ncp_packets.decode_packet(data),
            min_time,
            spread=dec_spread,
        )
        print(f"encode {label:21s} {k_enc:14,.0f} {n_enc:14,.0f} {k_enc / n_enc:6.2f}x")
        print(f"decode {label:21s} {k_dec:14,.0f} {n_dec:14,.0f} {k_dec / n_dec:6.2f}x  "
              f"(per-round {min(dec_spread):.2f}..{max(dec_spread):.2f})")
        _record(f"encode {label}", k_enc, n_enc, "per s", False)
        _record(f"decode {label}", k_dec, n_dec, "per s", False)
        # the streaming decoder as the transport drives it: 64 packets in 64 KiB reads
        codec = k_packets.PacketCodec()
        stream = data * 64
        reads = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]

        def feed_all(codec=codec, reads=reads):
            for chunk in reads:
                codec.feed(chunk)

        k_str, _ = rates(feed_all, lambda: None, min_time)
        print(f"stream-decode {label:14s} {k_str * 64:14,.0f} {'':>14s}")


async def _rtt(mod, n):
    async def handler(conn):
        async for field in conn:
            field.send(ACKN=1)
            field.send(ECHO=field["SAMP"])

    server = await mod.start_server(handler, "127.0.0.1", 0, timeout=10)
    port = server.sockets[0].getsockname()[1]
    conn = await mod.connect("127.0.0.1", port, timeout=10)
    try:
        for _ in range(50):
            await conn.send("DSPC", "TIME", SAMP=1).recv()
        t0 = time.perf_counter()
        for i in range(n):
            field = await conn.send("DSPC", "TIME", SAMP=i).recv()
            assert field["ECHO"] == i
        return (time.perf_counter() - t0) / n
    finally:
        conn.close()
        await conn.wait_closed()
        await asyncio.sleep(0.05)  # let the server's handler finish before closing it
        server.close()
        await server.wait_closed()


def _blocking_rtt(n, direct=True):
    """katcp.ncp.blocking request RTT from this plain thread; the server runs in another.

    ``direct=False`` forces the loop path (the request handed to the ioloop and the reply
    handed back, as before the direct path existed), for comparison in the same run.
    """
    from katcp.ncp import blocking

    async def handler(conn):
        async for field in conn:
            field.send(ACKN=1)
            field.send(ECHO=field["SAMP"])

    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder = {}

    async def serve():
        holder["server"] = await kncp.start_server(handler, "127.0.0.1", 0, timeout=10)
        holder["stop"] = asyncio.Event()
        started.set()
        await holder["stop"].wait()
        holder["server"].close()
        await holder["server"].wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    started.wait(10)
    port = holder["server"].sockets[0].getsockname()[1]
    try:
        with blocking.connect("127.0.0.1", port, timeout=10) as node:
            if not direct:
                node._direct = False
            for _ in range(50):
                node.request("DSPC", "TIME", SAMP=1)
            t0 = time.perf_counter()
            for i in range(n):
                assert node.request("DSPC", "TIME", SAMP=i)["ECHO"] == i
            return (time.perf_counter() - t0) / n
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


def _spread(values):
    return f"median {statistics.median(values) * 1e6:7.1f} us (min {min(values) * 1e6:.1f}, " \
           f"max {max(values) * 1e6:.1f})"


def bench_rtt(n, rounds=5):
    """RTTs measured round-robin: each round runs every case once, so load changes on a shared
    machine hit all of them; medians over the rounds, with the spread."""
    cases = {
        "katcp.ncp async": lambda: asyncio.run(_rtt(kncp, n)),
        "ncplib async": lambda: asyncio.run(_rtt(ncplib, n)),
        "katcp.ncp blocking": lambda: _blocking_rtt(n),
        "katcp.ncp blocking, loop path": lambda: _blocking_rtt(n, direct=False),
    }
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            times[name].append(fn())
    print(f"request RTT (ACKN + reply), {n} sequential requests, {rounds} interleaved rounds:")
    for name, values in times.items():
        print(f"  {name:30s} {_spread(values)}")
    peer = times["ncplib async"]
    med_peer = statistics.median(peer)
    for name in ("katcp.ncp async", "katcp.ncp blocking", "katcp.ncp blocking, loop path"):
        ratios = [a / b for a, b in zip(times[name], peer)]
        print(f"  {name:30s} / ncplib async: {statistics.median(times[name]) / med_peer:5.2f}x "
              f"(per-round ratios {min(ratios):.2f}..{max(ratios):.2f}; < 1: katcp.ncp faster)")
    _record("request RTT", statistics.median(times["katcp.ncp async"]), med_peer, "s", True)
    _record("blocking request RTT", statistics.median(times["katcp.ncp blocking"]), med_peer,
            "s", True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved RTT rounds (median and spread are printed)")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the results to FILE, for bench/plot.py")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    bench_codec(0.1 if args.quick else 0.5)
    if hasattr(kncp, "connect"):
        bench_rtt(200 if args.quick else 2000, rounds=args.rounds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=1)


if __name__ == "__main__":
    main()
