"""katcp.ncp sessions against the real ncplib 6.1.0, both ways, over loopback."""

from __future__ import annotations

import asyncio
import warnings
from array import array
from datetime import datetime, timezone

import ncplib
import pytest

from katcp import ncp
from katcp.ncp import packets

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"


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


async def echo_handler(conn):
    async for field in conn:
        field.send(ACKN=1)
        field.send(**field)


async def serve(mod, handler=echo_handler, **kwargs):
    kwargs.setdefault("timeout", 5)
    server = await mod.start_server(handler, HOST, 0, **kwargs)
    return server, server.sockets[0].getsockname()[1]


async def shutdown(server, *conns):
    for conn in conns:
        conn.close()
        await conn.wait_closed()
    await asyncio.sleep(0.01)  # let the server's handlers see the close
    server.close()
    await server.wait_closed()


PAIRS = [(ncplib, ncp), (ncp, ncplib), (ncp, ncp)]
PAIR_IDS = ["ncplib-server/katcp-client", "katcp-server/ncplib-client", "katcp/katcp"]


def all_values(mod):
    return dict(
        I32=-5,
        BOOL=True,
        U32=mod.u32(2**32 - 1),
        I64=mod.i64(-(2**63)),
        U64=mod.u64(2**64 - 1),
        F32=1.5,
        F64=mod.f64(0.1),
        STR="café ✓",
        RAW=b"\x01\x02\x03",
        AU8=array("B", [1, 2, 3, 4]),
        AU16=array("H", [65535, 0]),
        AU32=array("I", [2**32 - 1]),
        AI8=array("b", [-128, 127, 0, 1]),
        AI16=array("h", [-2, 3]),
        AI32=array("i", [-(2**31)]),
        AU64=array("L", [2**64 - 1]),
        AI64=array("l", [-(2**63)]),
        AF32=array("f", [0.5, -1.0]),
        AF64=array("d", [0.1]),
    )


def check_all_values(field, mod):
    assert field["I32"] == -5 and type(field["I32"]) is int
    assert field["BOOL"] == 1 and type(field["BOOL"]) is int
    assert field["U32"] == 2**32 - 1 and type(field["U32"]) is mod.u32
    assert field["I64"] == -(2**63) and type(field["I64"]) is mod.i64
    assert field["U64"] == 2**64 - 1 and type(field["U64"]) is mod.u64
    assert field["F32"] == 1.5 and type(field["F32"]) is float
    assert field["F64"] == 0.1 and type(field["F64"]) is mod.f64
    assert field["STR"] == "café ✓"
    assert field["RAW"] == b"\x01\x02\x03\x00"
    assert list(field["AU8"]) == [1, 2, 3, 4] and field["AU8"].typecode == "B"
    assert list(field["AU16"]) == [65535, 0]
    assert list(field["AU32"]) == [2**32 - 1]
    assert list(field["AI8"]) == [-128, 127, 0, 1]
    assert list(field["AI16"]) == [-2, 3]
    assert list(field["AI32"]) == [-(2**31)]
    assert list(field["AU64"]) == [2**64 - 1]
    assert list(field["AI64"]) == [-(2**63)]
    assert list(field["AF32"]) == [0.5, -1.0]
    assert list(field["AF64"]) == [0.1]


@pytest.mark.parametrize("server_mod,client_mod", PAIRS, ids=PAIR_IDS)
def test_handshake_and_every_value_type(server_mod, client_mod):
    async def main():
        server, port = await serve(server_mod)
        conn = await client_mod.connect(HOST, port, timeout=5, hostname="probe-host")
        try:
            response = conn.send("DSPC", "TIME", **all_values(client_mod))
            field = await response.recv()
            assert field.packet_type == "DSPC" and field.name == "TIME"
            assert field.packet_id == 1
            assert isinstance(field.packet_timestamp, datetime)
            assert field.packet_timestamp.tzinfo is not None
            assert abs((datetime.now(timezone.utc) - field.packet_timestamp).total_seconds()) < 60
            check_all_values(field, client_mod)
        finally:
            await shutdown(server, conn)

    run(main())


def test_katcp_server_sees_ncplib_client_details():
    seen = {}

    async def handler(conn):
        seen["hostname"] = conn.remote_hostname
        field = await conn.recv()
        seen["field"] = field
        seen["values"] = dict(field)
        field.send(OK=1)

    async def main():
        server, port = await serve(ncp, handler)
        conn = await ncplib.connect(HOST, port, timeout=5, hostname="ncplib-client")
        try:
            reply = await conn.send("DSPC", "TIME", **all_values(ncplib)).recv()
            assert reply["OK"] == 1
        finally:
            await shutdown(server, conn)

    run(main())
    assert seen["hostname"] == "ncplib-client"
    check_all_values(seen["field"], ncp)


