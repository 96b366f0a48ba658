"""Tornado/asyncio helpers of ``katcp.core`` (re-exported there).

Futures returned here are tornado 6 futures, i.e. :class:`asyncio.Future`
objects bound to the relevant loop.  Timeouts raise
:class:`tornado.gen.TimeoutError` (``tornado.util.TimeoutError``), as in
katcp-python.
"""

import asyncio
import datetime
import functools
import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import tornado.gen
import tornado.ioloop

from katcp._aio.loopcalls import CallTimeoutError, call_blocking, in_loop_thread, loop_calls
from katcp._aio.lowlevel import running_loop

__all__ = [
    "AsyncEvent",
    "AsyncCallbackEvent",
    "AsyncState",
    "LatencyTimer",
    "until_any",
    "until_some",
    "until_later",
    "future_timeout_manager",
    "steal_docstring_from",
    "hashable_identity",
    "log_future_exceptions",
    "log_coroutine_exceptions",
]

logger = logging.getLogger("katcp.core")


def _get_loop(ioloop: Optional[tornado.ioloop.IOLoop] = None) -> asyncio.AbstractEventLoop:
    """The asyncio loop behind ``ioloop``, else the running loop, else the current one."""
    if ioloop is not None:
        return ioloop.asyncio_loop  # type: ignore[attr-defined]
    loop = running_loop()
    if loop is not None:
        return loop
    return tornado.ioloop.IOLoop.current().asyncio_loop  # type: ignore[attr-defined]


def _resolved(loop: asyncio.AbstractEventLoop, result: Any) -> asyncio.Future:
    fut = loop.create_future()
    fut.set_result(result)
    return fut


def _set_result_safe(fut: asyncio.Future, result: Any) -> None:
    """Resolve ``fut`` (if still pending) from any thread."""
    loop = fut.get_loop()
    if in_loop_thread(loop, idle_is_here=True):
        _set_result_if_pending(fut, result)
    else:
        loop_calls(loop).post_pair(_set_result_if_pending, fut, result)


