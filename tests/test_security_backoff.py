"""Failed-login backoff on a fake monotonic clock: per user, per address, capped, bounded."""

import pytest

from katcp._security.backoff import LoginBackoff, address_key


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def backoff(clock):
    return LoginBackoff(base=1.0, factor=2.0, cap=8.0, forget_after=100.0, clock=clock)


def test_no_delay_before_failures(backoff):
    assert backoff.delay("alice", "10.0.0.1") == 0
    assert backoff.delay(None, None) == 0


def test_exponential_and_capped(backoff, clock):
    delays = []
    for _ in range(6):
        delays.append(backoff.record_failure("alice", "10.0.0.1"))
        assert backoff.delay("alice", "10.0.0.1") == delays[-1]
        clock.advance(delays[-1])
        assert backoff.delay("alice", "10.0.0.1") == 0
    assert delays == [1, 2, 4, 8, 8, 8]
    assert backoff.failures("alice", "10.0.0.1") == 6


def test_delay_counts_down(backoff, clock):
    backoff.record_failure("alice", "10.0.0.1")
    backoff.record_failure("alice", "10.0.0.1")
    clock.advance(0.5)
    assert backoff.delay("alice", "10.0.0.1") == pytest.approx(1.5)


def test_per_user_from_any_address(backoff, clock):
    backoff.record_failure("alice", "10.0.0.1")
    backoff.record_failure("alice", "10.0.0.2")
    assert backoff.delay("alice", "10.0.0.3") == 2  # the user's second failure
    assert backoff.delay("bob", "10.0.0.3") == 0


def test_per_address_for_any_user(backoff):
    for user in ("u1", "u2", "u3"):
        backoff.record_failure(user, "10.0.0.9")
    assert backoff.delay("u4", "10.0.0.9") == 4  # the address's third failure
    assert backoff.delay("u4", "10.0.0.8") == 0


def test_success_clears_user_but_not_address(backoff, clock):
    for _ in range(3):
        backoff.record_failure("victim", "10.0.0.9")
    clock.advance(10)
    backoff.record_success("victim", "10.0.0.9")
    assert backoff.failures("victim") == 0
    # An attacker logging in to their own account does not reset their address.
    backoff.record_success("attacker", "10.0.0.9")
    assert backoff.failures(host="10.0.0.9") == 3
    assert backoff.record_failure("victim", "10.0.0.9") == 8


def test_records_forgotten_after_quiet_period(backoff, clock):
    backoff.record_failure("alice", "10.0.0.1")
    clock.advance(99)
    assert backoff.failures("alice") == 1
    clock.advance(2)
    assert backoff.failures("alice") == 0
    assert len(backoff) == 0
    assert backoff.record_failure("alice", "10.0.0.1") == 1


def test_memory_bounded(clock):
    backoff = LoginBackoff(base=1, cap=4, forget_after=1000, max_entries=50, clock=clock)
    backoff.record_failure("victim", "192.0.2.1")
    for i in range(10000):
        backoff.record_failure(f"made-up-{i}", "198.51.100.7")
    assert len(backoff) <= 100
    # The flood pushed out old user records, but its own address is still slowed.
    assert backoff.delay(None, "198.51.100.7") == 4
    assert backoff.failures(host="192.0.2.1") == 1  # address records kept apart
    for i in range(10000):
        backoff.record_failure(None, f"10.{i // 256 % 256}.{i % 256}.1")
    assert len(backoff) <= 100


def test_wall_clock_is_not_used(monkeypatch, backoff, clock):
    import time
    backoff.record_failure("alice", None)
    monkeypatch.setattr(time, "time", lambda: 0.0)
    assert backoff.delay("alice", None) == 1


def test_huge_failure_counts_do_not_overflow(clock):
    backoff = LoginBackoff(base=1, factor=10, cap=60, forget_after=60, clock=clock)
    for _ in range(2000):
        assert backoff.record_failure("alice", "10.0.0.1") <= 60


@pytest.mark.parametrize("host,key", [
    ("10.1.2.3", "10.1.2.3"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::7%eth0", "2001:db8:1:2::/64"),
    ("::ffff:10.1.2.3", "10.1.2.3"),
    ("some-host", "some-host"),
    (None, "-"),
])
def test_address_key(host, key):
    assert address_key(host) == key


def test_ipv6_hosts_in_one_64_share_a_delay(backoff):
    backoff.record_failure(None, "2001:db8::1")
    backoff.record_failure(None, "2001:db8::2")
    assert backoff.delay(None, "2001:db8::ffff") == 2
    assert backoff.delay(None, "2001:db8:0:1::1") == 0


@pytest.mark.parametrize("kwargs", [dict(base=0), dict(factor=0.5), dict(cap=0.1),
                                    dict(forget_after=1), dict(max_entries=0)])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        LoginBackoff(**kwargs)
