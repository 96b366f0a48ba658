"""katcp.ncp against the real ncplib session captures in reference/ncp-vectors/handshake.md.

Timestamps, field ids and the info word differ from run to run, so packets are compared by
length and decoded content; HTTP heads byte for byte.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from reference_data import reference_path

from katcp import ncp
from katcp.ncp import packets, tunnel

pytestmark = pytest.mark.timeout(30)

CAPTURES = reference_path("ncp-vectors/handshake.md")

HOST = "127.0.0.1"
_ITEM = re.compile(r"^(\d+)\. t=[\d.]+s (C->S|S->C) (ncp|http) \((\d+) bytes\)")


def parse_captures():
    """{section letter: [(direction, kind, bytes), ...]} from the hex dumps."""
    sections: dict = {}
    current = None
    item = None
    with open(CAPTURES) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("## "):
                current = sections.setdefault(line[3], [])
                item = None
                continue
            m = _ITEM.match(line)
            if m and current is not None:
                item = [m.group(2), m.group(3), bytearray(), int(m.group(4))]
                current.append(item)
                continue
            if line.startswith("```"):
                continue
            if item is not None and re.match(r"^[0-9a-f]{4}  ", line):
                hexpart = line.split("  ")[1]
                item[2] += bytes.fromhex(hexpart.replace(" ", ""))
    out = {}
    for key, items in sections.items():
        out[key] = []
        for direction, kind, data, size in items:
            assert len(data) == size, (key, direction, size)
            out[key].append((direction, kind, bytes(data)))
    return out


CAPS = parse_captures()


def content(data):
    p = packets.decode_packet(data)
    return (p.packet_type, p.packet_id, [(name, params) for name, _, params in p.fields])


def same_packet(ours, theirs):
    assert len(ours) == len(theirs)
    assert content(ours) == content(theirs)


def run(coro, timeout=10):
    """Run a test coroutine (bounded), then let server-side tasks and transports finish."""

    async def main():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            loop = asyncio.get_running_loop()
            end = loop.time() + 1.0
            me = asyncio.current_task()
            while loop.time() < end and any(
                t is not me and not t.done() for t in asyncio.all_tasks()
            ):
                await asyncio.sleep(0.01)
            for _ in range(3):
                await asyncio.sleep(0)

    return asyncio.run(main())


class Recorder:
    """Reads NCP packets (after an optional HTTP head) from a stream, as raw bytes."""

    def __init__(self, reader):
        self.reader = reader
        self.buf = b""

    async def head(self):
        while b"\r\n\r\n" not in self.buf:
            self.buf += await asyncio.wait_for(self.reader.read(4096), 5)
        end = self.buf.index(b"\r\n\r\n") + 4
        head, self.buf = self.buf[:end], self.buf[end:]
        return head

    async def packet(self):
        while len(self.buf) < 12 or len(self.buf) < int.from_bytes(self.buf[8:12], "little") * 4:
            data = await asyncio.wait_for(self.reader.read(4096), 5)
            if not data:
                return None
            self.buf += data
        size = int.from_bytes(self.buf[8:12], "little") * 4
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    async def field_packet(self):
        while True:
            data = await self.packet()
            if data is None or len(data) > 40:
                return data


def test_capture_parser_sanity():
    assert CAPS["A"][0][0] == "S->C" and content(CAPS["A"][0][2])[2][0][0] == "HELO"
    assert CAPS["C"][0][1] == "http"


def test_client_handshake_matches_capture_a():
    cap = [data for _, _, data in CAPS["A"]]

    async def main():
        got = []

        async def fake_server(reader, writer):
            rec = Recorder(reader)
            writer.write(cap[0])  # HELO
            got.append(await rec.field_packet())  # CCRE
            writer.write(cap[2])  # SCAR LINK=5
            got.append(await rec.field_packet())  # CARE
            writer.write(cap[4])  # SCON
            await reader.read()
            writer.close()

        server = await asyncio.start_server(fake_server, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        conn = await ncp.connect(
            HOST,
            port,
            timeout=5,
            hostname="ncplib-client",
            connection_username="alice",
            connection_domain="example",
        )
        conn.close()
        await conn.wait_closed()
        server.close()
        await server.wait_closed()
        return got

    ccre, care = run(main())
    same_packet(ccre, cap[1])
    same_packet(care, cap[3])


def test_server_session_matches_capture_a():
    cap = [data for _, _, data in CAPS["A"]]

    async def handler(conn):
        async for field in conn:
            field.send(ACKN=1)
            field.send(**field)

    async def main():
        server = await ncp.start_server(handler, HOST, 0, timeout=5)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        rec = Recorder(reader)
        got = [await rec.field_packet()]  # HELO
        writer.write(cap[1])  # CCRE
        got.append(await rec.field_packet())  # SCAR
        writer.write(cap[3])  # CARE
        got.append(await rec.field_packet())  # SCON
        writer.write(cap[5])  # DSPC TIME SAMP=1024 FCTR=1200
        got.append(await rec.field_packet())  # ACKN
        got.append(await rec.field_packet())  # reply
        writer.close()
        await asyncio.sleep(0.02)
        server.close()
        await server.wait_closed()
        return got

    got = run(main())
    for ours, theirs in zip(got, [cap[0], cap[2], cap[4], cap[6], cap[7]]):
        same_packet(ours, theirs)
    # replies echo the request's field id
    request_id = packets.decode_packet(cap[5]).fields[0][1]
    assert packets.decode_packet(got[3]).fields[0][1] == request_id
    assert packets.decode_packet(got[4]).fields[0][1] == request_id


def test_server_error_reply_matches_capture_e():
    cap = [data for _, _, data in CAPS["E"]]

    async def handler(conn):
        raise RuntimeError("boom")

    async def main():
        import logging

        logging.getLogger("katcp.ncp.server").disabled = True
        try:
            server = await ncp.start_server(handler, HOST, 0, timeout=5)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(HOST, port)
            rec = Recorder(reader)
            await rec.field_packet()
            writer.write(cap[1])
            await rec.field_packet()
            writer.write(cap[3])
            await rec.field_packet()
            erro = await rec.field_packet()
            eof = await rec.packet()
            writer.close()
            server.close()
            await server.wait_closed()
            return erro, eof
        finally:
            logging.getLogger("katcp.ncp.server").disabled = False

    erro, eof = run(main())
    same_packet(erro, cap[5])
    assert eof is None


def test_http_heads_match_captures_c_and_d():
    c_request = CAPS["C"][0][2]
    assert tunnel.connect_request("admin", "rfeye") == c_request
    assert tunnel.RESPONSE_OK == CAPS["C"][1][2]
    assert tunnel.RESPONSE_UNAUTHORIZED == CAPS["D"][1][2]

    async def main():
        heads = []
        for password in ("rfeye", "wrong"):
            server = await ncp.start_server(
                lambda conn: conn.recv(),
                HOST,
                0,
                timeout=5,
                authenticate=lambda u, p: (u, p) == ("admin", "rfeye"),
            )
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(tunnel.connect_request("admin", password))
            rec = Recorder(reader)
            heads.append(await rec.head())
            if password == "rfeye":
                helo = await rec.field_packet()
                same_packet(helo, CAPS["C"][2][2])
            else:
                assert await rec.packet() is None  # closed after the 401 (ncplib goes on)
            writer.close()
            await asyncio.sleep(0.02)
            server.close()
            await server.wait_closed()
        return heads

    ok, refused = run(main())
    assert ok == CAPS["C"][1][2]
    assert refused == CAPS["D"][1][2]
