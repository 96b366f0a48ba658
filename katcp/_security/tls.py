"""TLS contexts for servers and clients, and the peer certificate's subject.

:func:`server_context` and :func:`client_context` build :class:`ssl.SSLContext` objects
with safe defaults (TLS 1.2 or later, certificate and host name checks on); the contexts
go to the ``ssl=`` arguments of servers and clients. Mutual TLS: give the server a
``client_ca`` and it requires every client to present a certificate signed by it;
:func:`peer_subject` then names the client, e.g. ``CN=alice,O=Lab``, in the same form as
:meth:`cryptography.x509.Name.rfc4514_string` (and ``katcp-admin certdump``) write it,
which is the form a :class:`~katcp._security.userstore.UserStore` maps to a user.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any, Sequence, Tuple, Union

__all__ = [
    "INSECURE_WARNING",
    "client_context",
    "describe_connect_error",
    "peer_subject",
    "server_context",
    "subject_string",
]

PathLike = Union[str, "os.PathLike[str]"]

#: What a tool should print when asked to connect without checking the server.
INSECURE_WARNING = ("WARNING: --insecure: the server's certificate is not checked; anyone "
                    "between you and the server can read and change this connection.")

# Attribute names as getpeercert() gives them -> RFC 4514 short names (those that
# cryptography's rfc4514_string writes by name; others are written as dotted OIDs).
_SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "domainComponent": "DC",
    "userId": "UID",
}
# Names getpeercert() uses for attributes RFC 4514 has no short name for.
_OIDS = {
    "emailAddress": "1.2.840.113549.1.9.1",
    "serialNumber": "2.5.4.5",
    "surname": "2.5.4.4",
    "givenName": "2.5.4.42",
    "title": "2.5.4.12",
    "initials": "2.5.4.43",
    "generationQualifier": "2.5.4.44",
    "pseudonym": "2.5.4.65",
    "dnQualifier": "2.5.4.46",
    "businessCategory": "2.5.4.15",
    "postalCode": "2.5.4.17",
}


# TLS 1.2 renegotiation: katcp's TLS transport does not support it (see
# katcp._transport.tlsbio). The flag is in every OpenSSL since 1.1.0h.
_NO_RENEGOTIATION = getattr(ssl, "OP_NO_RENEGOTIATION", 0)


def _fspath(path: PathLike | None) -> str | None:
    return None if path is None else os.fspath(path)


def server_context(certfile: PathLike, keyfile: PathLike | None = None, *,
                   client_ca: PathLike | None = None,
                   password: str | None = None) -> ssl.SSLContext:
    """TLS context for a server.

    Parameters
    ----------
    certfile : str or os.PathLike
        The server's certificate (PEM; may be followed by its chain).
    keyfile : str or os.PathLike, optional
        Its private key (PEM), if not in ``certfile``.
    client_ca : str or os.PathLike, optional
        CA certificate(s) (PEM) that client certificates must be signed by. When given,
        every client must present one (mutual TLS, ``CERT_REQUIRED``).
    password : str, optional
        Password of an encrypted private key.

    Returns
    -------
    context : ssl.SSLContext

    Raises
    ------
    OSError, ssl.SSLError
        A file is missing or unreadable, or the key does not match the certificate.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= _NO_RENEGOTIATION
    ctx.load_cert_chain(os.fspath(certfile), _fspath(keyfile), password=password)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=os.fspath(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(*, cafile: PathLike | None = None, certfile: PathLike | None = None,
                   keyfile: PathLike | None = None, insecure: bool = False,
                   password: str | None = None) -> ssl.SSLContext:
    """TLS context for a client.

    Parameters
    ----------
    cafile : str or os.PathLike, optional
        CA certificate(s) (PEM) to check the server's certificate against (for a
        self-signed server, its certificate itself). Default: the system's CAs.
    certfile : str or os.PathLike, optional
        The client's certificate, for servers that require one.
    keyfile : str or os.PathLike, optional
        Its private key, if not in ``certfile``.
    insecure : bool
        Do not check the server's certificate or host name at all. The connection is still
        encrypted, but not protected from a man in the middle: the caller should say so
        (:data:`INSECURE_WARNING`).
    password : str, optional
        Password of an encrypted private key.

    Returns
    -------
    context : ssl.SSLContext
    """
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_fspath(cafile))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= _NO_RENEGOTIATION
    if certfile is not None:
        ctx.load_cert_chain(os.fspath(certfile), _fspath(keyfile), password=password)
    return ctx


