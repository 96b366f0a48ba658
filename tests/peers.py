"""Helpers that run foreign KATCP peers for the client tests.

* :func:`aiokatcp_server_thread` runs an aiokatcp ``DeviceServer`` in a thread
  of this process (its own asyncio loop).
* :func:`aiokatcp_server_process` runs one in a subprocess (so that a test can
  kill it and start it again on the same port).
* :func:`katcp093_python` finds or creates a virtualenv with katcp-python
  0.9.3 at ``<repo>/.venv-peers/katcp093`` and :func:`katcp093_server_process`
  runs a katcp-python ``DeviceServer`` (KATCP v5, or v4 with ``v4=True``) in it.

Every wait is bounded; a peer that cannot be had makes the test skip with
the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import Iterator, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_VENV = os.path.join(ROOT, ".venv-peers", "katcp093")
STARTUP_TIMEOUT = 30.0

# ---------------------------------------------------------------- aiokatcp

AIOKATCP_SERVER_CODE = r'''
import asyncio
import sys
from typing import Tuple

import aiokatcp


class PeerServer(aiokatcp.DeviceServer):
    VERSION = "peer-server-1.0"
    BUILD_STATE = "peer-server-1.0.0"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sensors.add(aiokatcp.Sensor(int, "counter", "A counter", default=7,
                                         initial_status=aiokatcp.Sensor.Status.NOMINAL))

    async def request_echo(self, ctx, *args: str) -> Tuple[str, ...]:
        """Reply with the arguments."""
        return tuple(args)

    async def request_sleep(self, ctx, seconds: float) -> None:
        """Sleep, then reply ok."""
        await asyncio.sleep(seconds)

    async def request_informs(self, ctx, count: int) -> int:
        """Send `count` informs, then reply with the count."""
        for i in range(count):
            ctx.inform(i)
        return count

    async def request_broadcast(self, ctx, name: str) -> None:
        """Send an unsolicited inform #name to this client."""
        ctx.conn.write_message(aiokatcp.Message.inform(name, "hello"))

    async def request_drop(self, ctx) -> None:
        """Close this client's connection without replying."""
        ctx.conn.close()


def make_server(host, port):
    return PeerServer(host, port)
'''

_AIOKATCP_MAIN = r'''
async def _main(port):
    server = make_server("127.0.0.1", port)
    await server.start()
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.stop()

asyncio.run(_main(int(sys.argv[1])))
'''


def _aiokatcp_namespace() -> dict:
    namespace: dict = {"__name__": "aiokatcp_peer"}
    exec(compile(AIOKATCP_SERVER_CODE, "<aiokatcp-peer>", "exec", dont_inherit=True), namespace)
    return namespace


@contextlib.contextmanager
def aiokatcp_server_thread() -> Iterator[Tuple[object, int]]:
    """Run an aiokatcp DeviceServer on 127.0.0.1 (random port) in a thread.

    Yields
    ------
    (server, port)
    """
    make_server = _aiokatcp_namespace()["make_server"]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="aiokatcp-peer", daemon=True)
    thread.start()
    server = None

    async def _create():
        # aiokatcp binds to the running loop when constructed: build it there.
        srv = make_server("127.0.0.1", 0)
        await srv.start()
        return srv

    try:
        server = asyncio.run_coroutine_threadsafe(_create(), loop).result(10)
        port = server.sockets[0].getsockname()[1]
        yield server, port
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


def _read_port(proc: subprocess.Popen, timeout: float = STARTUP_TIMEOUT) -> int:
    """Read the port line a peer process prints; fail clearly on timeout."""
    result: list = []

    def _reader() -> None:
        result.append(proc.stdout.readline())

    reader = threading.Thread(target=_reader, daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0].strip():
        proc.kill()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"Peer server did not report its port within {timeout} s: {err[-2000:]}")
    return int(result[0])


class PeerProcess:
    """A KATCP server running in a subprocess.

    Attributes
    ----------
    port : int
        The port it listens on.
    """

    def __init__(self, argv: list, env: dict | None = None) -> None:
        self.argv = argv
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, port: int = 0) -> int:
        """Start the server (on `port`, 0 for any); return the port it got."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            self.proc = subprocess.Popen(
                self.argv + [str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self.env, cwd="/")
            try:
                self.port = _read_port(self.proc, max(deadline - time.monotonic(), 1.0))
                return self.port
            except RuntimeError:
                self.kill()
                # The port may still be held by the previous incarnation: retry.
                if port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        """Kill the server at once (the port is freed)."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(Exception):
                stream.close()
        self.proc = None

    def stop(self) -> None:
        """Stop the server gracefully (EOF on stdin), killing it if it lingers."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            proc.stdin.close()
        with contextlib.suppress(Exception):
            proc.wait(5)
        self.kill()


@contextlib.contextmanager
def aiokatcp_server_process(port: int = 0) -> Iterator[PeerProcess]:
    """Run an aiokatcp DeviceServer in a subprocess of this Python.

    Yields
    ------
    PeerProcess
        Started; ``.port`` is its port; ``.kill()``/``.start(port)`` restart it.
    """
    code = AIOKATCP_SERVER_CODE + _AIOKATCP_MAIN
    peer = PeerProcess([sys.executable, "-c", code])
    peer.start(port)
    try:
        yield peer
    finally:
        peer.stop()


# ---------------------------------------------------------------- katcp-python 0.9.3

KATCP093_SERVER_CODE = r'''
import sys
import threading

