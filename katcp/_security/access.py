"""Access control for one server: sessions, ``?login``, role checks and their audit.

A server given a user store makes one :class:`AccessControl` and asks it, in its
dispatcher (one place), about every request:

* :meth:`AccessControl.open_session` when a connection is made: a verified client
  certificate whose subject maps to a user logs that connection in at once;
* :meth:`AccessControl.check` before a handler runs: None to go ahead, or a
  :class:`Refusal` whose message goes back in a ``fail`` reply (before login only
  :data:`~katcp._security.roles.UNAUTHENTICATED_REQUESTS` pass; after it, the user's
  role must reach the role the request needs);
* :meth:`AccessControl.login` for ``?login USER PASSWORD`` (the password is checked off
  the event loop, failures back off per user and per address);
* :meth:`AccessControl.audit_reply` after a request that needs ``control`` or ``admin``
  (:meth:`AccessControl.is_audited`) has been answered;
* :meth:`AccessControl.login_timed_out` when the server closes a connection that did not
  log in within :attr:`AccessControl.login_timeout` seconds.

Everything is written to the audit log (:mod:`~katcp._security.audit`); the peer is told
little ("Login failed."), never whether a user exists. (:mod:`~katcp._security.redact`
hides the password of a ``?login`` from logs that show messages.)
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence, Union

from .audit import audit_event
from .backoff import LoginBackoff, address_key
from .roles import (
    CONTROL,
    UNAUTHENTICATED_REQUESTS,
    required_role,
    role_allows,
)
from .redact import REDACTED, SECRET_ARGUMENTS, redact_arguments
from .tls import peer_subject
from .userstore import User, UserStore

__all__ = ["AccessControl", "Refusal", "Session", "REDACTED", "SECRET_ARGUMENTS",
           "redact_arguments"]

#: Reply to a failed login, whatever the reason (unknown user or wrong password).
LOGIN_FAILED = "Login failed."
#: Reply to a request refused before login.
LOGIN_REQUIRED = "Login required: send ?login USER PASSWORD first."


@dataclass
class Session:
    """What the server knows about one connection's identity.

    Attributes
    ----------
    addr : str
        Peer address, ``host:port``.
    host : str or None
        Peer host (for the per-address backoff).
    subject : str or None
        Verified client-certificate subject.
    user : User or None
        The logged-in user; None until login.
    """

    addr: str
    host: str | None = None
    subject: str | None = None
    user: User | None = None
    _login_in_progress: bool = field(default=False, repr=False)

    @property
    def authenticated(self) -> bool:
        """Whether the connection has logged in."""
        return self.user is not None

    @property
    def user_name(self) -> str | None:
        """Name of the logged-in user, if any."""
        return self.user.name if self.user else None


@dataclass(frozen=True)
class Refusal:
    """A request refused: the ``fail`` reply's message, and the role it needs (if known)."""

    message: str
    needed_role: str | None = None


