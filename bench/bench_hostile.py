#!/usr/bin/env python3
"""How much a hostile client costs the others: regular expressions and floods of updates.

A server runs in a process of its own.  For each hostile action this prints the action's own
reply time and the worst ``?watchdog`` round trip that another client, pinging all the while
on its own connection, saw during it (goal: <= 10 ms more than the quiet baseline):

* ``quiet``: no hostile action (the baseline);
* ``backtrack``: ``?sensor-value /(a+)+$/`` against 200 sensors named ``aaaa...a-NNN``;
* ``mb-pattern``: ``?sensor-list`` with a 1 MB pattern;
* ``sensor-list-all``: ``?sensor-list`` of all sensors, for scale.

It also prints the server's resident memory before and after (a 1 MB pattern used to grow
the process by about 15 MB).

With ``--threads`` it then measures cross-thread updates: 8 threads in the server process
set 100 sensors at full speed for ``--seconds`` while a client samples them all with
``event``; it prints how long ``?watchdog`` takes to answer right after the setters stop
(goal: <= 50 ms) and the worst round trip while they ran, the server's RSS while they ran, and how often a client saw one sensor's
timestamps go backwards.

Usage::

    python bench/bench_hostile.py [--name-length 18] [--threads] [--seconds 3]

The server is started with ``python bench/bench_hostile.py --serve NAME_LENGTH``.
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N_SENSORS = 200


def serve(name_length: int) -> None:
    """Run the server: 200 hostile-named sensors and 100 ``spin.N`` sensors."""
    sys.path.insert(0, ROOT)
    import asyncio

    import katcp
    from katcp.kattypes import Float, Int, request, return_reply

    class Server(katcp.AsyncDeviceServer):
        VERSION_INFO = ("hostile", 1, 0)
        BUILD_INFO = ("hostile", 1, 0, "")
        spun_at: Optional[float] = None

        def setup_sensors(self) -> None:
            for i in range(N_SENSORS):
                self.add_sensor(katcp.Sensor.integer("a" * name_length + f"-{i:03d}",
                                                     "hostile name", "", default=i))
            self.spin = [katcp.Sensor.integer(f"spin.{i}", "set by threads", "", default=0)
                         for i in range(100)]
            for s in self.spin:
                self.add_sensor(s)

        @request(Int(), Float())
        @return_reply()
        def request_spin(self, req, n_threads, seconds):
            """Set the spin sensors from n_threads threads for seconds."""
            def setter() -> None:
                end = time.monotonic() + seconds
                v = 0
                while time.monotonic() < end:
                    v += 1
                    for s in self.spin:
                        s.set_value(v)

            def run() -> None:
                threads = [threading.Thread(target=setter, daemon=True)
                           for _ in range(n_threads)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                self.spun_at = time.monotonic()
            threading.Thread(target=run, daemon=True).start()
            return ("ok",)

        @request()
        @return_reply(Float())
        def request_spun(self, req):
            """time.monotonic() when the setters stopped (-1 while they run)."""
            return ("ok", -1.0 if self.spun_at is None else self.spun_at)

    async def main() -> None:
        server = Server("127.0.0.1", 0)
        server.set_ioloop()
        await server.start()
        print(server.bind_address[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


class Line:
    """A raw KATCP connection: send a request, read up to its reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.read_until(b"#version-connect katcp-device")

    def read_until(self, marker: bytes) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                j = self.buf.find(b"\n", i)
                if j >= 0:
                    out, self.buf = self.buf[:j + 1], self.buf[j + 1:]
                    return out
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("server closed the connection")
            self.buf += data

    def request(self, line: bytes) -> Tuple[float, bytes]:
        name = line.split(b" ", 1)[0].strip()[1:]
        t0 = time.perf_counter()
        self.sock.sendall(line + b"\n")
        out = self.read_until(b"!" + name + b" ")
        return time.perf_counter() - t0, out.rsplit(b"\n", 2)[-2] if out.count(b"\n") > 1 \
            else out.strip()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pinger(port: int, stop: threading.Event, rtts: List[Tuple[float, float]]) -> None:
    line = Line(port)
    while not stop.is_set():
        t, _ = line.request(b"?watchdog")
        rtts.append((time.perf_counter(), t))


