#!/usr/bin/env python3
"""A lab script: cool the cryostat down and log its temperature, with ``BlockingClient``.

Usage::

    python3 scripts/lab_cooldown.py 127.0.0.1:7147 --setpoint 77

``BlockingClient`` runs its own ioloop in a daemon thread, so the script stays plain,
sequential Python: ``blocking_request`` sends a request and returns ``(reply, informs)``
once the reply has arrived (or a ``fail`` reply when it times out or the connection drops).
Exit status 0 when the cryostat reached the set point, 1 otherwise.
"""

import argparse
import sys

from katcp import BlockingClient, Message


class RequestFailed(Exception):
    """The instrument answered a request with something other than ``ok``."""


def call(client, name, *args, timeout=5.0):
    """Send ``?name args...``, return the reply's arguments after ``ok`` as strings."""
    reply, informs = client.blocking_request(Message.request(name, *args), timeout=timeout)
    for inform in informs:
        print("   ", inform)
    if not reply.reply_ok():
        raise RequestFailed(str(reply))
    return [arg.decode() for arg in reply.arguments[1:]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", metavar="HOST:PORT")
    parser.add_argument("--setpoint", type=float, default=77.0, help="kelvin")
    parser.add_argument("--timeout", type=float, default=100.0,
                        help="seconds to wait for the temperature to settle")
    args = parser.parse_args()
    host, port = args.address.rsplit(":", 1)

    client = BlockingClient(host, int(port))
    client.start()
    try:
        if not client.wait_protocol(timeout=5):
            sys.exit(f"no KATCP instrument answers at {args.address}")
        print("connected:", client.protocol_flags)

        # Typed replies come back as strings: convert them as the request's ?help says.
        print("set point:", float(call(client, "set-setpoint", args.setpoint)[0]), "K")
        call(client, "compressor", True)        # booleans are sent as 1 / 0
        print("compressor on, waiting for", args.setpoint, "K")

        # The wait runs on the instrument; give the request a longer timeout than the wait.
        try:
            kelvin, = call(client, "wait-stable", args.timeout, timeout=args.timeout + 5)
        except RequestFailed as exc:
            print("did not settle:", exc)
            return 1
        print(f"stable at {float(kelvin):.1f} K")

        # An argument out of range gets a fail reply naming the parameter: no exception
        # inside the client, so the script decides what to do.
        reply, _ = client.blocking_request(Message.request("set-setpoint", 1000))
        print("out of range:", reply.arguments[0].decode(), "-", reply.arguments[1].decode())

        # ?sensor-value returns one #sensor-value inform: timestamp, count, name, status, value.
        reply, informs = client.blocking_request(Message.request("sensor-value", "state"))
        _, _, name, status, value = (arg.decode() for arg in informs[0].arguments)
        print(f"sensor {name}: {value} ({status})")
        return 0
    finally:
        client.stop()
        client.join(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
