"""Ports for tests that need several consecutive ones (``katcp-fleetsim --base-port``)."""

import random
import socket


def free_consecutive_ports(count: int) -> int:
    """First of ``count`` consecutive ports on 127.0.0.1 that were free a moment ago.

    Chosen below Linux's ephemeral range (32768 and up), where the system does not hand
    out ports to outgoing connections, so another test's client cannot take one meanwhile.
    """
    rng = random.Random()
    while True:
        base = rng.randrange(20000, 32000 - count)
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
