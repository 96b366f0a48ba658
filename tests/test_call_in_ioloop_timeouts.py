"""Blocking calls into an ioloop: whose timeout is it?

A ``TimeoutError`` raised by the called function (or its future) reaches the caller as
is, with its own message; only when the wrapper's own wait expires does the wrapper's
message appear, naming the wrapper's timeout.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from katcp.ioloop_manager import IOLoopManager, IOLoopThreadWrapper
from katcp.resource_client import KATCPClientResource, ThreadSafeKATCPClientResourceWrapper

WAIT = 5.0


@pytest.fixture
def managed():
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=WAIT)
    yield manager
    manager.stop().result(WAIT)
    manager.join(timeout=WAIT)


async def _own_timeout(delay: float) -> None:
    await asyncio.sleep(delay)
    raise TimeoutError(f"my own timeout after {delay} s")


def test_callable_timeout_error_is_reraised_unchanged(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())
    with pytest.raises(TimeoutError) as info:
        wrapper.call_in_ioloop(_own_timeout, (0.05,), {}, timeout=WAIT)
    assert str(info.value) == "my own timeout after 0.05 s"
    assert "wrapper" not in str(info.value)


def test_decorated_callable_timeout_error_is_its_own(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())

    async def wait_for_nothing(timeout):
        await asyncio.sleep(timeout)
        raise TimeoutError(f"gave up after {timeout} s")

    with pytest.raises(TimeoutError) as info:
        wrapper.decorate_callable(wait_for_nothing)(timeout=0.05)
    assert str(info.value) == "gave up after 0.05 s"


def test_wrapper_timeout_names_the_wrappers_timeout_and_cancels(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())
    started = []
    cancelled = threading.Event()

    async def forever():
        started.append(True)
        try:
            await asyncio.get_running_loop().create_future()  # never resolves
        except asyncio.CancelledError:
            cancelled.set()
            raise

    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        wrapper.call_in_ioloop(forever, (), {}, timeout=0.1)
    assert time.monotonic() - t0 < WAIT
    message = str(info.value)
    assert "forever" in message
    assert "wrapper's timeout of 0.1 seconds" in message
    assert started == [True]
    # What the call was waiting on is cancelled.
    assert cancelled.wait(WAIT)


def test_call_that_returns_is_unaffected(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())

    async def value():
        await asyncio.sleep(0)
        return 42

    assert wrapper.call_in_ioloop(value, (), {}, timeout=WAIT) == 42
    with pytest.raises(ValueError, match="bad"):
        wrapper.call_in_ioloop(lambda: int("bad"), (), {}, timeout=WAIT)


def test_threadsafe_resource_until_synced_reports_its_own_timeout(managed):
    # A peer that accepts (in the kernel backlog) but never speaks: never synced.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    try:
        res = KATCPClientResource(dict(name="silent", address=silent.getsockname(),
                                       controlled=True))
        res.set_ioloop(managed.get_ioloop())
        wrapper = IOLoopThreadWrapper(managed.get_ioloop())
        wrapper.call_in_ioloop(res.start, (), {}, timeout=WAIT)
        safe = ThreadSafeKATCPClientResourceWrapper(res, wrapper)
        t0 = time.monotonic()
        # tornado.util.TimeoutError is asyncio.TimeoutError (a TimeoutError from Python 3.11 on)
        with pytest.raises(asyncio.TimeoutError) as info:
            safe.until_synced(timeout=0.2)
        assert time.monotonic() - t0 < 1.0  # the call's timeout, not the wrapper's 1.2 s
        message = str(info.value)
        assert "0.2" in message
        assert "1.2" not in message
        wrapper.call_in_ioloop(res.stop, (), {}, timeout=WAIT)
    finally:
        silent.close()
