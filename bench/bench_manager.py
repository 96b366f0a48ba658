#!/usr/bin/env python3
"""Manager benchmark: request RTT through the manager vs direct, and sensor-update throughput.

Three processes: a *fleet* (``--devices`` KATCP device servers with ``--sensors`` integer
sensors each, updated at ``--rate`` updates/s in total), the *manager* (``katcp-manager``
with a generated config) and this process, the client side.  It prints:

* the median RTT of ``?echo`` sent straight to device 0, through a *bare relay* (a fourth
  process: an asyncio protocol that copies bytes client <-> device, no parsing: what any
  proxy costs on this machine) and of ``?dev0-echo`` sent through the manager, by the same
  client in the same run, interleaved in blocks, with the ratios to direct (goal for the
  manager: <= 1.5) and the CPU per request of the manager, the relay and the device; with
  the fleet's sensors quiet (the updates start afterwards).  The table is printed twice:
  with the platform's CPU idle states, and with a PM QoS request of 0 us held
  (``/dev/cpu_dma_latency``, see ``pmqos.py``; needs root), under which idle vCPUs poll
  instead of halting, so that a wake-up costs a few microseconds instead of tens and the
  processes' own work decides;
* with ``--clients`` clients subscribed (``event``) to every proxied sensor, the fleet then
  updating: the upstream ``#sensor-status`` rate the manager received (= the updates the fleet
  made), the ``#sensor-status`` rate the clients received in total, the manager's CPU per
  upstream update and resident memory per proxied sensor; then the fleet pauses and every
  update made must have reached every client (exact totals) within a second: that is "kept
  up".

The issue's scale (100 devices x 1000 sensors, 10 clients, 100,000 updates/s) is the default;
``--quick`` runs a small fleet for a smoke test (the test suite never runs this file).

Usage::

    python bench/bench_manager.py [--quick] [--devices 100] [--sensors 1000] [--clients 10]
                                  [--rate 100000] [--duration 10] [--rtt-requests 2000]
                                  [--rtt-only] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

from pmqos import pm_qos_zero
from procstat import run_ns

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ fleet process

async def _serve_fleet(devices: int, sensors: int, rate: float, kind: str) -> None:
    if kind == "lines":
        ports, update = await _lines_fleet(devices, sensors)
    else:
        ports, update = await _server_fleet(devices, sensors)
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    # stdin: "go" starts the updates, "progress" prints how many were made, "pause" stops
    # updating and prints the final count, EOF stops.
    go, stop, pause = asyncio.Event(), asyncio.Event(), asyncio.Event()
    progress = {"updates": 0.0, "seconds": 0.0, "cpu_s": 0.0}
    cpu0 = time.process_time()

    def stdin_ready() -> None:
        line = sys.stdin.readline()
        progress["cpu_s"] = time.process_time() - cpu0
        if line.strip() == "progress":
            print(json.dumps(progress), flush=True)
        elif line.strip() == "pause":
            pause.set()
            print(json.dumps(progress), flush=True)
        elif line:
            go.set()
        else:
            stop.set()
            go.set()

    loop.add_reader(sys.stdin.fileno(), stdin_ready)
    await go.wait()
    tick = 0.01
    done = 0.0
    counter = 0
    start = loop.time()
    while not stop.is_set():
        if pause.is_set():
            await asyncio.sleep(tick)
            continue
        due = (loop.time() - start) * rate
        n = int(min(due - done, rate * tick * 5))
        update(counter, n)
        counter += n
        done += n
        progress.update(updates=done, seconds=loop.time() - start)
        await asyncio.sleep(tick)


async def _server_fleet(devices: int, sensors: int):
    """Our DeviceServer per device; an update is a Sensor.set_value."""
    import tornado.ioloop

    from katcp.core import ProtocolFlags, Sensor
    from katcp.kattypes import Str, request, return_reply
    from katcp.server import DeviceServer

    class Device(DeviceServer):
        VERSION_INFO = ("bench-device", 1, 0)
        BUILD_INFO = ("bench-device", 1, 0, "")
        PROTOCOL_INFO = ProtocolFlags(5, 1, set("MIB"))

        def setup_sensors(self) -> None:
            self.values = [Sensor.integer(f"s{i}", "Bench sensor", "", default=0,
                                          initial_status=Sensor.NOMINAL)
                           for i in range(sensors)]
            for sensor in self.values:
                self.add_sensor(sensor)

        @request(Str(multiple=True))
        @return_reply(Str(multiple=True))
        def request_echo(self, req, *words):
            """Echo the arguments."""
            return ("ok",) + words

    servers = []
    for _ in range(devices):
        server = Device("127.0.0.1", 0)
        server.set_concurrency_options(thread_safe=False, handler_thread=False)
        server.set_ioloop(tornado.ioloop.IOLoop.current())
        await server.start()
        servers.append(server)
    all_sensors = [sensor for server in servers for sensor in server.values]
    total = len(all_sensors)

    def update(counter: int, n: int) -> None:
        for k in range(counter, counter + n):
            all_sensors[k % total].set_value(k + 1)

    return [s.bind_address[1] for s in servers], update


class _LineDevice(asyncio.Protocol):
    """One connection to a KATCP device written for the bench: cheap updates, real protocol.

    It speaks KATCP 5.1 with message ids and bulk sampling over TCP as any device does
    (``#version-connect``, ``?help``, ``?sensor-list``, ``?sensor-sampling``, ``?watchdog``,
    ``?echo``), so the manager cannot tell it from another; but an update is one
    preformatted ``#sensor-status`` line appended to the tick's single write, not a
    Sensor.set_value through sampling strategies.  Every sampling strategy is taken for
    ``event`` (the bench asks for nothing else).
    """

    def __init__(self, sensors: int, peers: list) -> None:
        self.sensors = sensors
        self.peers = peers
        self.transport = None
        self.rest = b""

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"#version-connect katcp-protocol 5.1-MIB\n"
                        b"#version-connect katcp-library bench-lines 1.0\n"
                        b"#version-connect katcp-device bench-device 1.0\n")

    def connection_lost(self, exc) -> None:
        if self in self.peers:
            self.peers.remove(self)

    def data_received(self, data: bytes) -> None:
        *lines, self.rest = (self.rest + data).replace(b"\r", b"\n").split(b"\n")
        for line in lines:
            parts = line.split()
            if parts and parts[0][:1] == b"?":
                self.transport.write(self.answer(parts[0][1:], parts[1:]))

    def answer(self, head: bytes, args: list) -> bytes:
        name, _, mid = head.partition(b"[")
        tag = name + (b"[" + mid if mid else b"")
        if name == b"help":
            helps = {b"echo": b"Echo\\_the\\_arguments.", b"watchdog": b"Check\\_liveness.",
                     b"help": b"List\\_requests.", b"sensor-list": b"List\\_sensors.",
                     b"sensor-sampling": b"Set\\_sampling."}
            names = args[:1] or list(helps)
            if any(n not in helps for n in names):
                return b"!%s fail Unknown\\_request.\n" % tag
            return b"".join(b"#%s %s %s\n" % (tag, n, helps[n]) for n in names) + \
                b"!%s ok %d\n" % (tag, len(names))
        if name == b"sensor-list":
            indices = range(self.sensors)
            if args:
                index = self.index(args[0])
                if index is None:
                    return b"!%s fail Unknown\\_sensor.\n" % tag
                indices = range(index, index + 1)
            return b"".join(b"#%s s%d Bench\\_sensor \\@ integer\n" % (tag, i)
                            for i in indices) + b"!%s ok %d\n" % (tag, len(indices))
        if name == b"sensor-sampling" and len(args) >= 2:
            names = args[0].split(b",")
            if any(self.index(n) is None for n in names):
                return b"!%s fail Unknown\\_sensor.\n" % tag
            if self not in self.peers:
                self.peers.append(self)
            now = time.time()
            return b"!%s ok %s\n" % (tag, b" ".join(args)) + b"".join(
                b"#sensor-status %.6f 1 %s nominal 0\n" % (now, n) for n in names)
        if name == b"watchdog":
            return b"!%s ok\n" % tag
        if name == b"echo":
            return b" ".join([b"!%s ok" % tag] + args) + b"\n"
        return b"!%s invalid Unknown\\_request.\n" % tag

    def index(self, name: bytes):
        if name[:1] == b"s" and name[1:].isdigit() and int(name[1:]) < self.sensors:
            return int(name[1:])
        return None


async def _lines_fleet(devices: int, sensors: int):
    """Hand-written KATCP devices (see `_LineDevice`); an update is one formatted line."""
    loop = asyncio.get_running_loop()
    peers: list = [[] for _ in range(devices)]
    ports = []
    for d in range(devices):
        server = await loop.create_server(lambda d=d: _LineDevice(sensors, peers[d]),
                                          "127.0.0.1", 0)
        ports.append(server.sockets[0].getsockname()[1])
    total = devices * sensors
    clock = time.time

    def update(counter: int, n: int) -> None:
        # The updates of this tick, in the same round-robin order as the server fleet,
        # one write per subscribed connection of each device.
        now = clock()
        lines: list = [[] for _ in range(devices)]
        for k in range(counter, counter + n):
            device, sensor = divmod(k % total, sensors)
            lines[device].append(b"#sensor-status %.6f 1 s%d nominal %d\n" % (now, sensor,
                                                                              k + 1))
        for device, chunk in enumerate(lines):
            if chunk:
                data = b"".join(chunk)
                for peer in peers[device]:
                    peer.transport.write(data)

    return ports, update


# ------------------------------------------------------------------ bare relay process

class _RelayHalf(asyncio.Protocol):
    """One side of a relayed connection: what it reads is written to the other side."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _RelayHalf | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.other.transport.write(data)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.close()


