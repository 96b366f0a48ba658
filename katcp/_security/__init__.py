"""Security building blocks for KATCP endpoints (private; layer L3, beside the servers).

One job per module:

* :mod:`~katcp._security.passwords` -- scrypt password hashes and constant-time checks;
* :mod:`~katcp._security.userstore` -- :class:`UserStore`, the SQLite user database;
* :mod:`~katcp._security.backoff` -- :class:`LoginBackoff`, failed-login delays per user
  and per peer address;
* :mod:`~katcp._security.audit` -- the ``katcp.audit`` log: one escaped line per event;
* :mod:`~katcp._security.roles` -- role names and order, the role each standard request
  needs, and :func:`requires_role` for handlers;
* :mod:`~katcp._security.tls` -- :class:`ssl.SSLContext` builders and the peer certificate
  subject;
* :mod:`~katcp._security.access` -- :class:`AccessControl`: a server's sessions, ``?login``,
  role checks and their audit, from the pieces above;
* :mod:`~katcp._security.redact` -- :func:`loggable`: messages for logs, ``?login``'s
  password replaced;
* :mod:`~katcp._security.certs` -- certificate generation and description for the admin
  tool and tests (needs the optional ``cryptography`` library, so it is not imported here).

Nothing here imports the server or client modules: they use these pieces, not the reverse.
"""

from __future__ import annotations

from .access import AccessControl, Refusal, Session, redact_arguments
from .audit import AUDIT_LOGGER_NAME, audit_event, format_event, open_audit_log
from .backoff import LoginBackoff
from .redact import loggable
from .passwords import ScryptParams, hash_password, verify_password
from .roles import (
    ADMIN,
    CONTROL,
    READ,
    ROLES,
    UNAUTHENTICATED_REQUESTS,
    default_role,
    required_role,
    requires_role,
    role_allows,
)
from .tls import client_context, peer_subject, server_context
from .userstore import User, UserStore, UserStoreError

__all__ = [
    "ADMIN",
    "AccessControl",
    "Refusal",
    "Session",
    "redact_arguments",
    "AUDIT_LOGGER_NAME",
    "CONTROL",
    "LoginBackoff",
    "READ",
    "ROLES",
    "ScryptParams",
    "UNAUTHENTICATED_REQUESTS",
    "User",
    "UserStore",
    "UserStoreError",
    "audit_event",
    "client_context",
    "default_role",
    "format_event",
    "hash_password",
    "loggable",
    "open_audit_log",
    "peer_subject",
    "required_role",
    "requires_role",
    "role_allows",
    "server_context",
    "verify_password",
]
