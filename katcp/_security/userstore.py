"""The user database: :class:`UserStore`, on SQLite.

One table, ``users``: name, role, password hash (:mod:`~katcp._security.passwords`; never
the password or anything it could be recovered from), an optional TLS client-certificate
subject that logs the user in without a password, and when the row was created and last
changed. The file is created readable and writable by its owner only (0600); a store
whose file others may read is used, with a warning in the log.

Each operation opens the file, does its work in one transaction and closes it, so a
server sees at its next login what ``katcp-admin user ...`` changed meanwhile, and the
store may be used from any thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import stat
import time
from dataclasses import dataclass
from typing import Iterator, List, Union

from .passwords import DEFAULT_PARAMS, ScryptParams, dummy_verify, hash_password
from .passwords import needs_rehash, verify_password
from .roles import check_role

__all__ = ["User", "UserStore", "UserStoreError", "UserExistsError", "UnknownUserError",
           "check_user_name"]

log = logging.getLogger("katcp.security")

#: User names: letters, digits and ``. _ @ -``, 1 to 64 characters, starting with a letter
#: or digit (so they need no escaping in KATCP messages or the audit log).
USER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('read', 'control', 'admin')),
    password_hash TEXT NOT NULL,
    subject TEXT UNIQUE,
    created REAL NOT NULL,
    updated REAL NOT NULL
)
"""


class UserStoreError(ValueError):
    """A user store operation was refused (the message says why; it never has a secret)."""


class UserExistsError(UserStoreError):
    """The user (or certificate subject) is already in the store."""


