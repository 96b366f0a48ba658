"""Quick-start demo: start the example instrument and talk to it with a ``BlockingClient``.

Run it as ``python -m katcp.tools.demo`` (``python3 dev.py demo`` sets up a virtualenv and
does exactly that).  It starts the example instrument in a child process, runs a short
session that shows the request list, a few sensor values and a typed request, and then
leaves the instrument running so that you can explore it by hand until you press Ctrl-C.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

from katcp import BlockingClient, Message

DEFAULT_PORT = 7147


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _wait_listening(host: str, port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the example instrument exited with status {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the example instrument did not listen on {host}:{port} in {timeout} s")


def _request(client: BlockingClient, name: str, *args) -> Tuple[Message, List[Message]]:
    return client.blocking_request(Message.request(name, *args), timeout=10)


def _show(reply: Message, informs: List[Message]) -> None:
    for inform in informs:
        print("   ", inform)
    print("   ", reply)


def session(host: str, port: int) -> None:
    """Run the demo client session against the instrument at ``host:port``."""
    client = BlockingClient(host, port)
    client.start()
    try:
        if not client.wait_protocol(timeout=10):
            raise RuntimeError(f"no KATCP protocol information from {host}:{port}")
        print(f"Connected to {host}:{port}; server protocol flags: {client.protocol_flags}")

        print("\n?help: the requests the instrument offers")
        reply, informs = _request(client, "help")
        for inform in informs:
            name = inform.arguments[0].decode()
            doc = inform.arguments[1].decode().strip().splitlines()[0] if len(inform.arguments) > 1 else ""
            print(f"    {name:<24} {doc}")
        print("   ", reply)

        print("\n?sensor-value: a few sensors' current readings")
        for name in ("temperature", "rf.frequency", "lo.locked", "mode", "time.now"):
            _show(*_request(client, "sensor-value", name))

        print("\n?set-gain 2.5 then ?sensor-value rf.gain: a typed request and its effect")
        _show(*_request(client, "set-gain", 2.5))
        _show(*_request(client, "sensor-value", "rf.gain"))

        print("\n?add 3 4: integer arguments are checked and converted by kattypes")
        _show(*_request(client, "add", 3, 4))

        print("\n?add 3 four: a bad argument gets a fail reply naming the parameter")
        _show(*_request(client, "add", 3, "four"))
    finally:
        client.stop()
        client.join(timeout=5)


def main(argv=None) -> int:
    """Entry point of ``python -m katcp.tools.demo``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0,
                        help=f"port for the instrument (default {DEFAULT_PORT}, or a free one)")
    parser.add_argument("--no-wait", action="store_true",
                        help="stop the instrument after the session instead of leaving it running")
    args = parser.parse_args(argv)
    port = args.port or (DEFAULT_PORT if _port_is_free(args.host, DEFAULT_PORT) else _free_port(args.host))

    cmd = [sys.executable, "-m", "katcp.tools.example_server", "--host", args.host,
           "--port", str(port)]
    log_path = os.path.join(tempfile.gettempdir(), f"katcp-example-instrument-{port}.log")
    print("Starting the example instrument:", " ".join(cmd))
    print("Its log goes to", log_path)
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(args.host, port, proc, timeout=20)
        session(args.host, port)
        if args.no_wait:
            return 0
        print(f"\nThe example instrument is still running on {args.host}:{port}.")
        print("Talk to it by hand, for example:")
        print(f"    telnet {args.host} {port}        (then type ?help or ?sensor-list)")
        print("Press Ctrl-C to stop it.")
        try:
            proc.wait()
        except KeyboardInterrupt:
            print()
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