def worst_during(rtts: List[Tuple[float, float]], t0: float, t1: float) -> float:
    during = [rtt for at, rtt in rtts if t0 <= at <= t1 + 2.0 and at - rtt <= t1]
    return max(during) if during else float("nan")


def hostile(port: int, pid: int) -> None:
    stop = threading.Event()
    rtts: List[Tuple[float, float]] = []
    th = threading.Thread(target=pinger, args=(port, stop, rtts), daemon=True)
    th.start()
    time.sleep(0.5)
    attacker = Line(port)
    actions = [
        ("quiet", None),
        ("sensor-list-all", b"?sensor-list"),
        ("backtrack", b"?sensor-value /(a+)+$/"),
        ("mb-pattern", b"?sensor-list /" + b"a" * (1 << 20) + b"/"),
    ]
    print(f"{'action':18} {'reply ms':>10} {'worst other RTT ms':>20} {'RSS MB before/after':>22}"
          "  reply")
    for name, line in actions:
        before = rss_kb(pid)
        t0 = time.perf_counter()
        if line is None:
            time.sleep(0.5)
            took, reply = time.perf_counter() - t0, b""
        else:
            took, reply = attacker.request(line)
        t1 = time.perf_counter()
        time.sleep(0.2)
        worst = worst_during(rtts, t0, t1)
        after = rss_kb(pid)
        print(f"{name:18} {took * 1e3:10.1f} {worst * 1e3:20.1f} "
              f"{before / 1024:10.1f}/{after / 1024:<10.1f}  {reply[:70]!r}")
    stop.set()
    th.join()


def threads(port: int, pid: int, seconds: float) -> None:
    sub = Line(port)
    for i in range(100):
        sub.request(b"?sensor-sampling spin.%d event" % i)
    ctl = Line(port)
    counts = {"informs": 0, "backwards": 0}
    last: dict = {}
    done = threading.Event()

    def drain() -> None:
        # The subscriber reads as fast as it can (the server may still drop it as a
        # slow reader: that is the write-buffer limit at work, and it ends the count).
        tail = b""
        sub.sock.settimeout(0.05)
        while not done.is_set():
            try:
                data = sub.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            lines = (tail + data).split(b"\n")
            tail = lines.pop()
            for ln in lines:
                if ln.startswith(b"#sensor-status"):
                    parts = ln.split()
                    ts, sname = float(parts[1]), parts[3]
                    counts["informs"] += 1
                    if ts < last.get(sname, 0.0):
                        counts["backwards"] += 1
                    last[sname] = ts

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    start_rss = peak = rss_kb(pid)
    ctl.request(b"?spin 8 %f" % seconds)
    end = time.monotonic() + seconds
    while time.monotonic() < end - 0.05:
        peak = max(peak, rss_kb(pid))
        time.sleep(0.05)
    # Poll until a ?spun is *sent* after the setters stopped (time.monotonic() is one
    # clock for every process): its round trip is how soon a query is answered then.
    polls = []
    while True:
        t0 = time.monotonic()
        took, reply = ctl.request(b"?spun")
        polls.append((t0, took))
        stopped_at = float(reply.split()[-1])
        if stopped_at >= 0 and t0 >= stopped_at:
            break
    during = max(t for _, t in polls[:-1]) if len(polls) > 1 else float("nan")
    done.set()
    drainer.join()
    print(f"threads: 8 setters x 100 sensors for {seconds:.0f} s; a query sent "
          f"{(t0 - stopped_at) * 1e3:.0f} ms after they stopped took {took * 1e3:.1f} ms "
          f"(worst while they ran: {during * 1e3:.0f} ms)")
    print(f"threads: server RSS {start_rss / 1024:.1f} MB at start, peak {peak / 1024:.1f} MB; "
          f"{counts['informs']} informs read, {counts['backwards']} went backwards in time")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--name-length", type=int, default=18,
                        help="number of 'a's in the hostile sensor names")
    parser.add_argument("--threads", action="store_true",
                        help="also measure cross-thread updates")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="how long the setter threads run")
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                             "--serve", str(args.name_length)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        hostile(port, proc.pid)
        if args.threads:
            threads(port, proc.pid, args.seconds)
    finally:
        proc.kill()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