class _RelayClientSide(_RelayHalf):
    """The client's side: dials the device, reading nothing until that is connected."""

    def __init__(self, device_port: int) -> None:
        super().__init__()
        self.device_port = device_port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]
        asyncio.ensure_future(self._dial())

    async def _dial(self) -> None:
        loop = asyncio.get_running_loop()
        _, device_side = await loop.create_connection(_RelayHalf, "127.0.0.1", self.device_port)
        device_side.other, self.other = self, device_side
        self.transport.resume_reading()  # type: ignore[union-attr]


async def _serve_relay(device_port: int) -> None:
    """Relay raw bytes between each client and the device (no parsing), until stdin closes."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _RelayClientSide(device_port), "127.0.0.1", 0)
    print(json.dumps(server.sockets[0].getsockname()[1]), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


# ------------------------------------------------------------------ helpers

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    return sum(_cpu_split(pid))


def _cpu_split(pid: int) -> Tuple[float, float]:
    """User and system CPU seconds of process `pid`."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class Lines:
    """A bare KATCP connection: send lines, read lines (no library in the measured path)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Lines:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2 ** 24)
        return cls(reader, writer)

    async def request(self, line: bytes, reply_prefix: bytes) -> bytes:
        self.writer.write(line)
        while True:
            got = await asyncio.wait_for(self.reader.readline(), 30)
            if not got:
                raise ConnectionError("closed")
            if got.startswith(reply_prefix):
                return got


async def _wait_manager(port: int, devices: int, sensors: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await Lines.open(port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        while True:
            conn.writer.write(b"?device-list\n")
            ready = 0
            while True:
                line = await asyncio.wait_for(conn.reader.readline(), 30)
                if line.startswith(b"!device-list"):
                    break
                parts = line.split()
                if line.startswith(b"#device-list") and parts[4] == b"up" and \
                        int(parts[5]) == sensors:
                    ready += 1
            if ready == devices:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {ready} of {devices} devices synced")
            await asyncio.sleep(0.5)
    finally:
        conn.writer.close()


async def _rtts(conn: Lines, line: bytes, prefix: bytes, n: int) -> List[float]:
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        await conn.request(line, prefix)
        out.append(clock() - t0)
    return out


#: The RTT paths: label, request line, reply prefix (the client sends to its own port).
_RTT_PATHS = (("direct", b"?echo x\n", b"!echo"),
              ("bare relay", b"?echo x\n", b"!echo"),
              ("manager", b"?dev0-echo x\n", b"!dev0-echo"))


async def _measure_rtt(ports: Tuple[int, int, int], pids: Tuple[int, int, int], n: int
                       ) -> Dict[str, Tuple[float, float, float, float]]:
    """Median RTT of each path and the CPU per request of its last hop: run time, and the
    user and system times (10 ms ticks, so only their split is meaningful in short runs).

    `ports` and `pids` are those of the device, the relay and the manager, in the order of
    `_RTT_PATHS`; the paths take turns in 10 blocks of ``n / 10`` requests.
    """
    conns = [await Lines.open(port) for port in ports]
    for conn, (_, line, prefix) in zip(conns, _RTT_PATHS):
        await _rtts(conn, line, prefix, 100)       # warm up
    block = max(n // 10, 1)
    rtts: List[List[float]] = [[] for _ in _RTT_PATHS]
    cpu = [[0.0, 0.0, 0.0] for _ in _RTT_PATHS]
    for _ in range(10):
        for i, (conn, (_, line, prefix)) in enumerate(zip(conns, _RTT_PATHS)):
            ran0, (user0, system0) = (run_ns(pids[i]) or 0), _cpu_split(pids[i])
            rtts[i] += await _rtts(conn, line, prefix, block)
            ran1, (user1, system1) = (run_ns(pids[i]) or 0), _cpu_split(pids[i])
            cpu[i][0] += (ran1 - ran0) * 1e-9
            cpu[i][1] += user1 - user0
            cpu[i][2] += system1 - system0
    for conn in conns:
        conn.writer.close()
    return {label: (statistics.median(rtts[i]), cpu[i][0] / len(rtts[i]),
                    cpu[i][1] / len(rtts[i]), cpu[i][2] / len(rtts[i]))
            for i, (label, _, _) in enumerate(_RTT_PATHS)}


def _print_rtt(title: str, result: Dict[str, Tuple[float, float, float, float]]) -> None:
    direct = result["direct"][0]
    print(title)
    whose = {"direct": "device", "bare relay": "relay", "manager": "manager"}
    for label, (rtt, ran, user, system) in result.items():
        ratio = "" if label == "direct" else f"  {rtt / direct:5.2f} x direct"
        print(f"  RTT {label:<10}: {rtt * 1e6:7.1f} us (median){ratio:<17}  "
              f"{whose[label]} CPU/request {ran * 1e6:6.1f} us "
              f"(ticks: user {user * 1e6:.0f}, system {system * 1e6:.0f})")
    floor = result["bare relay"][0] / direct
    via = result["manager"][0] / direct
    print(f"  manager/direct {via:.2f} (goal <= 1.5); bare relay/direct {floor:.2f}: the "
          f"manager adds {(result['manager'][0] - result['bare relay'][0]) * 1e6:.1f} us "
          f"to a bare relay")


async def _subscribe_and_count(port: int, devices: int, sensors: int, clients: int,
                               duration: float, fleet: subprocess.Popen, manager_pid: int
                               ) -> dict:
    conns = [await Lines.open(port) for _ in range(clients)]
    counts = [0] * clients
    replies = [0] * clients

    async def count(i: int, conn: Lines) -> None:
        # Whole lines only: a line split between two reads is counted once.
        reader = conn.reader
        rest = b""
        while True:
            chunk = await reader.read(2 ** 20)
            if not chunk:
                return
            end = chunk.rfind(b"\n") + 1
            lines, rest = rest + chunk[:end], chunk[end:] if end else rest + chunk
            if end:
                counts[i] += lines.count(b"#sensor-status")
                replies[i] += lines.count(b"!sensor-sampling ok")

    # Read from the start: the first reports of 100,000 subscriptions would overflow the
    # manager's write buffer of a client that is not read meanwhile.
    tasks = [asyncio.ensure_future(count(i, c)) for i, c in enumerate(conns)]
    for conn in conns:
        for d in range(devices):
            names = ",".join(f"dev{d}.s{i}" for i in range(sensors))
            conn.writer.write(f"?sensor-sampling {names} event\n".encode())
    # Every subscription first reports the current reading: wait until those have arrived.
    deadline = time.monotonic() + 600
    while (min(replies) < devices or min(counts) < devices * sensors) and \
            time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if min(replies) < devices:
        raise RuntimeError(f"subscriptions incomplete: {replies} of {devices} replies")
    await asyncio.sleep(0.5)
    # The fleet starts updating only now: every update it makes from here on must reach
    # every client, so the totals can be compared exactly once it pauses.
    base = list(counts)
    cpu_go = _cpu_seconds(manager_pid)
    fleet.stdin.write("go\n")
    fleet.stdin.flush()
    await asyncio.sleep(1.0)
    fleet_start = await _fleet_progress(fleet)
    window_base = sum(counts)
    cpu0 = _cpu_seconds(manager_pid)
    rss_peak = _rss_bytes(manager_pid)
    t0 = time.monotonic()
    for _ in range(int(duration * 2)):
        await asyncio.sleep(0.5)
        rss_peak = max(rss_peak, _rss_bytes(manager_pid))
    elapsed = time.monotonic() - t0
    cpu1 = _cpu_seconds(manager_pid)
    received_in_window = sum(counts) - window_base
    fleet_end = await _fleet_progress(fleet, "pause")
    # Drain: the updates made up to the pause must all arrive (each is a change, and every
    # client has every sensor on "event"); the time it takes is the backlog at the pause.
    made = fleet_end["updates"] - fleet_start["updates"]
    expected_total = fleet_end["updates"] * clients
    t_pause = time.monotonic()
    last, last_change = sum(counts), t_pause
    while sum(counts) - sum(base) < expected_total and time.monotonic() - last_change < 5:
        await asyncio.sleep(0.05)
        if sum(counts) != last:
            last, last_change = sum(counts), time.monotonic()
    drain_s = time.monotonic() - t_pause
    # All the work for all the updates (each delivered to every client), whatever the
    # manager's share of a busy machine was meanwhile.
    cpu_all = _cpu_seconds(manager_pid) - cpu_go
    delivered_total = sum(counts) - sum(base)
    for task in tasks:
        task.cancel()
    for conn in conns:
        conn.writer.close()
    produced = made / max(fleet_end["seconds"] - fleet_start["seconds"], 1e-9)
    return {"produced_per_s": produced, "received_per_s": received_in_window / elapsed,
            "manager_cpu_s_per_s": (cpu1 - cpu0) / elapsed,
            "manager_cpu_us_per_update": 1e6 * cpu_all / max(fleet_end["updates"], 1),
            "fleet_cpu_us_per_update": 1e6 * (fleet_end["cpu_s"] - fleet_start["cpu_s"])
            / max(made, 1),
            "updates_total": fleet_end["updates"],
            "expected_total": expected_total, "delivered_total": delivered_total,
            "drain_s": drain_s, "rss_peak": rss_peak}


async def _fleet_progress(fleet: subprocess.Popen, command: str = "progress") -> dict:
    """Ask the fleet how many updates it has made (without blocking the event loop)."""
    fleet.stdin.write(command + "\n")
    fleet.stdin.flush()
    line = await asyncio.get_running_loop().run_in_executor(None, fleet.stdout.readline)
    return json.loads(line)


async def _client_main(args: argparse.Namespace) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    fleet = subprocess.Popen(
        [sys.executable, __file__, "--serve-fleet", str(args.devices), str(args.sensors),
         str(args.rate), args.fleet], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        text=True)
    ports = json.loads(fleet.stdout.readline())
    manager_port = _free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(f'[manager]\nlisten = "127.0.0.1:{manager_port}"\n')
        for d, port in enumerate(ports):
            config.write(f'[devices.dev{d}]\nkatcp = "127.0.0.1:{port}"\nstrategy = "event"\n')
    empty_port = _free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as empty:
        empty.write(f'[manager]\nlisten = "127.0.0.1:{empty_port}"\n')
    cli = [sys.executable, "-m", "katcp.manager.cli", "--log-level", "WARNING", "--config"]
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    baseline = subprocess.Popen(cli + [empty.name], env=env, stderr=subprocess.DEVNULL)
    manager = subprocess.Popen(cli[:1] + profile + cli[1:] + [config.name], env=env,
                               stderr=subprocess.DEVNULL)
    relay = subprocess.Popen([sys.executable, __file__, "--serve-relay", str(ports[0])],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    relay_port = json.loads(relay.stdout.readline())
    try:
        await _wait_manager(empty_port, 0, 0, 30)
        t0 = time.monotonic()
        await _wait_manager(manager_port, args.devices, args.sensors, 600)
        sync_s = time.monotonic() - t0
        rss_per_sensor = (_rss_bytes(manager.pid) - _rss_bytes(baseline.pid)) / (
            args.devices * args.sensors)
        print(f"fleet ({args.fleet}): {args.devices} devices x {args.sensors} sensors; manager synced in "
              f"{sync_s:.1f} s")
        rtt_ports = (ports[0], relay_port, manager_port)
        rtt_pids = (fleet.pid, relay.pid, manager.pid)
        print(f"load average: {os.getloadavg()[0]:.2f}")
        _print_rtt(f"?echo round trips, {args.rtt_requests} per path, with the platform's "
                   "CPU idle states:",
                   await _measure_rtt(rtt_ports, rtt_pids, args.rtt_requests))
        with pm_qos_zero() as qos:
            if qos:
                _print_rtt(f"the same with a PM QoS request of 0 us held ({qos}: idle "
                           "vCPUs poll, wake-ups are cheap):",
                           await _measure_rtt(rtt_ports, rtt_pids, args.rtt_requests))
            else:
                print(f"PM QoS request {qos}: no second table")
        print(f"load average: {os.getloadavg()[0]:.2f}")
        if args.rtt_only:
            return
        print(f"manager RSS per proxied sensor: {rss_per_sensor / 1024:.2f} KiB")
        result = await _subscribe_and_count(manager_port, args.devices, args.sensors,
                                            args.clients, args.duration, fleet, manager.pid)
        produced = result["produced_per_s"]
        received = result["received_per_s"]
        expected = produced * args.clients
        print(f"upstream #sensor-status received by the manager (= updates made by the "
              f"fleet): {produced:.0f} /s (asked {args.rate:.0f})")
        print(f"#sensor-status delivered to the {args.clients} clients in total: "
              f"{received:.0f} /s = {received / max(produced, 1):.2f} x upstream "
              f"({100 * received / max(expected, 1):.0f}% of {expected:.0f} expected)")
        print(f"manager CPU in the window: {result['manager_cpu_s_per_s'] * 100:.0f}% of a core")
        print(f"fleet ({args.fleet}) CPU per update made: "
              f"{result['fleet_cpu_us_per_update']:.1f} us")
        print(f"manager CPU per upstream update (incl. its {args.clients}-way fan-out), from go "
              f"to the last delivery: {result['manager_cpu_us_per_update']:.1f} us over "
              f"{result['updates_total']:.0f} updates; one core would sustain "
              f"{1e6 / max(result['manager_cpu_us_per_update'], 1e-9):.0f} updates/s")
        print(f"after the fleet paused: {result['delivered_total']:.0f} of "
              f"{result['expected_total']:.0f} expected #sensor-status delivered, backlog "
              f"drained in {result['drain_s']:.1f} s")
        print(f"manager RSS peak: {result['rss_peak'] / 2 ** 20:.0f} MiB")
        kept_up = received >= 0.95 * expected and result["drain_s"] < 1.0 and \
            result["delivered_total"] >= result["expected_total"]
        print(f"manager kept up (>= 95% delivered in the window, all delivered, backlog "
              f"< 1 s): {'yes' if kept_up else 'NO'}")
    finally:
        relay.stdin.close()
        for proc in (manager, baseline, relay):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        fleet.stdin.close()
        try:
            fleet.wait(10)
        except subprocess.TimeoutExpired:
            fleet.kill()
        os.unlink(config.name)
        os.unlink(empty.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small fleet: 4 devices x 100 sensors, 2 clients, 2000 updates/s")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100_000, help="fleet updates/s in total")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rtt-requests", type=int, default=2000)
    parser.add_argument("--rtt-only", action="store_true",
                        help="measure the round trips only (no throughput part)")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the manager under cProfile, writing the stats to FILE")
    parser.add_argument("--fleet", choices=("server", "lines"), default="server",
                        help="server: our DeviceServer per device, each update a "
                        "Sensor.set_value (default); lines: hand-written KATCP devices over "
                        "TCP whose updates are preformatted #sensor-status lines (cheaper, "
                        "for rates the server fleet cannot make on this machine)")
    parser.add_argument("--serve-fleet", nargs=4, metavar=("DEVICES", "SENSORS", "RATE", "KIND"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--serve-relay", type=int, metavar="DEVICE_PORT",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_relay:
        asyncio.run(_serve_relay(args.serve_relay))
        return
    if args.serve_fleet:
        devices, sensors, rate, kind = args.serve_fleet
        asyncio.run(_serve_fleet(int(devices), int(sensors), float(rate), kind))
        return
    if args.quick:
        args.devices, args.sensors, args.clients = 4, 100, 2
        args.rate, args.duration, args.rtt_requests = 2000.0, 3.0, 1000
    asyncio.run(_client_main(args))


if __name__ == "__main__":
    main()
