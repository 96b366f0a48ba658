"""TLS contexts over real sockets through katcp.connection: good and bad certificates.

Server certificates: good (signed by the test CA, for localhost/127.0.0.1/::1), for the
wrong host, expired, signed by another CA; clients: trusting the test CA, trusting another
CA, insecure; mutual TLS with a good client certificate, none, and one from another CA.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from katcp._security import certs
from katcp._security.tls import (
    INSECURE_WARNING,
    client_context,
    peer_subject,
    server_context,
    subject_string,
)
from katcp.codec import LineCodec
from katcp.connection import create_server, open_connection
from katcp.core import Message

from _security_pki import make_pki

TIMEOUT = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


class Handler:
    """Records connections and messages; a server echoes requests as ok replies."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.made: list = []
        self.subjects: list = []
        self.messages: list = []
        self.lost: list = []
        self.changed = asyncio.Event()

    def connection_made(self, conn):
        self.made.append(conn)
        self.subjects.append(peer_subject(conn.transport.get_extra_info("ssl_object")))
        self.changed.set()

    def message_received(self, conn, msg):
        self.messages.append(msg)
        if self.echo:
            conn.write(Message.reply_to_request(msg, "ok", *msg.arguments))
        self.changed.set()

    def decode_error(self, conn, exc):
        self.changed.set()

    def connection_lost(self, conn, exc):
        self.lost.append(exc)
        self.changed.set()

    async def wait(self, cond, timeout: float = TIMEOUT) -> None:
        async def loop():
            while not cond():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), timeout)


async def _serve(ctx, handler):
    server = await create_server(handler, LineCodec, "127.0.0.1", 0, ssl=ctx)
    return server, server.sockets[0].getsockname()[1]


async def _round_trip(server_ctx, client_ctx, host="127.0.0.1"):
    """Connect, send one request, return (server handler, client reply)."""
    shandler = Handler(echo=True)
    server, port = await _serve(server_ctx, shandler)
    try:
        chandler = Handler()
        conn = await open_connection(chandler, LineCodec(), host, port, ssl=client_ctx,
                                     timeout=TIMEOUT)
        conn.write(Message.request("ping", "x"))
        await chandler.wait(lambda: chandler.messages or chandler.lost)
        conn.close()
        await conn.wait_closed()
        return shandler, chandler
    finally:
        server.close()
        await server.wait_closed()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT * 3))


def test_good_certificate(pki):
    _, chandler = run(_round_trip(server_context(pki.server_cert, pki.server_key),
                                  client_context(cafile=pki.ca_cert)))
    assert bytes(chandler.messages[0]) == b"!ping ok x"


def test_good_certificate_by_host_name(pki):
    _, chandler = run(_round_trip(server_context(pki.server_cert, pki.server_key),
                                  client_context(cafile=pki.ca_cert), host="localhost"))
    assert bytes(chandler.messages[0]) == b"!ping ok x"


def test_contexts_refuse_old_protocols(pki):
    assert server_context(pki.server_cert, pki.server_key).minimum_version \
        >= ssl.TLSVersion.TLSv1_2
    ctx = client_context(cafile=pki.ca_cert)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    # katcp's TLS transport does not support renegotiation: its contexts refuse it.
    for each in (ctx, server_context(pki.server_cert, pki.server_key),
                 client_context(insecure=True)):
        assert each.options & ssl.OP_NO_RENEGOTIATION


@pytest.mark.parametrize("server,client_ca,host,reason", [
    ("server", "other_ca_cert", "127.0.0.1", "unable to get local issuer certificate"),
    ("wrong_host", "ca_cert", "localhost", "Hostname mismatch"),
    ("wrong_host", "ca_cert", "127.0.0.1", "IP address mismatch"),
    ("expired", "ca_cert", "127.0.0.1", "certificate has expired"),
    ("rogue_server", "ca_cert", "127.0.0.1", "unable to get local issuer certificate"),
])
def test_bad_server_certificate_refused(pki, server, client_ca, host, reason):
    server_ctx = server_context(getattr(pki, server + "_cert"), getattr(pki, server + "_key"))
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        run(_round_trip(server_ctx, client_context(cafile=getattr(pki, client_ca)), host=host))
    assert reason in str(info.value)


def test_insecure_client_connects_to_anything(pki):
    _, chandler = run(_round_trip(
        server_context(pki.rogue_server_cert, pki.rogue_server_key),
        client_context(insecure=True)))
    assert bytes(chandler.messages[0]) == b"!ping ok x"
    assert "not checked" in INSECURE_WARNING


def test_mutual_tls_knows_the_client(pki):
    shandler, chandler = run(_round_trip(
        server_context(pki.server_cert, pki.server_key, client_ca=pki.ca_cert),
        client_context(cafile=pki.ca_cert, certfile=pki.alice_cert, keyfile=pki.alice_key)))
    assert bytes(chandler.messages[0]) == b"!ping ok x"
    assert shandler.subjects == ["CN=alice,O=Katcp Tests"] == [pki.alice_subject]


