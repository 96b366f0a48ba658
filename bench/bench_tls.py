"""TLS benchmark: round-trip time and throughput over TLS and plaintext, side by side.

One ``katcp.DeviceServer`` with an ``?echo`` request runs in a subprocess and listens twice
on 127.0.0.1: plain TCP and TLS (a fresh CA-signed certificate, ECDSA P-256, made with
``katcp._security.certs``). Measured in the same run, plain and TLS interleaved block by
block so that machine load hits both alike (medians of per-block means):

1. sequential request RTT with ``AsyncClient.future_request`` (goal: TLS <= 1.3x plain);
2. sequential request RTT with ``BlockingClient.blocking_request`` from a plain thread;
3. the CPU time (client and server processes together) per request of 1 and 2, which
   machine load disturbs much less than the wall-clock RTT;
4. throughput: ``--window`` requests in flight with a ``--payload``-byte argument, in
   requests/s and MB/s of request + reply bytes.

Usage: ``python bench/bench_tls.py [--requests N] [--blocks N] [--window N] [--payload N]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import tornado.ioloop  # noqa: E402

from katcp._security import certs  # noqa: E402
from katcp._security.tls import client_context  # noqa: E402
from katcp.client import AsyncClient, BlockingClient  # noqa: E402
from katcp.core import Message  # noqa: E402

SERVER = r'''
import sys
sys.path.insert(0, sys.argv[1])
from katcp.server import DeviceServer
from katcp._security.tls import server_context

class Server(DeviceServer):
    VERSION_INFO = ("bench", 1, 0)
    BUILD_INFO = ("bench", 1, 0, "")

    def setup_sensors(self):
        pass

    def request_echo(self, req, msg):
        """Reply with the arguments."""
        return req.make_reply("ok", *msg.arguments)

servers = [Server("127.0.0.1", 0),
           Server("127.0.0.1", 0, ssl=server_context(sys.argv[2], sys.argv[3]))]
for server in servers:
    server.set_concurrency_options(thread_safe=False, handler_thread=False)
    server.start(timeout=10)
print(servers[0].bind_address[1], servers[1].bind_address[1], flush=True)
import time
for line in sys.stdin:  # each line asks for the CPU time used so far
    print(time.process_time(), flush=True)
for server in servers:
    server.stop(timeout=5)
    server.join(timeout=5)
'''


class ServerProcess:
    """The two benchmark servers in a subprocess: ``plain_port`` and ``tls_port``."""

    def __init__(self, cert: str, key: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, ROOT, cert, key],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/")
        line: list = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(30)
        if not line or not line[0].strip():
            self.proc.kill()
            raise RuntimeError("benchmark server did not start")
        self.plain_port, self.tls_port = (int(p) for p in line[0].split())

    def cpu(self) -> float:
        """CPU seconds the server process has used so far."""
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)


def make_certificates(directory: str) -> tuple:
    """``(ca, cert, key)`` paths: a CA and a server certificate for 127.0.0.1 it signed."""
    ca_key = certs.generate_key()
    ca = certs.make_certificate(ca_key, "Bench CA", days=1)
    key = certs.generate_key()
    cert = certs.make_certificate(key, "localhost", hostnames=["127.0.0.1"], days=1,
                                  issuer=(ca, ca_key))
    paths = tuple(os.path.join(directory, n) for n in ("ca.crt", "server.crt", "server.key"))
    certs.write_certificate(paths[0], ca)
    certs.write_certificate(paths[1], cert)
    certs.write_key(paths[2], key)
    return paths


async def _async_client(port: int, ssl_ctx) -> AsyncClient:
    client = AsyncClient("127.0.0.1", port, timeout=30, ssl=ssl_ctx)
    client.set_ioloop(tornado.ioloop.IOLoop.current())
    client.start()
    await client.until_protocol(timeout=10)
    return client


def _cpu_now(server_cpu) -> float:
    return time.process_time() + server_cpu()


async def async_rtt(ports: dict, ctx, requests: int, blocks: int, server_cpu) -> tuple:
    """Per-block mean RTT and CPU time (client + server) of sequential ``future_request``s."""
    clients = {name: await _async_client(port, ctx if name == "tls" else None)
               for name, port in ports.items()}
    samples: dict = {name: [] for name in clients}
    cpu: dict = {name: [] for name in clients}
    block = max(requests // blocks, 1)
    for client in clients.values():  # warm up
        for _ in range(100):
            await client.future_request(Message.request("echo", "x"))
    for _ in range(blocks):
        for name, client in clients.items():
            c0 = _cpu_now(server_cpu)
            t0 = time.perf_counter()
            for _ in range(block):
                reply, _ = await client.future_request(Message.request("echo", "x"))
            samples[name].append((time.perf_counter() - t0) / block)
            cpu[name].append((_cpu_now(server_cpu) - c0) / block)
            assert reply.reply_ok(), reply
    for client in clients.values():
        client.stop()
        await client.until_stopped(timeout=10)
    return samples, cpu


def blocking_rtt(ports: dict, ctx, requests: int, blocks: int, server_cpu) -> tuple:
    """Per-block mean RTT and CPU time of sequential ``blocking_request``s from this thread."""
    clients = {}
    for name, port in ports.items():
        client = BlockingClient("127.0.0.1", port, timeout=30,
                                ssl=ctx if name == "tls" else None)
        client.start()
        client.wait_protocol(10)
        clients[name] = client
    samples: dict = {name: [] for name in clients}
    cpu: dict = {name: [] for name in clients}
    block = max(requests // blocks, 1)
    for client in clients.values():
        for _ in range(100):
            client.blocking_request(Message.request("echo", "x"))
    for _ in range(blocks):
        for name, client in clients.items():
            c0 = _cpu_now(server_cpu)
            t0 = time.perf_counter()
            for _ in range(block):
                reply, _ = client.blocking_request(Message.request("echo", "x"))
            samples[name].append((time.perf_counter() - t0) / block)
            cpu[name].append((_cpu_now(server_cpu) - c0) / block)
            assert reply.reply_ok(), reply
    for client in clients.values():
        client.stop()
        client.join(10)
    return samples, cpu


async def throughput(ports: dict, ctx, requests: int, blocks: int, window: int,
                     payload: int) -> dict:
    """Per-block requests/s with ``window`` requests in flight, plain and TLS interleaved."""
    clients = {name: await _async_client(port, ctx if name == "tls" else None)
               for name, port in ports.items()}
    samples: dict = {name: [] for name in clients}
    block = max(requests // blocks, window)
    data = b"p" * payload

    async def run(client: AsyncClient, count: int) -> None:
        sent = 0
        pending: set = set()
        while sent < count or pending:
            while sent < count and len(pending) < window:
                pending.add(asyncio.ensure_future(
                    client.future_request(Message.request("echo", data))))
                sent += 1
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                assert fut.result()[0].reply_ok()

    for client in clients.values():
        await run(client, window * 2)
    for _ in range(blocks):
        for name, client in clients.items():
            t0 = time.perf_counter()
            await run(client, block)
            samples[name].append(block / (time.perf_counter() - t0))
    for client in clients.values():
        client.stop()
        await client.until_stopped(timeout=10)
    return samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000,
                        help="requests per measurement and connection (default 4000)")
    parser.add_argument("--blocks", type=int, default=10,
                        help="blocks the requests are split into (default 10)")
    parser.add_argument("--window", type=int, default=64,
                        help="requests in flight for the throughput test (default 64)")
    parser.add_argument("--payload", type=int, default=1024,
                        help="bytes of argument per throughput request (default 1024)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = make_certificates(tmp)
        ctx = client_context(cafile=ca)
        server = ServerProcess(cert, key)
        try:
            ports = {"plain": server.plain_port, "tls": server.tls_port}
            a, a_cpu = asyncio.run(async_rtt(ports, ctx, args.requests, args.blocks,
                                             server.cpu))
            b, b_cpu = blocking_rtt(ports, ctx, args.requests, args.blocks, server.cpu)
            t = asyncio.run(throughput(ports, ctx, args.requests, args.blocks, args.window,
                                       args.payload))
        finally:
            server.close()
    print(f"TLS: {ssl_version()}; {args.requests} requests x {args.blocks} blocks, medians")
    print(f"{'measurement':<34}{'plain':>12}{'TLS':>12}{'TLS/plain':>11}")
    for label, samples, unit, scale in (
            ("AsyncClient RTT", a, "us", 1e6),
            ("AsyncClient CPU/request", a_cpu, "us", 1e6),
            ("BlockingClient RTT", b, "us", 1e6),
            ("BlockingClient CPU/request", b_cpu, "us", 1e6)):
        plain, tls = (statistics.median(samples[k]) * scale for k in ("plain", "tls"))
        print(f"{label + ' (' + unit + ')':<34}{plain:>12.1f}{tls:>12.1f}{tls / plain:>10.2f}x")
    plain, tls = (statistics.median(t[k]) for k in ("plain", "tls"))
    print(f"{'Throughput (requests/s)':<34}{plain:>12.0f}{tls:>12.0f}{tls / plain:>10.2f}x")
    wire = 2 * (args.payload + 16) / 1e6  # request + reply line, MB
    print(f"{'Throughput (MB/s)':<34}{plain * wire:>12.1f}{tls * wire:>12.1f}"
          f"{tls / plain:>10.2f}x")
    ratio = statistics.median(a["tls"]) / statistics.median(a["plain"])
    print(f"Goal AsyncClient TLS RTT <= 1.3x plain: {'met' if ratio <= 1.3 else 'NOT met'} "
          f"({ratio:.2f}x)")
    return 0


def ssl_version() -> str:
    import ssl
    return ssl.OPENSSL_VERSION


if __name__ == "__main__":
    sys.exit(main())