@pytest.mark.parametrize("server_mod,client_mod", PAIRS, ids=PAIR_IDS)
def test_erro_warn_ackn(server_mod, client_mod):
    async def handler(conn):
        async for field in conn:
            if field.name == "ERR":
                field.send(ERRO="Bad thing", ERRC=123)
            elif field.name == "WRN":
                field.send(WARN="Careful", WARC=7, DATA=1)
            elif field.name == "WRNF":
                conn.send(field.packet_type, "WARN", WARN="dropped")
                conn.send(field.packet_type, "ERRO")
                field.send(DATA=2)
            else:
                field.send(ACKN=1)
                field.send(DATA=3)

    async def main():
        server, port = await serve(server_mod, handler)
        conn = await client_mod.connect(HOST, port, timeout=5)
        raw = await client_mod.connect(
            HOST, port, timeout=5, auto_erro=False, auto_warn=False, auto_ackn=False
        )
        try:
            with pytest.raises(client_mod.CommandError) as info:
                await conn.send("DSPC", "ERR").recv()
            assert info.value.detail == "Bad thing" and info.value.code == 123
            assert info.value.field["ERRC"] == 123
            assert "DSPC ERR 'Bad thing' (code 123)" in str(info.value)
            with pytest.warns(client_mod.CommandWarning) as record:
                field = await conn.send("DSPC", "WRN").recv()
            assert field["DATA"] == 1
            assert record[0].message.detail == "Careful" and record[0].message.code == 7
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", client_mod.CommandWarning)
                conn.send("DSPC", "WRNF")
                field = await conn.recv()  # fields named WARN / ERRO are dropped
            assert field.name == "WRNF" and field["DATA"] == 2
            field = await conn.send("DSPC", "OK").recv()
            assert dict(field) == {"DATA": 3}
            # With the filters off every field arrives as it is.
            field = await raw.send("DSPC", "ERR").recv()
            assert dict(field) == {"ERRO": "Bad thing", "ERRC": 123}
            field = await raw.send("DSPC", "OK").recv()
            assert dict(field) == {"ACKN": 1}
            assert dict(await raw.recv()) == {"DATA": 3}
        finally:
            await shutdown(server, conn, raw)

    run(main())


def test_dropped_field_keeps_rest_of_packet():
    """ncplib bug not copied: fields after a dropped ACKN field in one packet survive."""

    async def handler(conn):
        field = await conn.recv()
        conn._send_packet(
            field.packet_type,
            [(field.name, field.id, {"ACKN": 1}), (field.name, field.id, {"DATA": 42})],
        )
        field.send(DATA=43)
        await conn.recv()

    async def main():
        server, port = await serve(ncp, handler)
        conn = await ncp.connect(HOST, port, timeout=5)
        try:
            response = conn.send("DSPC", "TIME")
            assert (await response.recv())["DATA"] == 42
            assert (await response.recv())["DATA"] == 43
        finally:
            await shutdown(server, conn)

    run(main())


@pytest.mark.parametrize("offer,granted", [(1, 5), (100, 60), (7, 7)])
@pytest.mark.parametrize("server_mod,client_mod", PAIRS, ids=PAIR_IDS)
def test_timeout_negotiation(server_mod, client_mod, offer, granted):
    async def handler(conn):
        async for field in conn:
            field.send(GRNT=conn._timeout if hasattr(conn, "_timeout") else -1)

    async def main():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            server, port = await serve(server_mod, handler)
            conn = await client_mod.connect(HOST, port, timeout=offer)
            try:
                field = await conn.send("LINK", "TEST").recv()
                if server_mod is ncp:
                    assert field["GRNT"] == granted
                if client_mod is ncp:
                    assert conn._timeout == granted
            finally:
                await shutdown(server, conn)
        messages = [str(w.message) for w in record if issubclass(w.category, Warning)]
        if offer != granted:
            assert f"Server changed connection timeout to {granted}" in messages
            assert f"Changed connection timeout from {offer} to {granted}" in messages
        else:
            assert not [m for m in messages if "timeout" in m]

    run(main())


