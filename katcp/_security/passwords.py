"""Password hashes: scrypt with a random salt per password, checked in constant time.

A hash is stored as one ASCII string that carries everything needed to check it::

    scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>

so that the cost can be raised later without breaking stored hashes
(:func:`needs_rehash` tells when a hash uses other parameters than the current ones).
scrypt is memory-hard: guessing passwords from a stolen database costs memory as well as
time, which is what makes GPUs and ASICs expensive to use for it.

Checking a password for a user that does not exist should cost the same as for one that
does, or the reply time tells an attacker which names are real: :func:`dummy_verify`
does the same work against a fixed hash and returns False.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PARAMS",
    "MAX_PASSWORD_LENGTH",
    "ScryptParams",
    "dummy_verify",
    "hash_password",
    "needs_rehash",
    "verify_password",
]

SCHEME = "scrypt"
#: Bytes of random salt per password.
SALT_BYTES = 16
#: Bytes of derived key stored.
HASH_BYTES = 32
#: Longest password accepted, in characters (a bound on the work one attempt can cause).
MAX_PASSWORD_LENGTH = 1024


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters.

    Parameters
    ----------
    n : int
        CPU/memory cost, a power of two > 1; memory used is about ``128 * n * r`` bytes.
    r : int
        Block size.
    p : int
        Parallelisation.
    """

    n: int = 2**15
    r: int = 8
    p: int = 1

    #: Bounds on parameters read from a stored hash, so that a tampered database cannot
    #: make one check take gigabytes or minutes.
    MAX_N = 2**20
    MAX_R = 32
    MAX_P = 16

    def __post_init__(self) -> None:
        n, r, p = self.n, self.r, self.p
        if not (isinstance(n, int) and 1 < n <= self.MAX_N and n & (n - 1) == 0):
            raise ValueError(f"scrypt n must be a power of two in 2..{self.MAX_N}, not {n!r}")
        if not (isinstance(r, int) and 1 <= r <= self.MAX_R):
            raise ValueError(f"scrypt r must be in 1..{self.MAX_R}, not {r!r}")
        if not (isinstance(p, int) and 1 <= p <= self.MAX_P):
            raise ValueError(f"scrypt p must be in 1..{self.MAX_P}, not {p!r}")

    @property
    def maxmem(self) -> int:
        """Memory limit to give :func:`hashlib.scrypt` (its default only allows 32 MiB)."""
        return 128 * self.r * (self.n + self.p + 2) + 2**20


#: Parameters for new hashes: 32 MiB and some 0.1 s per check on a current CPU.
DEFAULT_PARAMS = ScryptParams()


def _encode_password(password: str) -> bytes:
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    if not password:
        raise ValueError("password must not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
    return password.encode("utf-8")


def _derive(password: bytes, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=params.n, r=params.r, p=params.p,
                          maxmem=params.maxmem, dklen=HASH_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, params: ScryptParams = DEFAULT_PARAMS) -> str:
    """Hash ``password`` with a fresh random salt.

    Parameters
    ----------
    password : str
        The password (1 to :data:`MAX_PASSWORD_LENGTH` characters).
    params : ScryptParams
        Cost parameters.

    Returns
    -------
    encoded : str
        ``scrypt$n$r$p$salt$hash``, to store and later give to :func:`verify_password`.

    Raises
    ------
    ValueError
        The password is empty or too long.
    """
    secret = _encode_password(password)
    salt = os.urandom(SALT_BYTES)
    digest = _derive(secret, salt, params)
    return f"{SCHEME}${params.n}${params.r}${params.p}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple | None:
    """``(params, salt, digest)`` of a stored hash, or None if it is not one of ours."""
    if not isinstance(encoded, str):
        return None
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        params = ScryptParams(int(parts[1]), int(parts[2]), int(parts[3]))
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return None
    if not salt or not digest:
        return None
    return params, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the stored hash ``encoded``.

    The comparison of the derived keys takes the same time wherever they differ.

    Parameters
    ----------
    password : str
        Password to check.
    encoded : str
        Hash from :func:`hash_password`.

    Returns
    -------
    ok : bool
        False also when the password is empty or too long, or ``encoded`` is not a valid
        hash (a malformed hash never matches; it is not an error the peer should see).
    """
    parsed = _parse(encoded)
    try:
        secret = _encode_password(password)
    except (TypeError, ValueError):
        secret = None
    if parsed is None or secret is None:
        dummy_verify(password)
        return False
    params, salt, digest = parsed
    candidate = hashlib.scrypt(secret, salt=salt, n=params.n, r=params.r, p=params.p,
                               maxmem=params.maxmem, dklen=len(digest))
    return hmac.compare_digest(candidate, digest)


_DUMMY_SALT = b"katcp-no-such-user"


def dummy_verify(password: object, params: ScryptParams = DEFAULT_PARAMS) -> bool:
    """Do the work of a check that fails, for a user that does not exist.

    Parameters
    ----------
    password : object
        Whatever the peer sent (only its UTF-8 bytes are hashed; anything else hashes a
        fixed string).
    params : ScryptParams
        The parameters real hashes use, so that the time matches.

    Returns
    -------
    ok : bool
        Always False.
    """
    secret = password.encode("utf-8", "replace") if isinstance(password, str) else b"-"
    candidate = _derive(secret[: 4 * MAX_PASSWORD_LENGTH], _DUMMY_SALT, params)
    hmac.compare_digest(candidate, bytes(HASH_BYTES))
    return False


def needs_rehash(encoded: str, params: ScryptParams = DEFAULT_PARAMS) -> bool:
    """Whether a stored hash should be replaced (other parameters than ``params``).

    Parameters
    ----------
    encoded : str
        Stored hash.
    params : ScryptParams
        Current parameters.

    Returns
    -------
    rehash : bool
    """
    parsed = _parse(encoded)
    return parsed is None or parsed[0] != params or len(parsed[2]) != HASH_BYTES
