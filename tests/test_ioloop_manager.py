"""Tests for katcp.ioloop_manager."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

import pytest
import tornado.gen
import tornado.ioloop
import tornado.util

from katcp.ioloop_manager import (
    IOLoopManager,
    IOLoopThreadWrapper,
    ThreadSafeMethodAttrWrapper,
    with_relative_timeout,
)

WAIT = 5.0


@pytest.fixture
def managed():
    """A started managed ioloop; stopped and joined afterwards."""
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=WAIT)
    yield manager
    manager.stop().result(WAIT)
    manager.join(timeout=WAIT)


def test_managed_loop_runs_in_its_own_daemon_thread():
    manager = IOLoopManager(managed_default=True)
    ioloop = manager.get_ioloop()
    assert manager.get_ioloop() is ioloop
    assert hasattr(ioloop, "asyncio_loop")
    assert manager.managed
    assert manager.start(timeout=WAIT) is True
    seen = concurrent.futures.Future()

    def where():
        seen.set_result((threading.current_thread(), tornado.ioloop.IOLoop.current()))

    ioloop.add_callback(where)
    thread, current = seen.result(WAIT)
    assert thread is not threading.current_thread()
    assert thread.daemon
    assert current is ioloop
    with pytest.raises(RuntimeError):
        manager.start()  # only once
    stopped = manager.stop()
    assert stopped.result(WAIT) is None
    manager.join(timeout=WAIT)
    assert not thread.is_alive()
    assert ioloop.asyncio_loop.is_closed()
    # Stopping again is harmless and resolves at once.
    assert manager.stop().result(WAIT) is None


def test_set_daemon_false_before_start():
    manager = IOLoopManager(managed_default=True)
    manager.setDaemon(False)
    manager.start(timeout=WAIT)
    thread = manager._ioloop_thread
    assert thread is not None and not thread.daemon
    with pytest.raises(RuntimeError):
        manager.setDaemon(True)
    manager.stop().result(WAIT)
    manager.join(timeout=WAIT)
    assert not thread.is_alive()


def test_stop_before_start_runs_callback_and_closes_loop():
    manager = IOLoopManager(managed_default=True)
    ioloop = manager.get_ioloop()
    called = []

    async def callback():
        called.append(tornado.ioloop.IOLoop.current() is ioloop)

    assert manager.stop(callback=callback).result(WAIT) is None
    assert called == [True]
    assert ioloop.asyncio_loop.is_closed()
    # Started after all: a fresh loop runs.
    assert manager.start(timeout=WAIT) is True
    fresh = manager.get_ioloop()
    assert fresh is not ioloop and not fresh.asyncio_loop.is_closed()
    assert IOLoopThreadWrapper(fresh).call_in_ioloop(lambda: 7, (), {}, timeout=WAIT) == 7
    manager.stop().result(WAIT)
    manager.join(WAIT)
    assert fresh.asyncio_loop.is_closed()


def test_double_stop_while_running(managed):
    ioloop = managed.get_ioloop()
    first = managed.stop()
    second = managed.stop()
    first.result(WAIT)
    second.result(WAIT)
    managed.join(WAIT)
    assert ioloop.asyncio_loop.is_closed()


def _thread_of(ioloop):
    return IOLoopThreadWrapper(ioloop).call_in_ioloop(
        threading.current_thread, (), {}, timeout=WAIT)


def test_managed_manager_restarts_with_fresh_loop_and_thread():
    manager = IOLoopManager(managed_default=True)
    manager.setDaemon(True)
    seen = []
    for run in range(3):
        # katcp-python's order: get_ioloop() first, then start().
        ioloop = manager.get_ioloop()
        assert manager.start(timeout=WAIT) is True
        assert manager.get_ioloop() is ioloop
        thread = _thread_of(ioloop)
        assert thread.daemon is (run < 2) and thread is not threading.current_thread()
        with pytest.raises(RuntimeError, match="already been started"):
            manager.start()
        with pytest.raises(RuntimeError, match="started"):
            manager.set_ioloop(tornado.ioloop.IOLoop(make_current=False))
        manager.stop().result(WAIT)
        if run == 1:
            manager.setDaemon(False)  # allowed again between runs
        manager.join(WAIT)
        assert not thread.is_alive() and ioloop.asyncio_loop.is_closed()
        seen.append((ioloop, thread))
    assert len({id(loop) for loop, _ in seen}) == 3
    assert len({id(thread) for _, thread in seen}) == 3
    # The non-daemon setting of the second pause applied to the third run.
    assert not seen[2][1].daemon
    # A stopped manager still joins (the last thread) and stops harmlessly.
    manager.join(WAIT)
    assert manager.stop().result(WAIT) is None


def test_restart_right_after_stop_without_waiting():
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=WAIT)
    first = manager.get_ioloop()
    wrapper = IOLoopThreadWrapper(first)
    cancelled = threading.Event()

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    wrapper.call_in_ioloop(lambda: asyncio.ensure_future(forever()) and None, (), {}, WAIT)
    manager.stop()  # not waited for: start() waits for the old loop to finish
    assert manager.start(timeout=WAIT) is True
    second = manager.get_ioloop()
    assert second is not first and first.asyncio_loop.is_closed()
    assert cancelled.is_set()  # the old run's tasks were cancelled before the new run
    assert manager._running.is_set()  # the old run's shutdown did not clear the new run's flag
    assert IOLoopThreadWrapper(second).call_in_ioloop(lambda: 1, (), {}, timeout=WAIT) == 1
    manager.stop().result(WAIT)
    manager.join(WAIT)
    assert second.asyncio_loop.is_closed()


def test_stop_callback_sees_the_stopping_loop():
    manager = IOLoopManager(managed_default=True)
    manager.start(timeout=WAIT)
    ioloop = manager.get_ioloop()
    seen = []
    manager.stop(callback=lambda: seen.append(manager.get_ioloop())).result(WAIT)
    manager.join(WAIT)
    assert seen == [ioloop]


def test_join_before_start_raises_for_managed():
    manager = IOLoopManager(managed_default=True)
    manager.get_ioloop()
    with pytest.raises(RuntimeError, match="not started"):
        manager.join()
    manager.get_ioloop().close()


def test_set_ioloop_before_start_and_managed_flag():
    manager = IOLoopManager(managed_default=True)
    created = manager.get_ioloop()
    loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        manager.set_ioloop(loop, managed=False)
        assert created.asyncio_loop.is_closed()  # the manager's own unused loop is closed
        assert manager.get_ioloop() is loop
        assert not manager.managed
        manager.set_ioloop(loop, managed=True)  # may be set again before start
        assert manager.managed
        manager.start(timeout=WAIT)
        with pytest.raises(RuntimeError, match="started"):
            manager.set_ioloop(loop)
        manager.stop().result(WAIT)
        manager.join(WAIT)
    finally:
        if not loop.asyncio_loop.is_closed():
            loop.close()


def test_default_is_managed():
    manager = IOLoopManager()
    assert manager.get_ioloop() is not None
    assert manager.managed
    manager.stop().result(WAIT)  # never started: closes the loop
    unmanaged = IOLoopManager(managed_default=False)
    loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        unmanaged.set_ioloop(loop)  # managed defaults to managed_default
        assert not unmanaged.managed
    finally:
        loop.close()


def test_set_ioloop_managed_loop_is_run_and_closed():
    manager = IOLoopManager()
    loop = tornado.ioloop.IOLoop(make_current=False)
    manager.set_ioloop(loop)  # managed by default
    assert manager.managed
    manager.start(timeout=WAIT)
    assert IOLoopThreadWrapper(loop).call_in_ioloop(lambda: 42, (), {}, timeout=WAIT) == 42
    manager.stop().result(WAIT)
    manager.join(WAIT)
    assert loop.asyncio_loop.is_closed()
    # Restartable: the next run gets a fresh managed loop.
    manager.start(timeout=WAIT)
    assert manager.get_ioloop() is not loop
    manager.stop().result(WAIT)
    manager.join(WAIT)
    other = IOLoopManager()
    other.set_ioloop(loop)
    with pytest.raises(RuntimeError, match="closed"):
        other.start()


def test_unmanaged_current_loop():
    async def main():
        manager = IOLoopManager(managed_default=False)
        ioloop = manager.get_ioloop()
        assert ioloop is tornado.ioloop.IOLoop.current()
        assert not manager.managed
        assert manager.start(timeout=WAIT) is True  # the caller's loop is running
        manager.join()  # no-op
        called = []
        stopped = manager.stop(callback=lambda: called.append(1))
        assert await stopped is None  # awaitable in the loop's own thread
        assert called == [1]

        @tornado.gen.coroutine
        def tornado_style():
            yield manager.stop(callback=lambda: called.append(2))

        await tornado_style()
        assert called == [1, 2]
        # The caller's loop keeps running.
        await asyncio.sleep(0)
        assert asyncio.get_running_loop().is_running()

    asyncio.run(main())


def test_start_first_call_runs_where_nothing_races_with_the_loop():
    """first_call runs before a managed loop's thread starts (in the caller's thread, the
    loop running nowhere yet); for an unmanaged loop in the loop's thread: at once from
    that thread, or posted from another."""
    manager = IOLoopManager(managed_default=True)
    where = []

    def first():
        where.append((threading.get_ident(), manager.get_ioloop().asyncio_loop.is_running()))

    manager.start(first_call=first)
    try:
        assert where == [(threading.get_ident(), False)]  # done when start() returns
        assert manager._running.wait(WAIT)
    finally:
        manager.stop().result(WAIT)
        manager.join(timeout=WAIT)

    async def main():
        here = threading.get_ident()
        unmanaged = IOLoopManager(managed_default=False)
        calls = []
        unmanaged.start(first_call=lambda: calls.append(threading.get_ident()))
        assert calls == [here]  # at once, in this (the loop's) thread
        await unmanaged.stop()

        other = IOLoopManager(managed_default=False)
        other.set_ioloop(tornado.ioloop.IOLoop.current(), managed=False)
        done = asyncio.get_running_loop().create_future()
        started = threading.Thread(target=other.start, kwargs={
            "first_call": lambda: done.set_result(threading.get_ident())})
        started.start()
        assert await asyncio.wait_for(done, WAIT) == here
        started.join(WAIT)

    asyncio.run(main())


def test_stop_callback_runs_in_loop_and_may_return_coroutine(managed):
    ioloop = managed.get_ioloop()
    events = []

    async def callback():
        events.append(("cb", threading.current_thread().name))
        await asyncio.sleep(0.01)
        events.append(("done", None))

    managed.stop(callback=callback).result(WAIT)
    managed.join(WAIT)
    assert events[0][0] == "cb" and events[0][1].startswith("katcp-ioloop")
    assert events[1] == ("done", None)
    assert ioloop.asyncio_loop.is_closed()


def test_stop_callback_exception_is_logged(managed, caplog):
    def callback():
        raise ValueError("callback failed")

    with caplog.at_level(logging.ERROR, logger="katcp.ioloop_manager"):
        managed.stop(callback=callback).result(WAIT)
        managed.join(WAIT)
    assert "callback failed" in caplog.text
    assert "stop callback" in caplog.text


def test_pending_tasks_are_cancelled_on_stop(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())
    cancelled = threading.Event()

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    wrapper.call_in_ioloop(lambda: asyncio.ensure_future(forever()) and None, (), {}, WAIT)
    managed.stop().result(WAIT)
    managed.join(WAIT)
    assert cancelled.wait(WAIT)


def test_call_in_ioloop_plain_future_coroutine_and_errors(managed):
    ioloop = managed.get_ioloop()
    wrapper = IOLoopThreadWrapper(ioloop)

    def in_thread():
        return threading.current_thread().name

    assert wrapper.call_in_ioloop(in_thread, (), {}).startswith("katcp-ioloop")
    assert wrapper.call_in_ioloop(lambda a, b=0: a + b, (1,), {"b": 2}) == 3

    async def coro(x):
        await asyncio.sleep(0.01)
        return x * 2

    assert wrapper.call_in_ioloop(coro, (21,), {}, timeout=WAIT) == 42

    @tornado.gen.coroutine
    def gen_coro():
        yield tornado.gen.sleep(0.01)
        return "gen"

    assert wrapper.call_in_ioloop(gen_coro, (), {}, timeout=WAIT) == "gen"

    def returns_future():
        fut = asyncio.get_running_loop().create_future()
        ioloop.call_later(0.01, fut.set_result, "later")
        return fut

    assert wrapper.call_in_ioloop(returns_future, (), {}, timeout=WAIT) == "later"

    def returns_concurrent_future():
        fut = concurrent.futures.Future()
        fut.set_result("cf")
        return fut

    assert wrapper.call_in_ioloop(returns_concurrent_future, (), {}, timeout=WAIT) == "cf"

    def raises():
        raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        wrapper.call_in_ioloop(raises, (), {})

    async def raises_later():
        await asyncio.sleep(0)
        raise ValueError("later failure")

    with pytest.raises(ValueError, match="later failure"):
        wrapper.call_in_ioloop(raises_later, (), {}, timeout=WAIT)


def test_call_in_ioloop_timeout(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())
    cancelled = threading.Event()

    async def slow():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match="timed out"):
        wrapper.call_in_ioloop(slow, (), {}, timeout=0.05)
    assert cancelled.wait(WAIT)  # the abandoned work does not linger
    # default_timeout applies when none is given
    wrapper.default_timeout = 0.05
    with pytest.raises(TimeoutError):
        wrapper.call_in_ioloop(slow, (), {})


def test_call_in_ioloop_from_loop_thread_raises(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())

    def reenter():
        return wrapper.call_in_ioloop(lambda: 1, (), {}, timeout=1)

    with pytest.raises(RuntimeError, match="own ioloop"):
        wrapper.call_in_ioloop(reenter, (), {}, timeout=WAIT)


def test_call_in_ioloop_from_loop_thread_raises_before_install():
    # The wrapper is used inside its loop before its install callback ran.
    async def main():
        wrapper = IOLoopThreadWrapper()
        with pytest.raises(RuntimeError, match="own ioloop"):
            wrapper.call_in_ioloop(lambda: 1, (), {}, timeout=1)

    asyncio.run(main())


def test_call_in_closed_ioloop_raises(managed):
    ioloop = managed.get_ioloop()
    wrapper = IOLoopThreadWrapper(ioloop)
    managed.stop().result(WAIT)
    managed.join(WAIT)
    with pytest.raises(RuntimeError, match="closed"):
        wrapper.call_in_ioloop(lambda: 1, (), {}, timeout=1)


def test_decorate_callable(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())
    calls = []

    async def fetch(x, timeout=None):
        """Fetch something."""
        calls.append((x, timeout, threading.current_thread().name))
        return x + 1

    blocking = wrapper.decorate_callable(fetch)
    assert blocking.__name__ == "fetch"
    assert "Fetch something." in blocking.__doc__
    assert "Wrapped async call" in blocking.__doc__
    assert blocking(1) == 2
    assert blocking(2, timeout=WAIT) == 3
    assert calls[1][1] == WAIT  # the timeout is passed on as well
    assert calls[0][2].startswith("katcp-ioloop")

    async def hang(timeout=None):
        await asyncio.sleep(3600)

    with pytest.raises(TimeoutError):
        wrapper.decorate_callable(hang)(timeout=0.05)

    async def own_timeout(timeout=None):
        await asyncio.sleep(timeout)
        raise LookupError("the callable's own timeout")

    # The wait allows a margin beyond the timeout: the callable's own error surfaces.
    with pytest.raises(LookupError, match="own timeout"):
        wrapper.decorate_callable(own_timeout)(timeout=0.05)


class Subject:
    def __init__(self):
        self.value = 5
        self.threads = []

    @property
    def reader_thread(self):
        return threading.current_thread().name

    def method(self, x):
        self.threads.append(threading.current_thread().name)
        return x * self.value

    async def amethod(self):
        await asyncio.sleep(0)
        return "async"


def test_thread_safe_method_attr_wrapper(managed):
    wrapper = IOLoopThreadWrapper(managed.get_ioloop())
    subject = Subject()
    proxy = ThreadSafeMethodAttrWrapper(subject, wrapper)
    assert proxy.value == 5
    assert proxy.method(3) == 15
    assert subject.threads[0].startswith("katcp-ioloop")
    assert proxy.amethod() == "async"
    proxy.value = 7  # attribute writes go to the subject
    assert subject.value == 7
    assert proxy.__subject__ is subject
    assert proxy._ioloop_wrapper is wrapper
    # Attributes are read in the ioloop's thread too.
    assert proxy.reader_thread.startswith("katcp-ioloop")
    with pytest.raises(AttributeError):
        proxy.no_such_attribute  # noqa: B018
    # From the loop's own thread: a clear error for attributes fetched in the loop, but
    # special names are looked up on the subject without a hop.
    def in_loop():
        assert not hasattr(proxy, "__no_such_special__")
        with pytest.raises(RuntimeError, match="own ioloop"):
            proxy.method(1)
        return True

    assert wrapper.call_in_ioloop(in_loop, (), {}, timeout=WAIT)


def test_with_relative_timeout():
    async def main():
        fut = asyncio.get_running_loop().create_future()
        with pytest.raises(tornado.util.TimeoutError):
            await with_relative_timeout(0.02, fut)
        fut2 = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut2.set_result, "ok")
        assert await with_relative_timeout(WAIT, fut2) == "ok"
        assert await with_relative_timeout(None, asyncio.sleep(0, "none")) == "none"
        ioloop = tornado.ioloop.IOLoop.current()
        assert await with_relative_timeout(WAIT, asyncio.sleep(0, "x"), io_loop=ioloop) == "x"

    asyncio.run(main())
    assert tornado.util.TimeoutError is asyncio.TimeoutError or issubclass(
        tornado.util.TimeoutError, Exception
    )