class AccessControl:
    """Login, role checks and audit for the connections of one server.

    Parameters
    ----------
    users : UserStore or str or os.PathLike
        The user store, or the path of its file.
    login_timeout : float or None
        Seconds a connection may stay without logging in before the server closes it
        (None: never).
    backoff : LoginBackoff, optional
        Failed-login delays (default: a new :class:`LoginBackoff`).
    executor : concurrent.futures.Executor, optional
        Where password checks run (default: the loop's default executor), so that a
        deliberately slow hash does not stall the server.
    audit_logger : logging.Logger, optional
        Audit log (default ``katcp.audit``).
    max_logins_per_address : int
        Password checks allowed at once from one address (:func:`address_key`); more
        are refused at once, so that many connections cannot queue up slow checks before
        the backoff has seen a failure.
    """

    def __init__(self, users: Union[UserStore, str, os.PathLike], *,
                 login_timeout: float | None = 60.0, backoff: LoginBackoff | None = None,
                 executor: Executor | None = None,
                 audit_logger: logging.Logger | None = None,
                 max_logins_per_address: int = 2) -> None:
        self.users = users if isinstance(users, UserStore) else UserStore(users)
        if login_timeout is not None and login_timeout <= 0:
            raise ValueError("login_timeout must be positive (or None)")
        self.login_timeout = login_timeout
        self.backoff = backoff if backoff is not None else LoginBackoff()
        self.executor = executor
        self.audit_logger = audit_logger
        self.max_logins_per_address = max_logins_per_address
        self._checking: Dict[str, int] = {}

    def _audit(self, event: str, session: Session, *, user: str | None = None,
               request: str | None = None, status: str | None = None,
               detail: str | None = None, level: int = logging.INFO) -> None:
        audit_event(event, user=user if user is not None else session.user_name,
                    addr=session.addr, request=request, status=status, detail=detail,
                    level=level, logger=self.audit_logger)

    # -- Connections ---------------------------------------------------------------------

    def open_session(self, addr: str, host: str | None = None,
                     ssl_object: Any = None) -> Session:
        """A new connection: its session, logged in if its certificate maps to a user.

        Parameters
        ----------
        addr : str
            Peer address, ``host:port``.
        host : str, optional
            Peer host.
        ssl_object : ssl.SSLObject, optional
            The connection's TLS object (``transport.get_extra_info("ssl_object")``).

        Returns
        -------
        session : Session
        """
        session = Session(addr=addr, host=host, subject=peer_subject(ssl_object))
        if session.subject:
            user = self.users.user_for_subject(session.subject)
            if user is not None:
                session.user = user
                self._audit("login", session, request="certificate", status="ok",
                            detail=f"role {user.role}; {session.subject}")
            else:
                self._audit("login", session, request="certificate", status="fail",
                            detail=f"no user for {session.subject}", level=logging.WARNING)
        return session

    def login_timed_out(self, session: Session) -> None:
        """Audit that the server closed ``session``'s connection for not logging in."""
        self._audit("login-timeout", session, status="closed",
                    detail=f"no login within {self.login_timeout:g} s",
                    level=logging.WARNING)

    def audit_idle_close(self, session: Session, timeout: float) -> None:
        """Audit that the server closed ``session``'s connection for being idle."""
        self._audit("idle-close", session, status="closed",
                    detail=f"nothing sent and no request completed for {timeout:g} s")

    # -- Requests ------------------------------------------------------------------------

    def check(self, session: Session, name: str, arguments: Sequence[Any],
              handler: Any) -> Refusal | None:
        """Whether ``session`` may make request ``name``; None if so.

        Parameters
        ----------
        session : Session
            The requesting connection.
        name : str
            Request name.
        arguments : sequence
            Its arguments (their number decides ``?log-level``'s role).
        handler : callable or None
            The handler the server would call (None: no such request).

        Returns
        -------
        refusal : Refusal or None
        """
        if session.user is None:
            if name in UNAUTHENTICATED_REQUESTS:
                return None
            self._audit("refused", session, request=name, status="fail",
                        detail="not logged in", level=logging.WARNING)
            return Refusal(LOGIN_REQUIRED)
        if handler is None:
            return None  # the server answers "unknown request" as usual
        needed = required_role(handler, name, arguments)
        if role_allows(session.user.role, needed):
            return None
        self._audit("refused", session, request=name, status="fail",
                    detail=f"needs role {needed}, has {session.user.role}",
                    level=logging.WARNING)
        return Refusal(f"Permission denied: ?{name} needs the {needed} role.", needed)

    def is_audited(self, name: str, arguments: Sequence[Any], handler: Any) -> bool:
        """Whether the reply to this request goes to the audit log (needs control+)."""
        return handler is not None and role_allows(
            required_role(handler, name, arguments), CONTROL)

    def audit_reply(self, session: Session, name: str, status: str) -> None:
        """Audit the answer to an audited request.

        Parameters
        ----------
        session : Session
            Who asked.
        name : str
            Request name.
        status : str
            The reply's status (``ok``, ``fail``, ``invalid``...).
        """
        self._audit("request", session, request=name, status=status)

    # -- Login ---------------------------------------------------------------------------

    async def login(self, session: Session, user: str, password: str) -> tuple:
        """Handle ``?login USER PASSWORD``; return the reply's arguments.

        Parameters
        ----------
        session : Session
            The connection logging in (updated on success; unchanged on failure).
        user : str
            User name.
        password : str
            Password (never logged, never kept).

        Returns
        -------
        reply : tuple
            ``("ok", role)`` or ``("fail", message)``.
        """
        if session._login_in_progress:
            return ("fail", "A login is already in progress on this connection.")
        wait = self.backoff.delay(user, session.host)
        if wait > 0:
            self._audit("login", session, user=user, request="login", status="fail",
                        detail=f"backoff, {wait:.1f} s left", level=logging.WARNING)
            return ("fail", f"Too many failed logins: try again in {math.ceil(wait)} s.")
        key = address_key(session.host)
        if self._checking.get(key, 0) >= self.max_logins_per_address:
            self._audit("login", session, user=user, request="login", status="fail",
                        detail="too many logins at once from this address",
                        level=logging.WARNING)
            return ("fail", "Too many logins at once: try again later.")
        session._login_in_progress = True
        self._checking[key] = self._checking.get(key, 0) + 1
        try:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self.executor, self.users.verify, user,
                                               password)
        except Exception as exc:
            # The store is broken (file gone, locked...): an operator problem, not the
            # peer's; no traceback to the peer, and never the arguments in the log.
            self._audit("login", session, user=user, request="login", status="error",
                        detail=f"user store error: {type(exc).__name__}",
                        level=logging.ERROR)
            return ("fail", LOGIN_FAILED)
        finally:
            session._login_in_progress = False
            count = self._checking.pop(key) - 1
            if count:
                self._checking[key] = count
        if found is None:
            delay = self.backoff.record_failure(user, session.host)
            self._audit("login", session, user=user, request="login", status="fail",
                        detail=f"bad user or password; next attempt in {delay:.1f} s",
                        level=logging.WARNING)
            return ("fail", LOGIN_FAILED)
        self.backoff.record_success(user, session.host)
        previous = session.user_name
        session.user = found
        detail = f"role {found.role}" + (f"; was {previous}" if previous else "")
        self._audit("login", session, request="login", status="ok", detail=detail)
        return ("ok", found.role)