def test_server_without_client_ca_sees_no_subject(pki):
    shandler, _ = run(_round_trip(
        server_context(pki.server_cert, pki.server_key),
        client_context(cafile=pki.ca_cert, certfile=pki.alice_cert, keyfile=pki.alice_key)))
    assert shandler.subjects == [None]


@pytest.mark.parametrize("client_cert", [None, "rogue_client"])
def test_mutual_tls_refuses_missing_or_foreign_client_cert(pki, client_cert):
    async def main():
        shandler = Handler(echo=True)
        server, port = await _serve(
            server_context(pki.server_cert, pki.server_key, client_ca=pki.ca_cert), shandler)
        kwargs = {}
        if client_cert:
            kwargs = dict(certfile=getattr(pki, client_cert + "_cert"),
                          keyfile=getattr(pki, client_cert + "_key"))
        chandler = Handler()
        try:
            # TLS 1.3: the client's handshake may finish before the server checks its
            # certificate; the refusal then arrives as the connection closing.
            conn = await open_connection(chandler, LineCodec(), "127.0.0.1", port,
                                         ssl=client_context(cafile=pki.ca_cert, **kwargs),
                                         timeout=TIMEOUT)
        except (ssl.SSLError, ConnectionError):
            pass
        else:
            conn.write(Message.request("ping"))
            await chandler.wait(lambda: chandler.lost)
            assert not chandler.messages
        assert shandler.made == [] and shandler.messages == []
        server.close()
        await server.wait_closed()

    run(main())


def test_plaintext_client_to_tls_server_is_closed_not_hung(pki):
    async def main():
        shandler = Handler(echo=True)
        server, port = await _serve(server_context(pki.server_cert, pki.server_key), shandler)
        chandler = Handler()
        conn = await open_connection(chandler, LineCodec(), "127.0.0.1", port, timeout=TIMEOUT)
        conn.write(Message.request("watchdog"))
        await chandler.wait(lambda: chandler.lost)
        assert not chandler.messages and not shandler.made
        server.close()
        await server.wait_closed()

    run(main())


def test_tls_client_to_plaintext_server_fails_within_timeout(pki):
    async def main():
        shandler = Handler()  # never answers: a plain KATCP server waiting for a line
        server, port = await _serve(None, shandler)
        t0 = asyncio.get_running_loop().time()
        with pytest.raises((asyncio.TimeoutError, ssl.SSLError, ConnectionError)):
            await open_connection(Handler(), LineCodec(), "127.0.0.1", port,
                                  ssl=client_context(cafile=pki.ca_cert), timeout=1.0)
        assert asyncio.get_running_loop().time() - t0 < 3.0
        server.close()
        await server.wait_closed()

    run(main())


def test_subject_string_matches_cryptography_through_a_handshake(tmp_path, pki):
    """Tricky subjects come out as cryptography (and certdump) writes them."""
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "ZA"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Western Cape"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Cape Town"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lab, Inc. <\"R&D\">"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "#ops+eng; "),
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "bob@example.org"),
        x509.NameAttribute(NameOID.COMMON_NAME, " bob\\smith"),
    ])
    ca = certs.load_certificate(pki.ca_cert)
    ca_key = certs.load_key(pki.ca_key)
    key = certs.generate_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    certs.write_certificate(tmp_path / "bob.crt", cert)
    certs.write_key(tmp_path / "bob.key", key)
    shandler, _ = run(_round_trip(
        server_context(pki.server_cert, pki.server_key, client_ca=pki.ca_cert),
        client_context(cafile=pki.ca_cert, certfile=tmp_path / "bob.crt",
                       keyfile=tmp_path / "bob.key")))
    assert shandler.subjects == [name.rfc4514_string()]


def test_subject_string_multi_valued_rdn():
    subject = ((("organizationName", "Lab"),), (("commonName", "a"), ("userId", "u1")))
    assert subject_string(subject) == "CN=a+UID=u1,O=Lab"


def test_peer_subject_without_tls_or_cert():
    assert peer_subject(None) is None

    class NoCert:
        def getpeercert(self):
            return {}

    class NotDone:
        def getpeercert(self):
            raise ValueError("handshake not done")

    assert peer_subject(NoCert()) is None
    assert peer_subject(NotDone()) is None


def test_missing_files_raise(tmp_path, pki):
    with pytest.raises(OSError):
        server_context(tmp_path / "nope.crt", tmp_path / "nope.key")
    with pytest.raises(ssl.SSLError):
        server_context(pki.server_cert, pki.alice_key)  # key of another certificate
    with pytest.raises(OSError):
        client_context(cafile=tmp_path / "nope.crt")
