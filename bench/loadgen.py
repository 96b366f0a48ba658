#!/usr/bin/env python3
"""Bare-socket KATCP load generator (run it in a process of its own).

Modes (each prints one JSON object on stdout when done):

``watchdog``
    Sends ``--requests`` pipelined ``?watchdog[id]`` requests on ``--connections``
    connections (default 1), keeping ``--inflight`` requests outstanding on each, and
    counts the ``!watchdog[id] ok`` replies.  Reports ``replies``, ``seconds`` and ``rate``
    (replies/s, all connections together).
``sensors``
    Opens ``--clients`` connections, sets the ``event`` strategy on ``--sensors`` sensors
    named ``s0``, ``s1``, ... on each (pipelined ``?sensor-sampling`` requests), then asks
    the server (``?bench-update rounds``) to change every sensor ``--rounds`` times and
    counts the ``#sensor-status`` informs that arrive.  With ``--sync`` it prints
    ``{"phase": "ready"}`` after the set-up and waits for a line on stdin before the updates.  Reports ``informs``, ``seconds``
    and ``rate`` (informs/s, all clients together).  The server must implement
    ``?bench-update``.
``idle``
    Opens ``--clients`` connections, prints ``{"connected": n}`` and keeps them open, idle,
    until a line arrives on stdin (or ``--hold`` seconds pass).

Every wait is bounded by ``--timeout`` seconds; the program exits non-zero on failure.

Usage::

    python bench/loadgen.py watchdog --port 7147 --requests 20000
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import selectors
import socket
import sys
import time
from typing import List


#: One ``!watchdog[id] ok`` reply line (at the start of a line); group 1 is the id.
_OK_REPLY = re.compile(rb"^!watchdog\[(\d+)\] ok$", re.MULTILINE)


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    return sock


class _WatchdogStream:
    """One connection's pipelined ``?watchdog[id]`` requests: ids sent, replies checked."""

    def __init__(self, sock: socket.socket, requests: int) -> None:
        self.sock = sock
        self.requests = requests
        self.sent = 0
        self.replies = 0
        self.bad = 0
        self.tail = b""
        self.seen = bytearray(requests + 1)  # every id must be answered exactly once

    def send(self, k: int) -> None:
        """Send the next ``k`` requests (fewer if that would pass ``requests``)."""
        k = min(k, self.requests - self.sent)
        if k > 0:
            first = self.sent + 1
            self.sent += k
            self.sock.sendall(b"".join(b"?watchdog[%d]\n" % i for i in range(first, first + k)))

    def feed(self, data: bytes) -> int:
        """Count and check the replies in ``data``; return how many arrived."""
        chunk = self.tail + data
        cut = chunk.rfind(b"\n") + 1
        self.tail = chunk[cut:]
        body = chunk[:cut]
        # The scanning is done in C (count, findall), so that the load generator costs
        # less per request than the servers it measures; a reply that is not
        # ``!watchdog[id] ok`` counts as bad.
        got = body.count(b"!watchdog[")
        ids = _OK_REPLY.findall(body)
        bad = got - len(ids)
        seen = self.seen
        sent = self.sent
        for mid in map(int, ids):
            if 0 < mid <= sent and not seen[mid]:
                seen[mid] = 1
            else:
                bad += 1
        self.bad += bad
        self.replies += got
        return got

    @property
    def done(self) -> bool:
        return self.replies >= self.requests


def run_watchdog(host: str, port: int, requests: int, inflight: int, timeout: float,
                 connections: int = 1) -> dict:
    """Pipelined ``?watchdog[id]`` requests, ``inflight`` outstanding on each of
    ``connections`` connections (``requests`` in all); return the figures."""
    per_conn = [requests // connections + (i < requests % connections)
                for i in range(connections)]
    streams = [_WatchdogStream(_connect(host, port, timeout), n) for n in per_conn]
    sel = selectors.DefaultSelector()
    for stream in streams:
        sel.register(stream.sock, selectors.EVENT_READ, stream)
    start = time.perf_counter()
    deadline = start + timeout
    for stream in streams:
        stream.send(inflight)
    remaining = sum(1 for stream in streams if not stream.done)
    try:
        while remaining:
            left = deadline - time.perf_counter()
            if left <= 0:
                replies = sum(s.replies for s in streams)
                raise TimeoutError(f"only {replies} of {requests} replies within {timeout} s")
            for key, _ in sel.select(min(left, 1.0)):
                stream = key.data
                data = stream.sock.recv(262144)
                if not data:
                    raise ConnectionError(
                        f"server closed a connection after {stream.replies} replies")
                stream.send(stream.feed(data))
                if stream.done:
                    remaining -= 1
                    sel.unregister(stream.sock)
        seconds = time.perf_counter() - start
    finally:
        sel.close()
        for stream in streams:
            stream.sock.close()
    bad = sum(s.bad for s in streams)
    if bad:
        raise RuntimeError(f"{bad} replies were not ok, unexpected or duplicated")
    replies = sum(s.replies for s in streams)
    return {"mode": "watchdog", "connections": connections, "replies": replies,
            "seconds": seconds, "rate": replies / seconds}