import katcp
from katcp import DeviceServer, ProtocolFlags, Sensor


class PeerServer(DeviceServer):
    VERSION_INFO = ("peer-server", 1, 0)
    BUILD_INFO = ("peer-server", 1, 0, "rc1")
    if sys.argv[1] == "v4":
        PROTOCOL_INFO = ProtocolFlags(4, 0, set([ProtocolFlags.MULTI_CLIENT]))

    def setup_sensors(self):
        sensor = Sensor.integer("counter", "A counter", "", [0, 100])
        sensor.set_value(7)
        self.add_sensor(sensor)

    def request_echo(self, req, msg):
        """Reply with the arguments."""
        return req.make_reply("ok", *msg.arguments)

    def request_informs(self, req, msg):
        """Send N informs, then reply with N."""
        count = int(msg.arguments[0])
        for i in range(count):
            req.inform(i)
        return req.make_reply("ok", count)


server = PeerServer("127.0.0.1", int(sys.argv[2]))
server.set_concurrency_options(thread_safe=False, handler_thread=False)
server.start(timeout=10)
print(server.bind_address[1], flush=True)
sys.stdin.read()
server.stop(timeout=5)
server.join(timeout=5)
'''

def katcp093_env() -> dict:
    """The environment for katcp-python 0.9.3's interpreter: ours without ``PYTHONPATH``.

    A ``PYTHONPATH`` that points at this package (as when the suite runs from a worktree)
    would make the peer's ``import katcp`` find ours instead of 0.9.3.
    """
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


_CHECK = "import katcp, sys; sys.exit(0 if katcp.__version__.startswith('0.9.3') else 1)"


def _python_ok(python: str) -> bool:
    if not os.path.exists(python):
        return False
    try:
        return subprocess.run([python, "-c", _CHECK], cwd="/", timeout=60, env=katcp093_env(),
                              capture_output=True).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_venv_lock = threading.Lock()
_venv_result: list = []


def katcp093_python() -> str:
    """Path of a Python with katcp-python 0.9.3; create the venv if needed.

    The venv lives at ``<repo>/.venv-peers/katcp093`` (``python -m venv`` +
    ``pip install katcp==0.9.3``). The test is skipped, with the reason, if
    it cannot be found or made.
    """
    with _venv_lock:
        if not _venv_result:
            _venv_result.append(_find_or_create_venv())
    python, reason = _venv_result[0]
    if python is None:
        pytest.skip(reason)
    return python


def _find_or_create_venv() -> Tuple[str | None, str]:
    candidates = [os.environ.get("KATCP093_PYTHON", ""),
                  os.path.join(PEER_VENV, "bin", "python")]
    for python in candidates:
        if python and _python_ok(python):
            return python, ""
    python = os.path.join(PEER_VENV, "bin", "python")
    try:
        os.makedirs(os.path.dirname(PEER_VENV), exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", PEER_VENV], check=True,
                       timeout=120, capture_output=True)
        proc = subprocess.run([python, "-m", "pip", "install", "-q", "katcp==0.9.3"],
                              timeout=300, capture_output=True)
        if proc.returncode != 0:
            return None, ("cannot install katcp==0.9.3 in {}: {}".format(PEER_VENV, proc.stderr.decode(errors="replace")[-500:]))
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot create the katcp 0.9.3 venv at {PEER_VENV}: {exc}"
    if not _python_ok(python):
        return None, f"katcp 0.9.3 venv at {PEER_VENV} does not import katcp 0.9.3"
    return python, ""


@contextlib.contextmanager
def katcp093_server_process(v4: bool = False) -> Iterator[PeerProcess]:
    """Run a katcp-python 0.9.3 DeviceServer (v5, or v4) in its venv.

    Yields
    ------
    PeerProcess
        Started; ``.port`` is its port.
    """
    python = katcp093_python()
    peer = PeerProcess([python, "-c", KATCP093_SERVER_CODE, "v4" if v4 else "v5"],
                       env=katcp093_env())
    peer.start(0)
    try:
        yield peer
    finally:
        peer.stop()
