"""katcp._aio.loopcalls: the one loop-thread test and the one call-and-wait."""

from __future__ import annotations

import asyncio
import threading

import pytest
import tornado.ioloop

from katcp._aio.loopcalls import call_blocking, in_loop_thread, loop_calls


def test_in_loop_thread_outside_any_loop():
    loop = asyncio.new_event_loop()
    try:
        assert not in_loop_thread(loop)
        assert in_loop_thread(loop, idle_is_here=True)  # not running anywhere yet
        assert not in_loop_thread(None)
        assert not in_loop_thread(None, idle_is_here=True)
    finally:
        loop.close()


def test_in_loop_thread_inside_and_from_other_threads():
    async def main():
        loop = asyncio.get_running_loop()
        ioloop = tornado.ioloop.IOLoop.current()
        other = asyncio.new_event_loop()
        try:
            assert in_loop_thread(loop) and in_loop_thread(ioloop)
            assert not in_loop_thread(other)
            assert not in_loop_thread(other, idle_is_here=True)  # another loop runs here
        finally:
            other.close()
        seen = []
        thread = threading.Thread(target=lambda: seen.extend(
            [in_loop_thread(loop), in_loop_thread(ioloop), in_loop_thread(loop, True)]))
        thread.start()
        await loop.run_in_executor(None, thread.join)
        assert seen == [False, False, False]  # the loop runs, in another thread

    asyncio.run(main())


def test_call_blocking_runs_in_posting_order_and_refuses_a_closed_loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        order = []
        calls = loop_calls(loop)
        for i in range(5):
            calls.post(order.append, i)
        assert call_blocking(loop, lambda: order.append("wait") or len(order), (), {}, 5) == 6
        assert order == [0, 1, 2, 3, 4, "wait"]

        async def coro(x):
            await asyncio.sleep(0)
            return x * 2

        assert call_blocking(loop, coro, (21,), {}, 5) == 42
        with pytest.raises(TimeoutError):
            call_blocking(loop, asyncio.sleep, (10,), {}, 0.05)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    with pytest.raises(RuntimeError):
        call_blocking(loop, lambda: None, (), {}, 1)


def test_post_future_gives_the_outcome_or_the_exception():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        calls = loop_calls(loop)
        assert calls.post_future(lambda: in_loop_thread(loop)).result(5) is True

        class Refused(BaseException):  # e.g. FailReply, AsyncReply: not Exceptions alone
            pass

        def refuse():
            raise Refused()

        with pytest.raises(Refused):
            calls.post_future(refuse).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    with pytest.raises(RuntimeError):
        loop_calls(loop).post_future(lambda: None).result(1)


def test_in_loop_thread_no_without_idle_is_here_whatever_the_loop():
    # The common "no" of a handler thread: for an asyncio loop, an IOLoop or None.
    loop = asyncio.new_event_loop()
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    try:
        for candidate in (loop, None, ioloop):
            assert in_loop_thread(candidate) is False
        assert in_loop_thread(loop, idle_is_here=True) is True  # not running: no race
        assert in_loop_thread(ioloop, idle_is_here=True) is True
        assert in_loop_thread(None, idle_is_here=True) is False
    finally:
        ioloop.close()
        loop.close()
def test_outcome_is_delivered_or_dropped_never_both():
    from katcp._aio.loopcalls import Outcome

    done = Outcome()
    assert done.pending
    assert done.settle(1, None)
    assert not done.settle(2, None)  # one outcome only
    assert done.wait(0) and done.value == 1 and done.exc is None

    given_up = Outcome()
    assert not given_up.wait(0.01)  # timed out: abandoned
    assert not given_up.pending
    assert not given_up.settle(3, None)  # the loop thread learns it was dropped
    assert given_up.value is None

    # settled by another thread while the waiter gives up: the outcome wins
    raced = Outcome()
    raced.settle(None, ValueError("x"))
    assert not raced.abandon()
    assert isinstance(raced.exc, ValueError) and raced.wait(0)

    crossing = Outcome()
    threading.Thread(target=lambda: crossing.settle("late", None)).start()
    assert crossing.wait(5) and crossing.value == "late"


def test_pending_until_every_posted_call_has_run():
    loop = asyncio.new_event_loop()
    try:
        calls = loop_calls(loop)
        ran = []
        assert not calls.pending
        calls.post(ran.append, 1)
        calls.post(lambda: ran.append(calls.pending))  # still pending while calls run
        assert calls.pending
        loop.run_until_complete(asyncio.sleep(0))
        assert ran == [1, True] and not calls.pending
    finally:
        loop.close()


def test_a_queue_does_not_keep_its_loop_alive():
    # The registry is keyed weakly by the loop; a queue that held its loop strongly kept
    # every loop that ever had a queue (a BlockingClient's, one per start) alive for good.
    import gc
    import weakref

    loop = asyncio.new_event_loop()
    calls = loop_calls(loop)
    assert calls.post(lambda: None)
    loop.run_until_complete(asyncio.sleep(0))  # runs the posted call
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
    assert not calls.post(lambda: None)  # a queue that outlives its loop refuses calls