def _set_result_if_pending(fut: asyncio.Future, result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _new_waiter(loop: asyncio.AbstractEventLoop, waiters: set,
                timeout: Optional[float]) -> asyncio.Future:
    """A future registered in ``waiters`` that leaves it once done.

    With a ``timeout`` it fails with :class:`tornado.gen.TimeoutError` when
    the time is up; either way abandoned waiters do not accumulate.
    """
    fut = loop.create_future()
    waiters.add(fut)
    if timeout is None:
        fut.add_done_callback(waiters.discard)
        return fut

    def expire() -> None:
        if not fut.done():
            fut.set_exception(tornado.gen.TimeoutError(f"Timeout after {timeout} s"))

    handle = loop.call_later(timeout, expire)

    def done(f: asyncio.Future) -> None:
        handle.cancel()
        waiters.discard(f)

    fut.add_done_callback(done)
    return fut


def _with_timeout(fut: Any, timeout: Optional[float]) -> Any:
    if timeout is None:
        return fut
    return tornado.gen.with_timeout(datetime.timedelta(seconds=timeout), fut)


class AsyncEvent:
    """``threading.Event``-like flag whose waiters get tornado futures.

    Parameters
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop`, optional
        Loop the waiting futures belong to (default: the running/current loop
        at the time of waiting).
    """

    def __init__(self, ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        self._ioloop = ioloop
        self._flag = False
        self._waiting_futures: set = set()

    def __bool__(self) -> bool:
        return self._flag

    __nonzero__ = __bool__

    def is_set(self) -> bool:
        """Return the state of the flag."""
        return self._flag

    isSet = is_set

    def set(self) -> None:
        """Set the flag and resolve every waiting future with True."""
        self._flag = True
        waiters, self._waiting_futures = self._waiting_futures, set()
        for fut in list(waiters):
            _set_result_safe(fut, True)

    def clear(self) -> None:
        """Clear the flag."""
        self._flag = False

    def until_set(self, timeout: Optional[float] = None) -> Any:
        """Return a future that resolves (with True) when the flag is set.

        Parameters
        ----------
        timeout : float, optional
            Seconds; the future then raises :class:`tornado.gen.TimeoutError`
            if the flag is not set in time.
        """
        loop = _get_loop(self._ioloop)
        if self._flag:
            return _resolved(loop, True)
        return _new_waiter(loop, self._waiting_futures, timeout)

    def wait_with_ioloop(self, ioloop: tornado.ioloop.IOLoop, timeout: Optional[float] = None) -> bool:
        """Block the calling (non-ioloop) thread until the flag is set.

        Returns
        -------
        is_set : bool
            The flag's state (False if the timeout expired first).
        """
        if self._flag:
            return True
        try:
            call_blocking(ioloop.asyncio_loop, self.until_set, (), {}, timeout)  # type: ignore[attr-defined]
        except (CallTimeoutError, RuntimeError):  # timed out, or the loop is closed
            pass
        return self._flag


class AsyncCallbackEvent(AsyncEvent):
    """AsyncEvent that calls ``callback(flag)`` whenever it is set or cleared.

    Parameters
    ----------
    callback : callable
        Called with the new state of the flag.
    """

    def __init__(self, callback: Callable[[bool], Any] = lambda _: None,
                 ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        super().__init__(ioloop=ioloop)
        self._callback = callback

    def set(self) -> None:
        """Set the flag, resolve waiters and call the callback."""
        super().set()
        self._callback(self._flag)

    def clear(self) -> None:
        """Clear the flag and call the callback."""
        super().clear()
        self._callback(self._flag)


class AsyncState:
    """A state variable whose transitions can be awaited.

    Parameters
    ----------
    valid_states : sequence
        The allowed states.
    initial_state : optional
        Starting state (default: the first valid state).
    ioloop : :class:`tornado.ioloop.IOLoop`, optional
        Loop the futures belong to.
    """

    def __init__(self, valid_states: Iterable[Any], initial_state: Any = None,
                 ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        self._valid_states = tuple(valid_states)
        if not self._valid_states:
            raise ValueError("AsyncState needs at least one valid state")
        if initial_state is None:
            initial_state = self._valid_states[0]
        if initial_state not in self._valid_states:
            raise ValueError(f"Initial state {initial_state!r} is not a valid state")
        self._ioloop = ioloop
        self._state = initial_state
        # One future per waiter, so that one waiter cancelling (for example
        # asyncio.wait_for timing out) does not affect the others.
        self._waiting_futures: Dict[Any, set] = {}

    @property
    def state(self) -> Any:
        """The current state."""
        return self._state

    @property
    def valid_states(self) -> Tuple[Any, ...]:
        """The allowed states."""
        return self._valid_states

    def set_state(self, state: Any) -> None:
        """Change the state and resolve the futures waiting for it.

        Raises
        ------
        ValueError
            If ``state`` is not a valid state.
        """
        if state not in self._valid_states:
            raise ValueError(f"State {state!r} is not one of {self._valid_states!r}")
        if state == self._state:
            return
        self._state = state
        for fut in list(self._waiting_futures.pop(state, ())):
            _set_result_safe(fut, True)

    def until_state(self, state: Any, timeout: Optional[float] = None) -> Any:
        """Return a future that resolves (with True) when ``state`` is reached.

        Resolves at once if it is the current state.
        """
        if state not in self._valid_states:
            raise ValueError(f"State {state!r} is not one of {self._valid_states!r}")
        loop = _get_loop(self._ioloop)
        if state == self._state:
            return _resolved(loop, True)
        return _new_waiter(loop, self._waiting_futures.setdefault(state, set()), timeout)

    def until_state_in(self, *states: Any, **kwargs: Any) -> Any:
        """Return a future that resolves when any of ``states`` is reached.

        Other Parameters
        ----------------
        timeout : float, optional
            Seconds before the future raises :class:`tornado.gen.TimeoutError`.
        """
        timeout = kwargs.get("timeout", None)
        state_futures = [self.until_state(s) for s in states]
        return until_any(*state_futures, timeout=timeout)


def until_any(*futures: Any, **kwargs: Any) -> Any:
    """Return a future that resolves when any of the passed futures resolves.

    It resolves with the result (or exception) of the first one to finish; if one is done
    already, the returned future is done when this returns.

    Other Parameters
    ----------------
    timeout : float, optional
        Seconds before the returned future raises
        :class:`tornado.gen.TimeoutError`.
    ioloop : :class:`tornado.ioloop.IOLoop`, optional
    """
    timeout = kwargs.get("timeout", None)
    loop = _get_loop(kwargs.get("ioloop", None))
    converted = [tornado.gen.convert_yielded(f) for f in futures]
    any_future = loop.create_future()

    def handle_done(done_future: Any) -> None:
        if any_future.done():
            return
        if done_future.cancelled():
            any_future.cancel()
            return
        exc = done_future.exception()
        if exc is not None:
            any_future.set_exception(exc)
        else:
            any_future.set_result(done_future.result())

    # A future that is done already settles the result at once, as tornado 4's futures (and
    # so katcp-python's until_any) did; the others report when they finish.
    for fut in converted:
        if fut.done():
            handle_done(fut)
            break
    else:
        for fut in converted:
            fut.add_done_callback(handle_done)
    return _with_timeout(any_future, timeout)


@tornado.gen.coroutine
def until_some(*args: Any, **kwargs: Any) -> Any:
    """Return a future that resolves when some of the passed futures resolve.

    The futures are passed as positional arguments or as keyword arguments
    (not both).  Once ``done_at_least`` of them have resolved, the returned
    future resolves with a list of ``(index, value)`` tuples (index = position,
    or key for keyword futures) in completion order.

    Other Parameters
    ----------------
    done_at_least : int, optional
        Number of futures that must resolve (default: all).
    timeout : float, optional
        Seconds before :class:`tornado.gen.TimeoutError` is raised.
    """
    done_at_least = kwargs.pop("done_at_least", None)
    timeout = kwargs.pop("timeout", None)
    if done_at_least is None:
        done_at_least = len(args) + len(kwargs)
    wait_iterator = tornado.gen.WaitIterator(*args, **kwargs)
    maybe_timeout = future_timeout_manager(timeout)
    results: List[Tuple[Any, Any]] = []
    while len(results) < done_at_least and not wait_iterator.done():
        result = yield maybe_timeout(wait_iterator.next())
        results.append((wait_iterator.current_index, result))
    return results


async def until_some_settled(*args: Any, done_at_least: Optional[int] = None,
                             timeout: Optional[float] = None,
                             **kwargs: Any) -> List[Tuple[Any, Any]]:
    """Wait until ``done_at_least`` futures have settled; return the successful results.

    Unlike :func:`until_some`, a failed (or cancelled) future counts as settled instead
    of failing the wait, and results come in argument order, not completion order: what
    a resource container needs to wait for a quorum of its children.

    Parameters
    ----------
    *args, **kwargs : futures
        Positional futures are keyed by index, keyword futures by name.
    done_at_least : int, optional
        Number of futures that must be done, successfully or not (default: all).
    timeout : float, optional
        Give up after this many seconds (raises :class:`tornado.gen.TimeoutError`).

    Returns
    -------
    list of (key, result)
        Results of the futures that completed successfully, in argument order.
    """
    futures: Dict[Any, Any] = {i: tornado.gen.convert_yielded(f) for i, f in enumerate(args)}
    futures.update({k: tornado.gen.convert_yielded(f) for k, f in kwargs.items()})
    if done_at_least is None:
        done_at_least = len(futures)
    done_at_least = min(done_at_least, len(futures))
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pending = set(futures.values())
    while sum(1 for f in futures.values() if f.done()) < done_at_least:
        remaining = None if deadline is None else deadline - loop.time()
        if remaining is not None and remaining <= 0:
            raise tornado.gen.TimeoutError("Timed out waiting for futures")
        _, pending = await asyncio.wait(pending, timeout=remaining,
                                        return_when=asyncio.FIRST_COMPLETED)
    results = []
    for key, f in futures.items():
        if f.done() and not f.cancelled() and f.exception() is None:
            results.append((key, f.result()))
    return results


def until_later(delay: float, ioloop: Optional[tornado.ioloop.IOLoop] = None) -> Any:
    """Return a future that resolves (with None) after ``delay`` seconds."""
    loop = _get_loop(ioloop)
    fut = loop.create_future()

    def _done() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.call_later(delay, _done)
    return fut


def future_timeout_manager(timeout: Optional[float] = None,
                           ioloop: Optional[tornado.ioloop.IOLoop] = None) -> Callable[[Any], Any]:
    """Create a helper applying one cumulative timeout over several yields.

    Returns
    -------
    maybe_timeout : callable
        ``maybe_timeout(future)`` wraps the future in
        :func:`tornado.gen.with_timeout` with whatever is left of ``timeout``
        (and returns it unchanged if ``timeout`` is None); it raises
        :class:`tornado.gen.TimeoutError` when the time is up.
        ``maybe_timeout.remaining()`` gives the remaining seconds (or None).
    """
    loop = _get_loop(ioloop)
    t0 = loop.time()

    def _remaining() -> Optional[float]:
        return timeout - (loop.time() - t0) if timeout else None

    def maybe_timeout(fut: Any) -> Any:
        if not timeout:
            return fut
        return _with_timeout(fut, _remaining())

    maybe_timeout.remaining = _remaining  # type: ignore[attr-defined]
    return maybe_timeout


def steal_docstring_from(obj: Any) -> Callable[[Any], Any]:
    """Decorator that copies the docstring of ``obj`` to the decorated object."""

    def deco(fn: Any) -> Any:
        docs = [obj.__doc__]
        if fn.__doc__:
            docs.append(fn.__doc__)
        fn.__doc__ = "\n\n".join(d for d in docs if d)
        return fn

    return deco


def hashable_identity(obj: Any) -> Any:
    """Return a hashable identity for ``obj``, stable for bound methods.

    Two bound methods of the same function and instance give the same
    identity; strings are their own identity; anything else gives ``id(obj)``.
    """
    if hasattr(obj, "__func__") and hasattr(obj, "__self__"):
        return (id(obj.__func__), id(obj.__self__))
    if isinstance(obj, (str, bytes)):
        return obj
    return id(obj)


def log_future_exceptions(logger: logging.Logger, f: Any, ignore: Tuple[type, ...] = ()) -> None:
    """Log any exception raised by future ``f`` (except ``ignore`` types)."""

    def log_cb(fut: Any) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None and not isinstance(exc, ignore):
            logger.error("Unhandled exception returned by future", exc_info=exc)

    f.add_done_callback(log_cb)


def log_coroutine_exceptions(coro: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: log exceptions of the future returned by ``coro``."""

    @functools.wraps(coro)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        fut = tornado.gen.convert_yielded(coro(*args, **kwargs))
        log_future_exceptions(logger, fut)
        return fut

    return wrapped


class LatencyTimer:
    """Decide when a tight coroutine loop over ready futures should yield.

    A loop that keeps getting already-resolved futures never returns control
    to the ioloop.  Call :meth:`check_future` on each future about to be
    yielded and :meth:`time_to_yield` afterwards; when it returns True,
    yield ``tornado.gen.moment``.

    Parameters
    ----------
    max_loop_latency : float
        Longest time (seconds) to go on with resolved futures without yielding.
    ioloop : :class:`tornado.ioloop.IOLoop`, optional
    """

    def __init__(self, max_loop_latency: float,
                 ioloop: Optional[tornado.ioloop.IOLoop] = None) -> None:
        self.max_loop_latency = max_loop_latency
        self._ioloop = ioloop
        self.done = False
        self.prev_done = False
        self.done_since: Optional[float] = None

    def _time(self) -> float:
        return _get_loop(self._ioloop).time()

    def check_future(self, fut: Any) -> bool:
        """Note a future about to be yielded; return whether it is already done."""
        done = self.done = fut.done()
        if done and not self.prev_done:
            self.done_since = self._time()
        self.prev_done = done
        return done

    def time_to_yield(self) -> bool:
        """Return True if resolved futures have hogged the loop for too long."""
        if not self.done or self.done_since is None:
            return False
        if self._time() - self.done_since > self.max_loop_latency:
            self.prev_done = False
            return True
        return False