class UnknownUserError(UserStoreError, KeyError):
    """The user is not in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class User:
    """A user as stored, without the password hash.

    Attributes
    ----------
    name : str
        User name.
    role : str
        ``"read"``, ``"control"`` or ``"admin"``.
    subject : str or None
        TLS client-certificate subject (``CN=...,O=...``) that logs this user in.
    """

    name: str
    role: str
    subject: str | None = None


def check_user_name(name: str) -> str:
    """Return ``name`` if it is a valid user name; raise :class:`UserStoreError` otherwise."""
    if not isinstance(name, str) or not USER_NAME_RE.match(name):
        raise UserStoreError(
            "user names are 1-64 letters, digits or '._@-', starting with a letter or digit")
    return name


def _check_subject(subject: str | None) -> str | None:
    if subject is None:
        return None
    subject = subject.strip()
    if not subject or any(not ch.isprintable() for ch in subject):
        raise UserStoreError("a certificate subject must be printable text, e.g. CN=alice,O=Lab")
    return subject


class UserStore:
    """Users, their roles and password hashes in a SQLite file.

    Parameters
    ----------
    path : str or os.PathLike
        Database file; created (0600, with its table) if missing.
    params : ScryptParams
        scrypt cost for new password hashes (and for the work done for unknown users).
        Hashes with other parameters still verify, and are replaced by ones with these
        at the user's next successful login.

    Raises
    ------
    UserStoreError
        The file exists but is not a user store.
    """

    def __init__(self, path: Union[str, os.PathLike], *,
                 params: ScryptParams = DEFAULT_PARAMS) -> None:
        self.path = os.fspath(path)
        self.params = params
        self._create_file()
        try:
            with self._transaction() as db:
                db.execute(_SCHEMA)
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version != SCHEMA_VERSION:
                    raise UserStoreError(
                        f"{self.path}: user store version {version}, expected {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise UserStoreError(f"{self.path} is not a katcp user store: {exc}") from None

    def __repr__(self) -> str:
        return f"UserStore({self.path!r})"

    def _create_file(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            self._warn_if_shared()
            return
        os.close(fd)

    def _warn_if_shared(self) -> None:
        if os.name != "posix":
            return
        mode = os.stat(self.path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("User store %s can be read or written by other users "
                        "(mode %o); chmod 600 it", self.path, stat.S_IMODE(mode))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10.0)
        try:
            # Overwrite deleted rows (old hashes) instead of leaving them in free pages.
            db.execute("PRAGMA secure_delete = ON")
            with db:
                yield db
        finally:
            db.close()

    # -- Changing users ------------------------------------------------------------------

    def add_user(self, name: str, password: str, role: str, *,
                 subject: str | None = None) -> User:
        """Add a user.

        Parameters
        ----------
        name : str
            User name (see :data:`USER_NAME_RE`).
        password : str
            The password; only its hash is stored.
        role : str
            ``"read"``, ``"control"`` or ``"admin"``.
        subject : str, optional
            TLS client-certificate subject that logs this user in.

        Returns
        -------
        user : User

        Raises
        ------
        UserExistsError
            The name, or the subject, is taken.
        UserStoreError, ValueError
            Bad name, role, subject or password.
        """
        check_user_name(name)
        try:
            check_role(role)
        except ValueError as exc:
            raise UserStoreError(str(exc)) from None
        subject = _check_subject(subject)
        hashed = self._hash(password)
        now = time.time()
        try:
            with self._transaction() as db:
                db.execute("INSERT INTO users (name, role, password_hash, subject, created, "
                           "updated) VALUES (?, ?, ?, ?, ?, ?)",
                           (name, role, hashed, subject, now, now))
        except sqlite3.IntegrityError:
            what = f"user {name!r}" if self.get_user(name) else f"subject {subject!r}"
            raise UserExistsError(f"{what} is already in {self.path}") from None
        return User(name, role, subject)

    def _hash(self, password: str) -> str:
        try:
            return hash_password(password, self.params)
        except (TypeError, ValueError) as exc:
            raise UserStoreError(str(exc)) from None

    def remove_user(self, name: str) -> None:
        """Remove a user.

        Raises
        ------
        UnknownUserError
            No such user.
        """
        with self._transaction() as db:
            count = db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
        if not count:
            raise UnknownUserError(f"no user {name!r} in {self.path}")

    def set_password(self, name: str, password: str) -> None:
        """Replace a user's password (with a new salt).

        Raises
        ------
        UnknownUserError
            No such user.
        """
        self._update(name, "password_hash", self._hash(password))

    def set_role(self, name: str, role: str) -> None:
        """Change a user's role.

        Raises
        ------
        UnknownUserError
            No such user.
        """
        try:
            check_role(role)
        except ValueError as exc:
            raise UserStoreError(str(exc)) from None
        self._update(name, "role", role)

    def set_subject(self, name: str, subject: str | None) -> None:
        """Map a TLS client-certificate subject to a user (None: remove the mapping).

        Raises
        ------
        UnknownUserError
            No such user.
        UserExistsError
            Another user has that subject.
        """
        try:
            self._update(name, "subject", _check_subject(subject))
        except sqlite3.IntegrityError:
            raise UserExistsError(f"subject {subject!r} belongs to another user") from None

    def _update(self, name: str, column: str, value: str | None) -> None:
        # ``column`` is one of our own literals, never user input.
        with self._transaction() as db:
            count = db.execute(f"UPDATE users SET {column} = ?, updated = ? WHERE name = ?",
                               (value, time.time(), name)).rowcount
        if not count:
            raise UnknownUserError(f"no user {name!r} in {self.path}")

    # -- Reading users -------------------------------------------------------------------

    def get_user(self, name: str) -> User | None:
        """The user called ``name``, or None."""
        with self._transaction() as db:
            row = db.execute("SELECT name, role, subject FROM users WHERE name = ?",
                             (name,)).fetchone()
        return User(*row) if row else None

    def list_users(self) -> List[User]:
        """All users, sorted by name."""
        with self._transaction() as db:
            rows = db.execute("SELECT name, role, subject FROM users ORDER BY name").fetchall()
        return [User(*row) for row in rows]

    def user_for_subject(self, subject: str | None) -> User | None:
        """The user whose certificate subject is ``subject``, or None."""
        if not subject:
            return None
        with self._transaction() as db:
            row = db.execute("SELECT name, role, subject FROM users WHERE subject = ?",
                             (subject.strip(),)).fetchone()
        return User(*row) if row else None

    def verify(self, name: str, password: str) -> User | None:
        """Check a user's password.

        Takes as long for an unknown user as for a wrong password, and compares in
        constant time. Slow on purpose (scrypt): call it off the event loop. A hash made
        with other parameters than :attr:`params` is replaced after a successful check.

        Parameters
        ----------
        name : str
            User name.
        password : str
            Password to check.

        Returns
        -------
        user : User or None
            The user if the password is right; None for a wrong password or unknown user.
        """
        with self._transaction() as db:
            row = db.execute("SELECT name, role, subject, password_hash FROM users "
                             "WHERE name = ?", (name,)).fetchone()
        if row is None:
            dummy_verify(password, self.params)
            return None
        stored = row[3]
        if not verify_password(password, stored):
            return None
        if needs_rehash(stored, self.params):
            self._rehash(row[0], stored, password)
        return User(row[0], row[1], row[2])

    def _rehash(self, name: str, stored: str, password: str) -> None:
        with self._transaction() as db:
            # Only if nobody changed the password meanwhile.
            db.execute("UPDATE users SET password_hash = ?, updated = ? "
                       "WHERE name = ? AND password_hash = ?",
                       (self._hash(password), time.time(), name, stored))
