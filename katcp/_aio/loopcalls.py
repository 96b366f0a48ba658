"""Calls from other threads into an event loop: the one cross-thread mechanism.

* :class:`LoopCalls` (one per loop, :func:`loop_calls`) posts calls to a loop from any thread,
  run there in posting order with one wake-up of the loop per burst.  Strategies (sensor updates
  set outside the loop thread) and the device server (replies and informs from the handler
  thread) share the queue of their loop, so all cross-thread work for one loop runs in the order
  it was posted.
* :func:`call_blocking` runs a callable (or coroutine function) in the loop's thread and waits
  for its outcome with a timeout.
* :func:`in_loop_thread` says whether the calling thread is the one running a loop.
* :class:`Outcome` carries one result from the loop thread to a thread waiting for it, with a
  timeout: :func:`call_blocking` uses it, and so does the NCP blocking ``request()``, whose
  caller writes its request itself and waits for the reply field that the loop hands over.

The public cross-thread methods delegate here: ``KATCPServer.call_from_thread`` (post),
``IOLoopThreadWrapper.call_in_ioloop``, ``testutils.call_in_ioloop``, the clients'
``make_threadsafe_blocking`` methods and the NCP blocking API (call_blocking), and the
clients' ``make_threadsafe`` methods and ``Connection.write_threadsafe`` (post).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, Sequence

from katcp._aio.lowlevel import running_loop

log = logging.getLogger("katcp")


def in_loop_thread(loop: Any, idle_is_here: bool = False) -> bool:
    """Whether the calling thread is the one running ``loop``: the one loop-thread test.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop or tornado.ioloop.IOLoop or None
        The loop (an IOLoop stands for its asyncio loop); None is nobody's.
    idle_is_here : bool
        Also say True when no loop runs in this thread and ``loop`` runs in no thread
        either: it is not running yet, so what is done now cannot race with it (the
        thread that will run it later sees the result).

    Returns
    -------
    here : bool
    """
    running = running_loop()
    if running is not None:
        # (asyncio loop first: getattr of a missing attribute costs an exception.)
        return running is loop or running is getattr(loop, "asyncio_loop", None)
    if not idle_is_here or loop is None:
        # The common "no" of a handler or user thread: no getattr, no exception.
        return False
    loop = getattr(loop, "asyncio_loop", loop)
    return not loop.is_running()


def _apply(fn: Callable, args: tuple) -> None:
    fn(*args)


class LoopCalls:
    """Calls handed to one event loop from any thread, run there in posting order.

    A burst of posts costs one ``call_soon_threadsafe`` (one wake-up of the loop):
    the first post of a burst schedules :meth:`_run`, later ones only queue the
    call while that wake-up is pending.  Each run handles the calls that were
    queued when it started, then lets the loop poll its I/O before the next lot,
    so a thread that posts without pause cannot starve the loop.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop that runs the calls.

    Notes
    -----
    A call is queued as three flat entries ``fn, a, b`` with one ``deque.extend``
    (atomic: a C loop over a tuple), so a queued call keeps no object of its own
    alive and a long burst does not feed the garbage collector.
    """

    __slots__ = ("_loop_ref", "_calls", "_scheduled", "__weakref__")

    def __init__(self, loop: Any) -> None:
        # Weak: the registry of queues (loop_calls) is keyed weakly by the loop, so a queue
        # that held its loop would keep every loop it ever served alive.
        self._loop_ref = _loop_ref(loop)
        self._calls: Deque[Any] = deque()
        self._scheduled = False

    @property
    def pending(self) -> bool:
        """Whether posted calls wait for (or are running in) the loop thread.

        False means every call posted so far has run: output that a thread hands over
        by other means (a socket write of its own) cannot overtake one of its posts.
        """
        return self._scheduled

    def post(self, fn: Callable, *args: Any) -> bool:
        """Run ``fn(*args)`` in the loop's thread, after every call posted before it.

        Returns
        -------
        queued : bool
            False if the loop is closed (the call is dropped).
        """
        if len(args) == 2:
            return self.post_pair(fn, *args)
        return self.post_pair(_apply, fn, args)

    def post_pair(self, fn: Callable, a: Any, b: Any) -> bool:
        """Run ``fn(a, b)`` in the loop's thread (see :meth:`post`).

        The form for a call of exactly two arguments, which hot paths use (a strategy's
        ``(strategy, reading)``, a future's ``(future, result)``): no argument tuple is
        packed and unpacked on either side of the hand-off.
        """
        calls = self._calls
        calls.extend((fn, a, b))
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop_ref().call_soon_threadsafe(self._run)
            except (RuntimeError, AttributeError):  # loop closed (or gone): nobody runs them
                self._scheduled = False
                calls.clear()
                return False
        elif not len(calls) & 0xFFF and _loop_closed(self._loop_ref()):
            # The pending wake-up will never run: do not grow without bound.
            self._scheduled = False
            calls.clear()
            return False
        return True

    def post_future(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run ``fn()`` in the loop's thread (see :meth:`post`); a future of its outcome.

        Returns
        -------
        outcome : concurrent.futures.Future
            Resolves to what ``fn`` returned, or to the exception it raised (any
            ``BaseException``, so that e.g. a ``FailReply`` reaches the waiter); fails with
            ``RuntimeError`` at once if the loop is closed.
        """
        outcome: concurrent.futures.Future = concurrent.futures.Future()
        outcome.set_running_or_notify_cancel()

        def run() -> None:
            try:
                outcome.set_result(fn())
            except BaseException as exc:  # handed to the waiter, whatever it is
                outcome.set_exception(exc)

        if not self.post_pair(_apply, run, ()):
            outcome.set_exception(RuntimeError("IOLoop is closed"))
        return outcome

    def _run(self) -> None:
        # Loop thread.  The flag stays set while calls remain, so producers only
        # queue; it is cleared once the queue is empty (then re-checked, as a
        # producer may have queued just before and seen the flag still set).
        calls = self._calls
        popleft = calls.popleft
        for _ in range(len(calls) // 3):
            fn = popleft()
            a = popleft()
            b = popleft()
            try:
                fn(a, b)
            except (SystemExit, KeyboardInterrupt):
                loop = self._loop_ref()
                if loop is not None:  # the rest still run if the loop goes on
                    loop.call_soon(self._run)
                raise
            except BaseException:  # as asyncio's handles: log, and carry on
                log.exception("Error in call %r handed to the event loop",
                              a if fn is _apply else fn)
        if not calls:
            self._scheduled = False
            if not calls or self._scheduled:
                return
            self._scheduled = True
        loop = self._loop_ref()
        if loop is not None:  # (it runs this call, so it is alive)
            loop.call_soon(self._run)


def _loop_ref(loop: Any) -> Callable[[], Any]:
    """A weak reference to ``loop``; a strong one to a loop that takes no weak references."""
    try:
        return weakref.ref(loop)
    except TypeError:
        return lambda: loop


def _loop_closed(loop: Any) -> bool:
    return loop is None or loop.is_closed()


_LOOP_CALLS: weakref.WeakKeyDictionary[Any, LoopCalls] = weakref.WeakKeyDictionary()


_LOOP_CALLS_LOCK = threading.Lock()


def loop_calls(loop: Any) -> LoopCalls:
    """Return the (shared) `LoopCalls` queue of an asyncio event loop."""
    try:
        return _LOOP_CALLS[loop]
    except KeyError:
        pass
    except TypeError:  # a loop that takes no weak references: a queue of its own
        return LoopCalls(loop)
    with _LOOP_CALLS_LOCK:
        calls = _LOOP_CALLS.get(loop)
        if calls is None:
            calls = _LOOP_CALLS[loop] = LoopCalls(loop)
        return calls


async def resolve(result: Any) -> Any:
    """Await ``result`` if it is a future, coroutine or other awaitable; else return it."""
    if isinstance(result, concurrent.futures.Future):
        return await asyncio.wrap_future(result)
    if inspect.isawaitable(result):
        return await result
    return result


if concurrent.futures.TimeoutError is TimeoutError:  # Python >= 3.11
    CallTimeoutError = TimeoutError
else:  # pragma: no cover - Python < 3.11: catchable as either kind of timeout

    class CallTimeoutError(concurrent.futures.TimeoutError, TimeoutError):  # type: ignore
        """A blocking call into an ioloop timed out."""


class Outcome:
    """One outcome handed from the loop thread to a thread that waits for it.

    The loop thread calls :meth:`settle` once; the waiting thread calls :meth:`wait`, and may
    give up at its timeout.  The waiter sleeps on a bare lock that :meth:`settle` releases
    (lighter than a concurrent future, on the path of every blocking request); ``_guard``
    makes "settled" and "given up" exclude each other, so an outcome is either delivered or
    known to be dropped, never both.
    """

    __slots__ = ("value", "exc", "_done", "_guard", "_state")

    _PENDING, _SETTLED, _ABANDONED = 0, 1, 2

    def __init__(self) -> None:
        self.value: Any = None
        self.exc: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()
        self._guard = threading.Lock()
        self._state = self._PENDING

    @property
    def pending(self) -> bool:
        """Neither settled nor given up yet."""
        return self._state == self._PENDING

    def settle(self, value: Any, exc: BaseException | None) -> bool:
        """Deliver the result ``value`` or the exception ``exc``; False if the waiter gave up."""
        with self._guard:
            if self._state != self._PENDING:
                return False  # the waiter timed out meanwhile
            self._state = self._SETTLED
        self.value = value
        self.exc = exc
        self._done.release()
        return True

    def wait(self, timeout: float | None) -> bool:
        """Wait for the outcome (waiting thread); False if ``timeout`` expired first.

        After False the outcome is abandoned: a later :meth:`settle` returns False.
        """
        if self._done.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return True
        return not self.abandon()

    def abandon(self) -> bool:
        """Give up waiting; False if the outcome was settled first (it is then available)."""
        with self._guard:
            if self._state == self._PENDING:
                self._state = self._ABANDONED
                return True
        if self._state == self._SETTLED:
            self._done.acquire()  # settled just as we gave up: the outcome is on its way
            self._done.release()  # (left released: a repeated wait returns at once)
            return False
        return True  # abandoned before


class _LoopCall(Outcome):
    """One blocking call into a loop: run in the loop's thread, waited for by the caller."""

    __slots__ = ("fn", "args", "kwargs", "inner")

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any], kwargs: Dict[str, Any]):
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.inner: asyncio.Future | None = None

    def run(self) -> None:
        """Call ``fn`` (loop thread); wait in the loop for a future or coroutine it returns."""
        if self._state != self._PENDING:  # the caller gave up before the loop got here
            return
        try:
            value = self.fn(*self.args, **self.kwargs)
            if isinstance(value, concurrent.futures.Future):
                value = asyncio.wrap_future(value)
            if inspect.isawaitable(value):
                self.inner = inner = asyncio.ensure_future(value)
                inner.add_done_callback(self._inner_done)
                return
        except BaseException as exc:  # handed to the calling thread
            self.settle(None, exc)
            return
        self.settle(value, None)

    def _inner_done(self, inner: asyncio.Future) -> None:
        if inner.cancelled():
            self.settle(None, concurrent.futures.CancelledError())
        elif inner.exception() is not None:
            self.settle(None, inner.exception())
        else:
            self.settle(inner.result(), None)

    def cancel_waiting(self) -> None:
        """Cancel what ``fn`` returned and is still being waited for (loop thread)."""
        if self.inner is not None:
            self.inner.cancel()


