#!/usr/bin/env python3
"""An NCP session with ``katcp.ncp``: a simulated RF node and a client that sweeps it.

Usage::

    python3 scripts/ncp_node_session.py              # start the node here, then the session
    python3 scripts/ncp_node_session.py --serve 9999 # only run the node (Ctrl-C stops it)

The node is served by ``katcp.ncp.start_server`` (ncplib's API on katcp's transport).  The
session shows what a client of a CRFS-style node does: query its status, start a sweep and
read the fields it streams back (a float32 array each), get the node's error for an unknown
command as a ``CommandError``, time out on a command the node never answers, and make the
same query from a plain blocking script.
"""

import argparse
import array
import asyncio
import math
import threading

from katcp import ncp
from katcp.ncp import blocking

NODE_NAME = "rfnode-sim"


# ---------------------------------------------------------------------- the node


async def serve_client(connection):
    """Serve one client until it disconnects: one field at a time, as ncplib servers do."""
    async for field in connection:
        command = (field.packet_type, field.name)
        if command == ("STAT", "STAT"):
            field.send(NAME=NODE_NAME, UPTM=ncp.u32(3600), TEMP=ncp.f64(41.25))
        elif command == ("DSPC", "SWEP"):
            # Long commands run in their own task, so the node keeps receiving meanwhile.
            asyncio.ensure_future(sweep(field))
        elif command == ("DSPC", "HANG"):
            pass                                   # never answers: the client times out
        else:
            field.send(ERRO=f"Unknown command {field.packet_type} {field.name}", ERRC=404)


async def sweep(field):
    """Acknowledge, then send one field per band: an array of powers in dBm."""
    field.send(ACKN=1)                             # skipped by the client (auto_ackn)
    start, stop, bands = field["FSTA"], field["FSTO"], field.get("NBND", 4)
    width = (stop - start) // bands
    for band in range(bands):
        powers = array.array("f", (-95.0 + 3 * band + 10 * math.sin(i / 8) for i in range(64)))
        field.send(BAND=band, FSTA=ncp.u64(start + band * width), PWRS=powers,
                   LAST=int(band == bands - 1))
        await asyncio.sleep(0.01)


async def start_node(host, port):
    server = await ncp.start_server(serve_client, host, port)
    return server, server.sockets[0].getsockname()[1]


# ------------------------------------------------------------------- the session


async def session(host, port):
    async with await ncp.connect(host, port, timeout=5) as node:
        status = await node.send("STAT", "STAT").recv()
        print(f"node {status['NAME']}: up {status['UPTM']} s, {status['TEMP']} degC")

        response = node.send("DSPC", "SWEP", FSTA=ncp.u64(2_400_000_000),
                             FSTO=ncp.u64(2_480_000_000), NBND=4)
        async for band in response:               # every field sent in reply to the sweep
            powers = band["PWRS"]
            print(f"band {band['BAND']} from {band['FSTA'] / 1e6:.0f} MHz: "
                  f"{len(powers)} {powers.typecode!r} samples, peak {max(powers):.1f} dBm")
            if band["LAST"]:
                break

        try:
            await node.send("DSPC", "NOPE").recv()
        except ncp.CommandError as exc:
            print("CommandError:", exc.detail, exc.code)

        try:
            await asyncio.wait_for(node.send("DSPC", "HANG").recv(), timeout=0.2)
        except asyncio.TimeoutError:
            print("no answer to DSPC HANG within 0.2 s")


def blocking_session(host, port):
    """The same status query from a script without asyncio."""
    with blocking.connect(host, port, timeout=5) as node:
        status = node.request("STAT", "STAT")
        print("blocking:", status["NAME"], status["TEMP"])


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--serve", type=int, metavar="PORT",
                        help="only run the node, on this port, until Ctrl-C")
    args = parser.parse_args()
    server, port = await start_node(args.host, args.serve or 0)
    if args.serve is not None:
        print(f"NCP node listening on {args.host}:{port}", flush=True)
        await server.serve_forever()
        return
    await session(args.host, port)
    # The blocking client waits in its own thread: keep this loop free to serve it.
    thread = threading.Thread(target=blocking_session, args=(args.host, port))
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
