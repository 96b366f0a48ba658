"""NCP with katcp.ncp (ncplib's API): a tiny node, an asyncio client, a blocking client.

``from katcp import ncp as ncplib`` lets ncplib code run unchanged.
"""

import asyncio
import threading

from katcp import ncp
from katcp.ncp import blocking


async def client_connected(connection):
    """Serve one client: answer DSPC TIME with an ACKN, then the data."""
    async for field in connection:
        if field.packet_type == "DSPC" and field.name == "TIME":
            field.send(ACKN=1)                           # acknowledgements are skipped
            samples = field.get("SAMP", 0)
            field.send(TSDC=samples * 2, FCTR=field["FCTR"], UNIT="dBm")
        else:
            field.send(ERRO="Unknown command", ERRC=404)  # the client raises CommandError


async def async_client(port):
    async with await ncp.connect("127.0.0.1", port, timeout=5) as connection:
        field = await connection.send("DSPC", "TIME", SAMP=1024, FCTR=1200).recv()
        print("async:", field.packet_type, field.name, dict(field))
        try:
            await connection.send("DSPC", "NOPE").recv()
        except ncp.CommandError as exc:
            print("async: CommandError:", exc.detail, exc.code)


def blocking_client(port):
    """A script with no asyncio of its own (runs in another thread here)."""
    with blocking.connect("127.0.0.1", port, timeout=5) as connection:
        field = connection.request("DSPC", "TIME", SAMP=8, FCTR=99)
        print("blocking:", field["TSDC"], field["UNIT"])


async def main():
    server = await ncp.start_server(client_connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await async_client(port)
    # The blocking client waits in its own thread; keep this loop free to serve it.
    thread = threading.Thread(target=blocking_client, args=(port,))
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)

    # Connecting to a port where nothing listens raises NetworkError (an OSError).
    server.close()
    await server.wait_closed()
    try:
        await ncp.connect("127.0.0.1", port, timeout=2)
    except ncp.NetworkError as exc:
        print("NetworkError:", type(exc).__name__)


asyncio.run(main())