def call_blocking(
    aloop: asyncio.AbstractEventLoop,
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Dict[str, Any],
    timeout: float | None,
) -> Any:
    """Call ``fn(*args, **kwargs)`` in ``aloop``'s thread; block until its result is known.

    The one mechanism behind every blocking call into a loop from another thread
    (:meth:`IOLoopThreadWrapper.call_in_ioloop`, the clients' thread-safe methods).
    ``fn`` runs as a plain loop callback (no task); only if it returns a future (asyncio,
    tornado or concurrent) or a coroutine is that waited for in the loop.

    Parameters
    ----------
    aloop : asyncio.AbstractEventLoop
        The loop; must be running in another thread.
    fn : callable
        What to call.
    args : sequence
        Positional arguments.
    kwargs : dict
        Keyword arguments.
    timeout : float or None
        Seconds to wait (None: no limit).

    Returns
    -------
    result : object
        What ``fn`` returned, or the result of the future or coroutine it returned.

    Raises
    ------
    TimeoutError
        After ``timeout`` seconds (what ``fn`` is still waiting on is then cancelled); the
        message names this timeout.  A ``TimeoutError`` raised by ``fn`` (or its future)
        itself is re-raised unchanged, with its own message.
    RuntimeError
        If the loop is closed.
    Exception
        Whatever ``fn`` (or its future) raised.
    """
    call = _LoopCall(fn, args, kwargs)
    calls = loop_calls(aloop)
    # (is_closed first: a queue whose wake-up was pending when the loop closed accepts
    # calls that never run.)
    if aloop.is_closed() or not calls.post(call.run):
        raise RuntimeError("IOLoop is closed")
    if not call.wait(timeout):
        calls.post(call.cancel_waiting)
        raise CallTimeoutError(
            f"Call to {getattr(fn, '__qualname__', fn)!r} in ioloop timed out: no result "
            f"within the wrapper's timeout of {timeout} seconds"
        )
    # A TimeoutError raised by ``fn`` itself (with its own message) reaches the caller as is.
    if call.exc is not None:
        raise call.exc
    return call.value