class _LineCounter:
    """Counts lines starting with given prefixes in a byte stream."""

    def __init__(self, prefixes: List[bytes]) -> None:
        self.prefixes = prefixes
        self.counts = [0] * len(prefixes)
        self.tail = b""

    def feed(self, data: bytes) -> None:
        chunk = self.tail + data
        cut = chunk.rfind(b"\n") + 1
        self.tail = chunk[cut:]
        body = chunk[:cut]
        for k, prefix in enumerate(self.prefixes):
            n = body.count(b"\n" + prefix)
            if body.startswith(prefix):
                n += 1
            self.counts[k] += n


def _read_until(socks: List[socket.socket], prefixes: List[bytes], targets: List[int],
                deadline: float) -> List[_LineCounter]:
    """Read from all sockets until each has seen ``targets[k]`` lines with ``prefixes[k]``."""
    counters = [_LineCounter(prefixes) for _ in socks]
    sel = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, i)

    def done(c: _LineCounter) -> bool:
        return all(n >= t for n, t in zip(c.counts, targets))

    try:
        remaining = len(socks)
        while remaining:
            left = deadline - time.perf_counter()
            if left <= 0:
                got = [c.counts for c in counters]
                raise TimeoutError(f"got {got} of {targets} {prefixes!r} lines in time")
            for key, _ in sel.select(min(left, 1.0)):
                i = key.data
                data = socks[i].recv(1 << 20)
                if not data:
                    raise ConnectionError(f"connection {i} closed by server")
                before = done(counters[i])
                counters[i].feed(data)
                if not before and done(counters[i]):
                    remaining -= 1
    finally:
        sel.close()
        for sock in socks:
            sock.setblocking(True)
    return counters


def run_sensors(host: str, port: int, clients: int, sensors: int, rounds: int,
                timeout: float, sync: bool = False) -> dict:
    """Event-strategy sampling on many sensors and clients; return inform figures."""
    deadline = time.perf_counter() + timeout
    socks = [_connect(host, port, timeout) for _ in range(clients)]
    # Set the event strategy on every sensor for every client (pipelined); each sends one
    # reply and one initial #sensor-status per sensor.
    for sock in socks:
        sock.sendall(b"".join(b"?sensor-sampling s%d event\n" % j for j in range(sensors)))
    _read_until(socks, [b"!sensor-sampling", b"#sensor-status"], [sensors, sensors], deadline)
    if sync:  # let the caller take measurements before the updates start
        print(json.dumps({"mode": "sensors", "phase": "ready"}), flush=True)
        sys.stdin.readline()
    expected = sensors * rounds
    start = time.perf_counter()
    socks[0].sendall(b"?bench-update %d\n" % rounds)
    counters = _read_until(socks, [b"#sensor-status"], [expected], deadline)
    seconds = time.perf_counter() - start
    for sock in socks:
        _drain(sock)
        sock.close()
    total = sum(c.counts[0] for c in counters)
    return {"mode": "sensors", "informs": total, "seconds": seconds, "rate": total / seconds}


def run_idle(host: str, port: int, clients: int, hold: float, timeout: float) -> dict:
    """Open idle connections (each has received its greeting) and keep them until stdin.

    What the server sends meanwhile (a KATCP server announces every new client to the
    others with ``#client-connected``) is read as it comes, while connecting too, and until
    the connections are quiet: they are idle when "connected" is printed, with nothing
    left for the server to send.
    """
    deadline = time.perf_counter() + timeout
    socks: List[socket.socket] = []
    sel = selectors.DefaultSelector()
    greeted = 0  # connections that sent something: the server greets each one first

    def read_ready(wait: float) -> int:
        nonlocal greeted
        got = 0
        for key, _ in sel.select(wait):
            try:
                data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("connection closed by server")
            if not key.data:
                greeted += 1
                sel.modify(key.fileobj, selectors.EVENT_READ, True)
            got += len(data)
        return got

    for i in range(clients):
        sock = _connect(host, port, timeout)
        sock.setblocking(False)
        socks.append(sock)
        sel.register(sock, selectors.EVENT_READ, False)
        if i % 100 == 99:
            read_ready(0)
    quiet_since = time.perf_counter()
    while greeted < clients or time.perf_counter() - quiet_since < 0.5:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{greeted} of {clients} connections greeted, or not quiet, "
                               "in time")
        if read_ready(0.1):
            quiet_since = time.perf_counter()
    sel.close()
    print(json.dumps({"mode": "idle", "connected": len(socks)}), flush=True)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    sel.select(hold)
    sel.close()
    for sock in socks:
        _drain(sock)  # unread data would make close() send a reset
        sock.close()
    return {"mode": "idle", "closed": len(socks)}


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 65536
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("watchdog", "sensors", "idle"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--connections", type=int, default=1,
                        help="watchdog: connections, each with --inflight outstanding")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--sync", action="store_true",
                        help="sensors: print a ready line after set-up, wait for a stdin line")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    _raise_fd_limit()
    if args.mode == "watchdog":
        result = run_watchdog(args.host, args.port, args.requests, args.inflight, args.timeout,
                              args.connections)
    elif args.mode == "sensors":
        result = run_sensors(args.host, args.port, args.clients, args.sensors, args.rounds,
                             args.timeout, args.sync)
    else:
        result = run_idle(args.host, args.port, args.clients, args.hold, args.timeout)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
