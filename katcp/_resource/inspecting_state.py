"""State tracking helpers shared by the inspecting client and the resource clients."""

from __future__ import annotations

import asyncio
import collections
import datetime
from typing import Any, Callable, List, Tuple

import tornado.gen
from tornado.concurrent import Future


class InspectingClientStateType(
    collections.namedtuple("InspectingClientStateType",
                           "connected synced model_changed data_synced")
):
    """State of an inspecting client.

    Attributes
    ----------
    connected : bool
        The KATCP connection is up.
    synced : bool
        Requests and sensors are in sync with the device and all state
        callbacks have finished.
    model_changed : bool
        The last inspection changed the request/sensor model.
    data_synced : bool
        Request and sensor data are in sync (callbacks may still be running).
    """

    __slots__ = []


def with_optional_timeout(future, timeout):
    """Wrap `future` so it raises :class:`tornado.gen.TimeoutError` after `timeout` s.

    With `timeout` None (or 0) the future is returned unchanged (as a Future).
    """
    future = tornado.gen.convert_yielded(future)
    if not timeout:
        return future
    return tornado.gen.with_timeout(datetime.timedelta(seconds=timeout), future)


class StateTracker:
    """Hold a state value and resolve futures waiting for particular states.

    Waiting futures are resolved synchronously in :meth:`set_state`, so a
    waiter never misses a short-lived state.
    """

    def __init__(self, initial: Any):
        self._state = initial
        self._waiters: List[Tuple[Callable[[Any], bool], Future]] = []

    @property
    def state(self) -> Any:
        """The current state."""
        return self._state

    def set_state(self, state: Any) -> None:
        """Set the state and resolve the waiters it satisfies."""
        self._state = state
        if not self._waiters:
            return
        remaining = []
        for predicate, fut in self._waiters:
            if fut.done():
                continue
            try:
                matched = predicate(state)
            except Exception as exc:
                fut.set_exception(exc)
                continue
            if matched:
                fut.set_result(state)
            else:
                remaining.append((predicate, fut))
        self._waiters = remaining

    def until_predicate(self, predicate: Callable[[Any], bool], timeout=None) -> Future:
        """Future resolving with the state once ``predicate(state)`` is true."""
        fut: Future = Future()
        if predicate(self._state):
            fut.set_result(self._state)
            return fut
        entry = (predicate, fut)
        self._waiters.append(entry)
        if timeout:
            loop = asyncio.get_event_loop()

            def expire():
                if not fut.done():
                    fut.set_exception(tornado.gen.TimeoutError(
                        f"Timed out after {timeout} s waiting for state"))
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass

            handle = loop.call_later(timeout, expire)
            fut.add_done_callback(lambda _: handle.cancel())
        return fut

    def until_state(self, desired_state: Any, timeout=None) -> Future:
        """Future resolving once the state equals `desired_state`."""
        return self.until_predicate(lambda s: s == desired_state, timeout=timeout)

    def until_state_in(self, *states: Any, timeout=None) -> Future:
        """Future resolving once the state is one of `states`."""
        return self.until_predicate(lambda s: s in states, timeout=timeout)
