#!/usr/bin/env python3
"""Fairness under a flood: what a client that never reads costs the other clients.

One *flooder* pipelines requests as fast as the server takes them and never reads a reply;
one *normal* client sends ``?watchdog`` and waits for each reply.  For each server (ours,
threaded ``DeviceServer`` and ``AsyncDeviceServer``, and katcp-python 0.9.3's
``DeviceServer`` run in its own virtualenv), in a process of its own, this prints the normal
client's round-trip times while the flood runs (median, 99th percentile, max), how long the
flooder stayed connected, and the last messages the server sent it before closing.

Usage::

    python bench/bench_fairness.py [--seconds 3] [--request watchdog]
                                   [--servers default,async,katcp093]

katcp-python's interpreter comes from ``$KATCP093_PYTHON`` (default
``/work/main/.venv-peers/katcp093/bin/python``).  A server process is started with
``python bench/bench_fairness.py --serve KIND``, the flooder with
``python bench/bench_fairness.py --flood PORT --request NAME``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KATCP093 = os.environ.get("KATCP093_PYTHON", "/work/main/.venv-peers/katcp093/bin/python")


def serve(kind: str) -> None:
    """Run a device server on a free port; print the port; stop when stdin closes."""
    if kind == "katcp093":
        from katcp import DeviceServer
    else:
        sys.path.insert(0, ROOT)
        from katcp import AsyncDeviceServer, DeviceServer

        if kind == "async":
            DeviceServer = AsyncDeviceServer  # noqa: N806 - the class under test

    class Device(DeviceServer):
        VERSION_INFO = ("fairness", 1, 0)
        BUILD_INFO = ("fairness", 0, 1, "")

        def setup_sensors(self):
            pass

    server = Device("127.0.0.1", 0)
    if kind != "async":
        server.start(timeout=10)
        print(server.bind_address[1], flush=True)
        sys.stdin.read()
        server.stop()
        server.join(timeout=5)
        return

    import asyncio

    import tornado.ioloop

    async def run_on_this_loop() -> None:
        # AsyncDeviceServer: handlers on the caller's loop (no managed thread).
        server.set_ioloop(tornado.ioloop.IOLoop.current())
        await server.start()
        print(server.bind_address[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop()

    asyncio.run(run_on_this_loop())


def _read_line(sock: socket.socket, buf: bytearray, prefix: bytes) -> bytes:
    """Read until a line starting with ``prefix`` arrives; return it."""
    while True:
        nl = buf.find(b"\n")
        while nl >= 0:
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            if line.startswith(prefix):
                return line
            nl = buf.find(b"\n")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk


def flood(port: int, request: str) -> None:
    """Flooder process: pipeline ``?request`` without reading until stdin closes or the
    server cuts us off; print what happened as JSON."""
    import json

    stop = threading.Event()
    result: dict = {}
    sock = socket.socket()
    # A small receive buffer: the server's output backs up in its own process soon.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    line = b"?" + request.encode() + b"\n"
    chunk = line * (65536 // len(line))

    def send() -> None:
        t0 = time.perf_counter()
        sent = 0
        view = memoryview(chunk)
        sock.settimeout(0.2)  # to see ``stop`` while the server does not read
        while not stop.is_set():
            try:
                n = sock.send(view[sent % len(chunk):])
            except socket.timeout:
                continue
            except OSError as exc:
                result["error"] = type(exc).__name__
                break
            sent += n
        result["connected_s"] = time.perf_counter() - t0
        result["requests_sent"] = sent // len(line)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    print("flooding", flush=True)
    sys.stdin.read()
    stop.set()
    sender.join(10)
    # Cut off: what did the server say last?  Read what reached us, up to its close.
    tail = b""
    deadline = time.perf_counter() + 3.0
    try:
        while "error" in result and time.perf_counter() < deadline:
            data = sock.recv(1 << 20)
            if not data:
                break
            tail = (tail + data)[-2000:]
    except OSError:
        pass
    sock.close()
    lines = [ln for ln in tail.split(b"\n") if ln.startswith(b"#")]
    result["last_informs"] = [ln.decode(errors="replace")[:110] for ln in lines[-2:]]
    print(json.dumps(result), flush=True)


def run(kind: str, seconds: float, request: str) -> dict:
    python = KATCP093 if kind == "katcp093" else sys.executable
    proc = subprocess.Popen([python, os.path.abspath(__file__), "--serve", kind],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        normal = socket.create_connection(("127.0.0.1", port))
        buf = bytearray()
        _read_line(normal, buf, b"#version-connect katcp-device")

        def rtts(duration: float) -> list:
            out = []
            end = time.perf_counter() + duration
            while time.perf_counter() < end:
                t = time.perf_counter()
                normal.sendall(b"?watchdog\n")
                _read_line(normal, buf, b"!watchdog")
                out.append(time.perf_counter() - t)
            return out

        quiet = rtts(0.3)
        flooder = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--flood", str(port),
             "--request", request],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        flooder.stdout.readline()
        time.sleep(0.05)
        busy = rtts(seconds)
        flooder.stdin.close()
        flood = json.loads(flooder.stdout.readline() or "{}")
        flooder.wait(10)
        normal.close()
        return {"quiet": quiet, "busy": busy, "flood": flood}
    finally:
        proc.stdin.close()
        proc.wait(10)


def _ms(values: list, q: float) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return f"{1000 * values[min(len(values) - 1, int(q * len(values)))]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--request", default="watchdog")
    parser.add_argument("--servers", default="default,async,katcp093")
    parser.add_argument("--serve")
    parser.add_argument("--flood", type=int)
    args = parser.parse_args()
    if args.flood:
        flood(args.flood, args.request)
        return
    if args.serve:
        serve(args.serve)
        return
    print(f"normal client's ?watchdog round trip (ms) while a flooder pipelines "
          f"?{args.request} and never reads; {args.seconds:.0f} s")
    print(f"{'server':10} {'quiet med':>9} {'flood med':>9} {'p99':>8} {'max':>8} "
          f"{'n':>6} {'flooder connected':>18}  last informs to the flooder")
    for kind in args.servers.split(","):
        if kind == "katcp093" and not os.path.exists(KATCP093):
            print(f"{kind:10} (no interpreter at {KATCP093})")
            continue
        r = run(kind, args.seconds, args.request)
        cut = r["flood"]
        connected = (f"{cut['connected_s']:.2f} s" if "error" in cut
                     else f"> {cut.get('connected_s', 0):.1f} s (never cut)")
        print(f"{kind:10} {_ms(r['quiet'], 0.5):>9} {_ms(r['busy'], 0.5):>9} "
              f"{_ms(r['busy'], 0.99):>8} {_ms(r['busy'], 1.0):>8} {len(r['busy']):>6} "
              f"{connected:>18}  {' | '.join(cut.get('last_informs', []))}")
        print(f"{'':10} statistics.median={statistics.median(r['busy']) * 1000:.2f} ms, "
              f"flooder sent {cut.get('requests_sent', 0)} requests")


if __name__ == "__main__":
    main()
