"""scrypt password hashes: format, salt, verification, bounds, rehash, dummy checks."""

import base64
import time

import pytest

from katcp._security import passwords
from katcp._security.passwords import (
    DEFAULT_PARAMS,
    ScryptParams,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)

FAST = ScryptParams(n=2**8, r=8, p=1)


def test_hash_format_carries_parameters_salt_and_hash():
    encoded = hash_password("correct horse", FAST)
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", FAST.n, FAST.r, FAST.p)
    assert len(base64.b64decode(salt)) == passwords.SALT_BYTES
    assert len(base64.b64decode(digest)) == passwords.HASH_BYTES
    assert "correct" not in encoded


def test_salt_is_random_per_hash():
    assert hash_password("same", FAST) != hash_password("same", FAST)


def test_verify_right_and_wrong_password():
    encoded = hash_password("s3cret \u00e9\u00e8 with spaces", FAST)
    assert verify_password("s3cret \u00e9\u00e8 with spaces", encoded)
    assert not verify_password("s3cret \u00e9\u00e8 with spaces ", encoded)
    assert not verify_password("", encoded)
    assert not verify_password("x" * (passwords.MAX_PASSWORD_LENGTH + 1), encoded)


def test_default_parameters_are_memory_hard():
    # 128 * n * r bytes: at least 16 MiB per check.
    assert 128 * DEFAULT_PARAMS.n * DEFAULT_PARAMS.r >= 16 * 2**20
    encoded = hash_password("pw")
    assert verify_password("pw", encoded)
    assert not needs_rehash(encoded)


@pytest.mark.parametrize("bad", [
    "", "plain", "scrypt$1$8$1$AAAA$AAAA", "scrypt$256$8$1$!!$AAAA",
    "scrypt$256$8$1$$AAAA", "pbkdf2$256$8$1$AAAA$AAAA", "scrypt$256$8$1$AAAA",
    # Parameters beyond the bounds: a tampered store must not make a check take minutes.
    "scrypt$4194304$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",
    "scrypt$256$999$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",
])
def test_malformed_hash_never_matches(bad):
    assert not verify_password("pw", bad)
    assert needs_rehash(bad)


def test_empty_and_long_passwords_refused_when_hashing():
    with pytest.raises(ValueError):
        hash_password("", FAST)
    with pytest.raises(ValueError):
        hash_password("x" * (passwords.MAX_PASSWORD_LENGTH + 1), FAST)
    with pytest.raises(TypeError):
        hash_password(b"bytes", FAST)  # type: ignore[arg-type]


def test_needs_rehash_when_parameters_change():
    encoded = hash_password("pw", FAST)
    assert not needs_rehash(encoded, FAST)
    assert needs_rehash(encoded, ScryptParams(n=2**9))


@pytest.mark.parametrize("kwargs", [dict(n=3), dict(n=1), dict(r=0), dict(p=0),
                                    dict(n=2**21), dict(r=33), dict(p=17)])
def test_parameter_bounds(kwargs):
    with pytest.raises(ValueError):
        ScryptParams(**kwargs)


def test_dummy_verify_costs_about_a_real_check():
    params = ScryptParams(n=2**13)
    encoded = hash_password("pw", params)

    def best_of(fn, rounds=5):
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    real = best_of(lambda: verify_password("wrong", encoded))
    dummy = best_of(lambda: dummy_verify("wrong", params))
    assert dummy_verify("anything", params) is False
    # Same work: within a factor of 2 either way even on a busy machine.
    assert 0.5 < dummy / real < 2.0
