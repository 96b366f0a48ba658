"""create_server's accept path: greeting at once, clean close, running out of descriptors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from katcp._aio import lowlevel
from katcp.codec import LineCodec
from katcp.connection import create_server

TIMEOUT = 10.0


class Greeter:
    """Writes a greeting in connection_made and echoes lines back."""

    def __init__(self):
        self.conns = []
        self.lost = []

    def connection_made(self, conn):
        self.conns.append(conn)
        conn.write_bytes(b"#hello\n")

    def message_received(self, conn, msg):
        conn.write_bytes(b"!" + bytes(msg)[1:] + b"\n")

    def decode_error(self, conn, exc):
        pass

    def connection_lost(self, conn, exc):
        self.lost.append(conn)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, TIMEOUT + 5))


def test_many_clients_greeted_served_and_server_closes_with_them():
    async def main():
        handler = Greeter()
        server = await create_server(handler, LineCodec, "127.0.0.1", 0, backlog=64)
        port = server.sockets[0].getsockname()[1]
        assert server.is_serving()
        # Connect in a burst: several are waiting in the backlog when the loop looks.
        streams = await asyncio.gather(*[asyncio.open_connection("127.0.0.1", port)
                                         for _ in range(40)])
        for i, (reader, writer) in enumerate(streams):
            assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"#hello\n"
            writer.write(b"?ping %d\n" % i)
        for i, (reader, _) in enumerate(streams):
            assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"!ping %d\n" % i
        assert {c.peer[1] for c in handler.conns} == {
            w.get_extra_info("sockname")[1] for _, w in streams}
        server.close()
        assert not server.is_serving()
        # No more connections are accepted...
        try:
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
            refused = False
        except OSError:
            refused = True
        assert refused
        # ...and wait_closed() returns once the clients are gone.
        for _, writer in streams:
            writer.close()
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)
        while len(handler.lost) < 40:
            await asyncio.sleep(0.01)

    run(main())


def test_running_out_of_descriptors_pauses_accepting_and_serving_goes_on():
    """With the process at its descriptor limit, accept fails; the server logs it, keeps
    serving its connections, and accepts again once descriptors are free."""
    code = textwrap.dedent('''
        import asyncio, logging, resource, socket, sys
        sys.path.insert(0, sys.argv[1])
        import katcp.connection as kc
        import katcp._aio.lowlevel
        from katcp.codec import LineCodec
        katcp._aio.lowlevel.ACCEPT_RETRY_DELAY = 0.1
        logging.basicConfig(level=logging.ERROR, stream=sys.stdout, format="%(message)s")

        class Echo:
            def connection_made(self, conn): conn.write_bytes(b"#hello\\n")
            def message_received(self, conn, msg): conn.write_bytes(bytes(msg) + b"\\n")
            def decode_error(self, conn, exc): pass
            def connection_lost(self, conn, exc): pass

        async def main():
            server = await kc.create_server(Echo(), LineCodec, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            first = await asyncio.open_connection("127.0.0.1", port)
            assert await first[0].readline() == b"#hello\\n"
            # Use up every descriptor but one: a client socket, so that its connect
            # works but the server's accept has nothing left.
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
            hog = []
            try:
                while True:
                    hog.append(socket.socket())
            except OSError:
                pass
            hog.pop().close()
            late = socket.socket()
            late.setblocking(False)
            try:
                late.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            await asyncio.sleep(0.3)
            # The connected client is still served.
            first[1].write(b"?still-here\\n")
            assert await asyncio.wait_for(first[0].readline(), 5) == b"?still-here\\n"
            for s in hog:
                s.close()
            # Accepting resumes: the late client gets its greeting.
            reader, writer = await asyncio.open_connection(sock=late)
            assert await asyncio.wait_for(reader.readline(), 5) == b"#hello\\n"
            print("RECOVERED")
            writer.close()
            first[1].close()
            server.close()

        asyncio.run(main())
    ''')
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code, root], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RECOVERED" in result.stdout
    # Our accept loop logs it; under KATCP_ASYNCIO_PUBLIC_ONLY asyncio's own accept does.
    logged = ("Cannot accept connections" if lowlevel.USE_PRIVATE
              else "socket.accept() out of system resource")
    assert logged in result.stdout
