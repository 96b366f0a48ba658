"""A small PKI for the security tests: a CA, good and bad server and client certificates.

Made with :mod:`katcp._security.certs` (so the admin tool's own code is exercised) into a
directory, once per test session. Every file name is an attribute of :class:`Pki`.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from katcp._security import certs


@dataclass
class Pki:
    """Paths of the test certificates and keys."""

    ca_cert: str
    ca_key: str
    other_ca_cert: str
    server_cert: str
    server_key: str
    wrong_host_cert: str
    wrong_host_key: str
    expired_cert: str
    expired_key: str
    rogue_server_cert: str
    rogue_server_key: str
    alice_cert: str
    alice_key: str
    alice_subject: str
    rogue_client_cert: str
    rogue_client_key: str


def make_pki(directory: str) -> Pki:
    """Write the test PKI into ``directory``."""

    def path(name: str) -> str:
        return os.path.join(directory, name)

    def issue(name: str, cn: str, hosts, issuer, **kwargs) -> str:
        key = certs.generate_key()
        cert = certs.make_certificate(key, cn, hostnames=hosts, issuer=issuer, **kwargs)
        certs.write_key(path(name + ".key"), key)
        certs.write_certificate(path(name + ".crt"), cert)
        return certs.subject_of(cert)

    ca_key = certs.generate_key()
    ca = certs.make_certificate(ca_key, "Test CA", organization="Katcp Tests", days=2)
    certs.write_key(path("ca.key"), ca_key)
    certs.write_certificate(path("ca.crt"), ca)
    other_key = certs.generate_key()
    other = certs.make_certificate(other_key, "Other CA", days=2)
    certs.write_key(path("other-ca.key"), other_key)
    certs.write_certificate(path("other-ca.crt"), other)

    local = ["localhost", "127.0.0.1", "::1"]
    issue("server", "localhost", local, (ca, ca_key), days=2)
    issue("wrong-host", "elsewhere.example", ["elsewhere.example"], (ca, ca_key), days=2)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)
    issue("expired", "localhost", local, (ca, ca_key), not_before=past,
          not_after=past + datetime.timedelta(days=1))
    issue("rogue-server", "localhost", local, (other, other_key), days=2)
    alice = issue("alice", "alice", [], (ca, ca_key), organization="Katcp Tests", days=2)
    issue("rogue-client", "alice", [], (other, other_key), organization="Katcp Tests", days=2)
    return Pki(
        ca_cert=path("ca.crt"), ca_key=path("ca.key"), other_ca_cert=path("other-ca.crt"),
        server_cert=path("server.crt"), server_key=path("server.key"),
        wrong_host_cert=path("wrong-host.crt"), wrong_host_key=path("wrong-host.key"),
        expired_cert=path("expired.crt"), expired_key=path("expired.key"),
        rogue_server_cert=path("rogue-server.crt"), rogue_server_key=path("rogue-server.key"),
        alice_cert=path("alice.crt"), alice_key=path("alice.key"), alice_subject=alice,
        rogue_client_cert=path("rogue-client.crt"), rogue_client_key=path("rogue-client.key"),
    )
