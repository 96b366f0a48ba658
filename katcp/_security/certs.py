"""Certificates for TLS: make keys and certificates, read and describe them.

Used by ``katcp-admin certgen`` / ``certdump`` and by the tests. Needs the optional
``cryptography`` library (``pip install katcp[security]``); servers and clients do not:
they only load PEM files with :mod:`ssl`.

Keys are ECDSA P-256 (small, fast, accepted everywhere TLS 1.2+ is). A certificate is
either self-signed, usable as its own trust anchor (``--cafile`` on the client), or
signed by a CA certificate and key given as ``issuer``: a private CA for a lab signs the
server's certificate and each user's client certificate, and the server names the CA in
``--tls-client-ca``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Iterable, List, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "describe_certificate",
    "generate_key",
    "load_certificate",
    "load_key",
    "make_certificate",
    "subject_of",
    "write_certificate",
    "write_key",
]

PathLike = Union[str, "os.PathLike[str]"]
PrivateKey = ec.EllipticCurvePrivateKey


def generate_key() -> PrivateKey:
    """A new ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _san(hostnames: Iterable[str]) -> List[x509.GeneralName]:
    names: List[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_certificate(key: PrivateKey, common_name: str, *, hostnames: Iterable[str] = (),
                     days: float = 365, organization: str | None = None,
                     issuer: Tuple[x509.Certificate, PrivateKey] | None = None,
                     not_before: datetime.datetime | None = None,
                     not_after: datetime.datetime | None = None) -> x509.Certificate:
    """A certificate for ``key``, self-signed or signed by ``issuer``.

    Parameters
    ----------
    key : EllipticCurvePrivateKey
        The subject's private key.
    common_name : str
        Subject common name (a host name for a server, a user name for a client).
    hostnames : iterable of str
        Host names and IP addresses for the subject alternative name (what clients check).
    days : float
        Validity from now (ignored where ``not_before``/``not_after`` are given).
    organization : str, optional
        Subject organisation (``O=``).
    issuer : (certificate, key), optional
        CA to sign with; the certificate is then not a CA itself. Without it the
        certificate is self-signed and a CA (so it can be a trust anchor and sign others).
    not_before, not_after : datetime.datetime, optional
        Explicit validity (aware datetimes), e.g. to make an expired certificate for tests.

    Returns
    -------
    certificate : cryptography.x509.Certificate
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    start = not_before or now - datetime.timedelta(minutes=5)
    end = not_after or now + datetime.timedelta(days=days)
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(attrs)
    is_ca = issuer is None
    signer_cert, signer_key = issuer if issuer else (None, key)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert else subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None),
                       critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=is_ca,
            crl_sign=is_ca, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            signer_key.public_key()), critical=False)
    )
    names = _san(hostnames)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def _write_new(path: PathLike, data: bytes, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(os.fspath(path), flags, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_key(path: PathLike, key: PrivateKey, *, overwrite: bool = False) -> None:
    """Write a private key (PEM, unencrypted) readable by its owner only (0600).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    _write_new(path, data, 0o600, overwrite)


def write_certificate(path: PathLike, cert: x509.Certificate, *,
                      overwrite: bool = False) -> None:
    """Write a certificate (PEM; it is public, 0644).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    _write_new(path, cert.public_bytes(serialization.Encoding.PEM), 0o644, overwrite)


def load_certificate(path: PathLike) -> x509.Certificate:
    """Read a PEM certificate (the first one in the file).

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        It holds no PEM certificate.
    """
    with open(os.fspath(path), "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def load_key(path: PathLike, password: bytes | None = None) -> PrivateKey:
    """Read a PEM private key.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        It holds no PEM key (or the password is wrong).
    """
    with open(os.fspath(path), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=password)
    return key  # type: ignore[return-value]


def subject_of(cert: x509.Certificate) -> str:
    """The subject as the server sees it (RFC 4514, e.g. ``CN=alice,O=Lab``)."""
    return cert.subject.rfc4514_string()


def _valid_from(cert: x509.Certificate) -> datetime.datetime:
    return getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before.replace(
        tzinfo=datetime.timezone.utc)


def _valid_until(cert: x509.Certificate) -> datetime.datetime:
    return getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
        tzinfo=datetime.timezone.utc)


def describe_certificate(cert: x509.Certificate,
                         now: datetime.datetime | None = None) -> str:
    """A human-readable summary: subject, issuer, validity, names, key, fingerprint.

    Parameters
    ----------
    cert : cryptography.x509.Certificate
        The certificate.
    now : datetime.datetime, optional
        Time to judge validity at (default now).

    Returns
    -------
    text : str
        Several ``Field: value`` lines.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    start, end = _valid_from(cert), _valid_until(cert)
    if now < start:
        state = "NOT YET VALID"
    elif now > end:
        state = "EXPIRED"
    else:
        state = f"valid, {(end - now).days} days left"
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = ", ".join(str(v) for v in names.get_values_for_type(x509.DNSName)
                         + [str(ip) for ip in names.get_values_for_type(x509.IPAddress)])
    except x509.ExtensionNotFound:
        sans = "(none)"
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    public = cert.public_key()
    key_desc = type(public).__name__.replace("_", "")
    curve = getattr(public, "curve", None)
    if curve is not None:
        key_desc = f"EC {curve.name}"
    elif hasattr(public, "key_size"):
        key_desc = f"RSA {public.key_size} bits"
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    lines = [
        f"Subject:      {subject_of(cert)}",
        f"Issuer:       {cert.issuer.rfc4514_string()}",
        f"Self-signed:  {'yes' if cert.issuer == cert.subject else 'no'}",
        f"CA:           {'yes' if ca else 'no'}",
        f"Serial:       {cert.serial_number:x}",
        f"Valid from:   {start.isoformat()}",
        f"Valid until:  {end.isoformat()}",
        f"Status:       {state}",
        f"Host names:   {sans}",
        f"Public key:   {key_desc}",
        f"SHA-256:      {fingerprint}",
    ]
    return "\n".join(lines)