@pytest.mark.parametrize("client_mod", [ncp, ncplib], ids=["katcp-client", "ncplib-client"])
def test_keepalives_across_idle_period(client_mod):
    """Granted timeout 2 s => keep-alive every 1 s; a 2.5 s idle wait must not time out."""
    packets_seen = []

    async def handler(conn):
        orig = conn.message_received

        def spy(c, msg):
            packets_seen.append(msg)
            orig(c, msg)

        conn._conn.handler.message_received = lambda c, msg: spy(c, msg)
        field = await conn.recv()
        # Stay silent (no replies) for longer than the client's receive timeout: only our
        # keep-alives keep the client's recv() alive. Meanwhile our own recv (timeout 2 s)
        # must survive on the client's keep-alives.
        try:
            await asyncio.wait_for(conn.recv(), 2.5)
        except asyncio.TimeoutError as exc:
            # the outer 2.5 s limit, not our 2 s receive timeout
            assert not isinstance(exc, ncp.NetworkTimeoutError)
        else:
            raise AssertionError("the idle client sent a field")
        field.send(DONE=1)
        await conn.recv()

    async def main():
        server, port = await serve(ncp, handler, min_timeout=1)
        conn = await client_mod.connect(HOST, port, timeout=2)
        try:
            t0 = asyncio.get_running_loop().time()
            field = await conn.send("DSPC", "IDLE").recv()
            assert field["DONE"] == 1
            assert asyncio.get_running_loop().time() - t0 > 2.4
        finally:
            await shutdown(server, conn)

    run(main())
    keepalives = [p for p in packets_seen if p.packet_type == "LINK" and not p.fields]
    assert 1 <= len(keepalives) <= 4  # about one per second, no flood
    assert all(p.packet_id == 0 and p.timestamp.microsecond == 0 for p in keepalives)