def _escape_rdn_value(value: str) -> str:
    # RFC 4514 section 2.4, character for character as cryptography does it.
    if not value:
        return ""
    for ch, esc in (("\\", "\\\\"), ('"', '\\"'), ("+", "\\+"), (",", "\\,"),
                    (";", "\\;"), ("<", "\\<"), (">", "\\>"), ("\0", "\\00")):
        value = value.replace(ch, esc)
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def subject_string(subject: Sequence[Sequence[Tuple[str, str]]]) -> str:
    """RFC 4514 string of a subject as :meth:`ssl.SSLSocket.getpeercert` gives it.

    Parameters
    ----------
    subject : sequence
        The ``"subject"`` entry of ``getpeercert()``: relative distinguished names, each a
        sequence of ``(attribute name, value)`` pairs, in certificate order.

    Returns
    -------
    text : str
        Most specific first, e.g. ``CN=alice,OU=Control,O=Lab``.
    """
    rdns = []
    for rdn in reversed(list(subject)):
        parts = []
        for name, value in rdn:
            key = _SHORT_NAMES.get(name) or _OIDS.get(name) or name
            parts.append(f"{key}={_escape_rdn_value(value)}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def peer_subject(ssl_object: Any) -> str | None:
    """Subject of the certificate the peer presented and the handshake verified.

    Parameters
    ----------
    ssl_object : ssl.SSLObject or ssl.SSLSocket or None
        The connection's TLS object (``transport.get_extra_info("ssl_object")``).

    Returns
    -------
    subject : str or None
        E.g. ``CN=alice,O=Lab``; None without TLS, without a client certificate, or when
        the certificate was not verified (``getpeercert()`` is then empty).
    """
    if ssl_object is None:
        return None
    try:
        cert = ssl_object.getpeercert()
    except (ValueError, ssl.SSLError):  # handshake not done
        return None
    if not cert or not cert.get("subject"):
        return None
    return subject_string(cert["subject"])


# OpenSSL reasons that mean "what came back was not TLS".
_NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                    "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "UNEXPECTED_EOF_WHILE_READING"}


def describe_connect_error(exc: BaseException | None, tls: bool, *,
                           silent_close: bool = False, silent_greeting: bool = False) -> str:
    """Plain words for why a client could not connect (for logs and tools).

    Parameters
    ----------
    exc : BaseException or None
        What connecting raised (or why the connection was lost); None with
        ``silent_greeting``.
    tls : bool
        Whether the client was using TLS.
    silent_close : bool
        The server closed a connection that had delivered nothing yet.
    silent_greeting : bool
        The connection is up but the server has said nothing within the caller's wait.

    Returns
    -------
    text : str
        E.g. ``"TLS certificate check failed: certificate has expired"`` or
        ``"... does not seem to speak TLS (plain KATCP? connect without TLS)"``.
    """
    if silent_greeting:
        if tls:
            return ("connected with TLS, but the server has sent nothing (no "
                    "#version-connect): it may not be a KATCP server")
        return ("connected, but the server has sent nothing (no #version-connect): it may "
                "be a TLS server (connect with TLS, e.g. --tls)")
    if silent_close:
        if tls:
            return ("the server closed the connection during or right after the TLS "
                    "handshake: it may require a client certificate (--cert/--key) "
                    "that it trusts")
        return ("the server closed the connection without a word: it may be a TLS "
                "server (connect with TLS, e.g. --tls)")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate check failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason in _NOT_TLS_REASONS:
            return (f"TLS handshake failed ({reason}): the server does not seem to speak "
                    "TLS (plain KATCP? connect without TLS)")
        if reason in ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
                      "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN"):
            return (f"the server refused our client certificate ({reason}): give one it "
                    "trusts (--cert/--key)")
        return f"TLS error: {reason}"
    if isinstance(exc, asyncio.TimeoutError) and tls:
        return ("timed out connecting or in the TLS handshake: the server may not speak "
                "TLS, or may be unreachable")
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out connecting"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running on that port?)"
    text = str(exc) or type(exc).__name__
    return text
