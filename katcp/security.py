"""Secure KATCP: TLS contexts, the user store, roles, access control and the audit log.

The public import path of the security pieces (see the Security chapter). Each job lives
in a module of :mod:`katcp._security`:

* :mod:`katcp._security.tls` -- :func:`server_context`, :func:`client_context` (TLS 1.2+,
  checks on) and :func:`peer_subject`, the client certificate's subject;
* :mod:`katcp._security.userstore` -- :class:`UserStore`, the SQLite user database
  (scrypt hashes, a salt per user), and :class:`User`;
* :mod:`katcp._security.roles` -- the roles :data:`READ`, :data:`CONTROL`, :data:`ADMIN`
  (:data:`ROLES`, weakest first), :func:`requires_role` for request handlers,
  :func:`required_role` and :func:`role_allows`;
* :mod:`katcp._security.access` -- :class:`AccessControl`, what a server given ``users=``
  consults for every request (login, role checks, their audit);
* :mod:`katcp._security.audit` -- the ``katcp.audit`` logger: :func:`open_audit_log`,
  :func:`close_audit_log`, :func:`audit_event`;
* :mod:`katcp._security.backoff` -- :class:`LoginBackoff`, failed-login delays.

Certificate generation (``katcp-admin certgen``) needs the optional ``cryptography``
library and is not re-exported here.
"""

from __future__ import annotations

from katcp._security.access import AccessControl, Refusal, Session
from katcp._security.audit import (
    AUDIT_LOGGER_NAME,
    audit_event,
    close_audit_log,
    format_event,
    open_audit_log,
)
from katcp._security.backoff import LoginBackoff
from katcp._security.passwords import ScryptParams
from katcp._security.roles import (
    ADMIN,
    CONTROL,
    READ,
    ROLES,
    UNAUTHENTICATED_REQUESTS,
    required_role,
    requires_role,
    role_allows,
)
from katcp._security.tls import INSECURE_WARNING, client_context, peer_subject, server_context
from katcp._security.userstore import User, UserStore, UserStoreError

__all__ = [
    "ADMIN",
    "AUDIT_LOGGER_NAME",
    "AccessControl",
    "CONTROL",
    "INSECURE_WARNING",
    "LoginBackoff",
    "READ",
    "ROLES",
    "Refusal",
    "ScryptParams",
    "Session",
    "UNAUTHENTICATED_REQUESTS",
    "User",
    "UserStore",
    "UserStoreError",
    "audit_event",
    "client_context",
    "close_audit_log",
    "format_event",
    "open_audit_log",
    "peer_subject",
    "required_role",
    "requires_role",
    "role_allows",
    "server_context",
]