def test_silent_server_times_out():
    """A server that completes the handshake and then says nothing: recv times out."""

    async def main():
        async def raw_server(reader, writer):
            ts = datetime.now(timezone.utc)

            def pkt(name, **params):
                return packets.encode_packet("LINK", 1, ts, b"", [(name, 0, params)])

            writer.write(pkt("HELO"))
            codec = packets.PacketCodec()
            while not any(p.fields[0][0] == "CARE" for p in codec.feed(await reader.read(4096))):
                writer.write(pkt("SCAR", LINK=1))
            writer.write(pkt("SCON"))
            idle_bytes.append(await reader.read())  # never answer, never keep-alive
            writer.close()

        idle_bytes = []

        server = await asyncio.start_server(raw_server, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.warns(ncp.NCPWarning, match="changed connection timeout to 1"):
            conn = await ncp.connect(HOST, port, timeout=5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ncp.NetworkTimeoutError):
            await conn.recv()
        assert 0.9 < loop.time() - t0 < 3
        await shutdown(server, conn)
        for _ in range(100):
            if idle_bytes:
                break
            await asyncio.sleep(0.01)
        # granted 1 s: ncplib's interval would be int(0.66) = 0, a keep-alive flood; ours is
        # 1 s, so at most a couple of 40-byte keep-alives went out in that second.
        assert len(idle_bytes[0]) <= 80

    run(main())


@pytest.mark.parametrize("server_mod,client_mod", PAIRS, ids=PAIR_IDS)
def test_authentication(server_mod, client_mod):
    attempts = []

    def authenticate(username, password):
        attempts.append((username, password))
        return (username, password) == ("alice", "s3cret")

    async def main():
        server, port = await serve(server_mod, authenticate=authenticate)
        try:
            conn = await client_mod.connect(
                HOST, port, timeout=5, username="alice", password="s3cret"
            )
            field = await conn.send("DSPC", "TIME", SAMP=1).recv()
            assert field["SAMP"] == 1
            conn.close()
            await conn.wait_closed()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                with pytest.raises(client_mod.AuthenticationError, match="401"):
                    await client_mod.connect(
                        HOST, port, timeout=5, username="alice", password="nope"
                    )
        finally:
            await asyncio.sleep(0.05)
            server.close()
            await server.wait_closed()

    run(main())
    assert attempts == [("alice", "s3cret"), ("alice", "nope")]


def test_refused_client_gets_401_and_nothing_else():
    """Security fix: after a 401 our server closes (ncplib goes on with 200 OK and HELO)."""

    async def main():
        server, port = await serve(ncp, authenticate=lambda u, p: False)
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"CONNECT ncp.service HTTP/1.1\r\nProxy-Authorization: Basic YTpi\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        assert data.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        assert data.endswith(b"\r\n\r\n") and b"200 OK" not in data
        writer.close()
        for request, status in (
            (b"GET ncp.service HTTP/1.1\r\n\r\n", b"405"),
            (b"CONNECT other HTTP/1.1\r\n\r\n", b"403"),
        ):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            data = await asyncio.wait_for(reader.read(), 5)
            assert data.startswith(b"HTTP/1.1 " + status)
            writer.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_async_authenticate_callback():
    async def authenticate(username, password):
        await asyncio.sleep(0)
        return password == "pw"

    async def main():
        server, port = await serve(ncp, authenticate=authenticate)
        conn = await ncp.connect(HOST, port, timeout=5, password="pw")
        assert (await conn.send("A", "B", X=1).recv())["X"] == 1
        await shutdown(server, conn)

    run(main())


@pytest.mark.parametrize("server_mod,client_mod", PAIRS, ids=PAIR_IDS)
def test_tls(tls_contexts, server_mod, client_mod):
    server_ctx, client_ctx = tls_contexts

    async def main():
        server, port = await serve(server_mod, ssl=server_ctx)
        conn = await client_mod.connect(HOST, port, timeout=5, ssl=client_ctx)
        try:
            assert conn.transport.get_extra_info("ssl_object") is not None
            field = await conn.send("DSPC", "TIME", SAMP=5, RAW=b"abcd").recv()
            assert dict(field) == {"SAMP": 5, "RAW": b"abcd"}
        finally:
            await shutdown(server, conn)

    run(main())


def test_tls_with_authentication(tls_contexts):
    server_ctx, client_ctx = tls_contexts

    async def main():
        server, port = await serve(ncp, ssl=server_ctx, authenticate=lambda u, p: u == "bob")
        conn = await ncplib.connect(HOST, port, timeout=5, ssl=client_ctx, username="bob")
        assert (await conn.send("A", "B", X=1).recv())["X"] == 1
        with pytest.raises(ncp.AuthenticationError):
            await ncp.connect(HOST, port, timeout=5, ssl=client_ctx, username="eve")
        await shutdown(server, conn)

    run(main())


def test_tls_untrusted_certificate_is_network_error(tls_contexts):
    server_ctx, _ = tls_contexts

    async def main():
        server, port = await serve(ncp, ssl=server_ctx)
        with pytest.raises(ncp.NetworkError):
            await ncp.connect(HOST, port, timeout=5, ssl=True)
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()

    run(main())


@pytest.mark.parametrize("server_mod", [ncp, ncplib], ids=["katcp-server", "ncplib-server"])
def test_handler_error_replies(server_mod):
    async def handler(conn):
        field = await conn.recv()
        if field.name == "BOOM":
            raise RuntimeError("handler bug")
        raise server_mod.DecodeError("bad request")

    async def main():
        server, port = await serve(server_mod, handler)
        logger_names = ["katcp.ncp.server", "ncplib.server"]
        import logging

        for name in logger_names:
            logging.getLogger(name).disabled = True
        try:
            conn = await ncp.connect(HOST, port, timeout=5)
            with pytest.raises(ncp.CommandError) as info:
                await conn.send("DSPC", "BOOM").recv()
            assert (info.value.field.packet_type, info.value.field.name) == ("LINK", "ERRO")
            assert (info.value.detail, info.value.code) == ("Server error", 500)
            with pytest.raises(ncp.ConnectionClosed):
                await conn.recv()
            conn = await ncp.connect(HOST, port, timeout=5)
            with pytest.raises(ncp.CommandError) as info:
                await conn.send("DSPC", "BAD").recv()
            assert (info.value.detail, info.value.code) == ("Bad request", 400)
            conn.close()
        finally:
            for name in logger_names:
                logging.getLogger(name).disabled = False
            await asyncio.sleep(0.05)
            server.close()
            await server.wait_closed()

    run(main())


def test_authenticate_callback_error_refuses_client():
    def authenticate(username, password):
        raise RuntimeError("database down")

    async def main():
        server, port = await serve(ncp, authenticate=authenticate)
        logging_disabled = __import__("logging").getLogger("katcp.ncp.server")
        logging_disabled.disabled = True
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                with pytest.raises(ncplib.AuthenticationError):
                    await ncplib.connect(HOST, port, timeout=5, username="a", password="b")
        finally:
            logging_disabled.disabled = False
            await asyncio.sleep(0.05)
            server.close()
            await server.wait_closed()

    run(main())
