"""Thread and ioloop plumbing of the KATCP clients.

Holds the helpers shared by the clients (:func:`address_to_string`, the
:func:`make_threadsafe` markers, the loop/thread state flags) and
:class:`_ClientLoopMixin`, the start/stop/wait/thread-safety half of
:class:`katcp.client.DeviceClient`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any, Callable, Tuple

import tornado.gen
import tornado.ioloop

from katcp._aio.loopcalls import call_blocking

_get_ident = threading.get_ident
_asyncio_timeout = getattr(asyncio, "timeout", None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def address_to_string(addr_tuple: Tuple[str, int]) -> str:
    """Format a ``(host, port)`` tuple as ``"host:port"``.

    Parameters
    ----------
    addr_tuple : tuple of (str, int)
        Host and port.

    Returns
    -------
    str
        ``"host:port"``.
    """
    host, port = addr_tuple[0], addr_tuple[1]
    return f"{host}:{port}"


def make_threadsafe(meth: Callable) -> Callable:
    """Mark a method to run in the client's ioloop when thread safety is on.

    After :meth:`DeviceClient.enable_thread_safety`, a call from another
    thread is scheduled in the ioloop and returns ``None`` at once; a call
    from the ioloop thread runs directly.

    Parameters
    ----------
    meth : callable
        The method to mark.

    Returns
    -------
    callable
        The same method, marked.
    """
    meth.make_threadsafe = True
    return meth


def make_threadsafe_blocking(meth: Callable) -> Callable:
    """Mark a method to run in the ioloop and block for its result.

    After :meth:`DeviceClient.enable_thread_safety`, a call from another
    thread runs the method in the ioloop and waits (``timeout`` keyword,
    default 5 s) for its result, which is returned (or its exception raised).

    Parameters
    ----------
    meth : callable
        The method to mark.

    Returns
    -------
    callable
        The same method, marked.
    """
    meth.make_threadsafe_blocking = True
    return meth


class _StateFlag:
    """A boolean state usable from the ioloop (futures) and threads (wait).

    Set and clear from the ioloop thread only; :meth:`wait` may be called
    from any thread. The threading.Event behind :meth:`wait` is only made
    when a thread first waits.
    """

    __slots__ = ("_flag", "_tevent", "_waiters")

    def __init__(self, initial: bool = False) -> None:
        self._flag = initial
        self._tevent: threading.Event | None = None
        self._waiters: list = []

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        tevent = self._tevent
        if tevent is not None:
            tevent.set()
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(True)

    def clear(self) -> None:
        self._flag = False
        tevent = self._tevent
        if tevent is not None:
            tevent.clear()

    def until_set(self, loop: asyncio.AbstractEventLoop, timeout: float | None = None):
        """Future resolving (to True) once the flag is set.

        Raises ``tornado.gen.TimeoutError`` through the future after `timeout`.
        """
        fut = loop.create_future()
        if self._flag:
            fut.set_result(True)
            return fut
        self._waiters.append(fut)
        if timeout is not None:
            def _expire() -> None:
                if not fut.done():
                    fut.set_exception(tornado.gen.TimeoutError(
                        f"Timed out after {timeout} s"))
            handle = loop.call_later(max(timeout, 0), _expire)
            fut.add_done_callback(lambda _f: handle.cancel())
        return fut

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until set; return the flag."""
        tevent = self._tevent
        if tevent is None:
            tevent = threading.Event()
            if self._flag:
                tevent.set()
            self._tevent = tevent
        if self._flag:
            return True
        return tevent.wait(timeout)


class _ClientLoopMixin:
    """Start/stop, managed or external ioloop, waits and thread safety.

    Mixed into :class:`katcp.client.DeviceClient`; relies on its state
    (``_ioloop_manager``, ``_running``, ``_connected``...).
    """

    # ------------------------------------------------------------------ threads / ioloop
    def set_ioloop(self, ioloop=None) -> None:
        """Run on an existing tornado IOLoop (unmanaged) instead of a managed thread.

        Parameters
        ----------
        ioloop : tornado.ioloop.IOLoop, optional
            Loop to use (default ``IOLoop.current()``). Call before :meth:`start`.
        """
        if ioloop is None:
            ioloop = tornado.ioloop.IOLoop.current()
        self._ioloop_manager.set_ioloop(ioloop, managed=False)
        self._ioloop = ioloop

    def enable_thread_safety(self) -> None:
        """Make the marked public methods callable from any thread.

        Must be called before :meth:`start`.
        """
        if self._threadsafe:
            return
        if self._running.is_set():
            raise RuntimeError("Cannot enable thread safety after start")
        for name in dir(self):
            try:
                meth = getattr(self, name)
            except Exception:
                continue
            if not callable(meth):
                continue
            if getattr(meth, "make_threadsafe", False) is True:
                setattr(self, name, self._make_threadsafe(meth))
            elif getattr(meth, "make_threadsafe_blocking", False) is True:
                setattr(self, name, self._make_threadsafe_blocking(meth))
        self._threadsafe = True

    def _make_threadsafe(self, meth: Callable) -> Callable:
        @functools.wraps(meth)
        def wrapped(*args, **kwargs):
            loop = self._loop
            if loop is None or _get_ident() == self.ioloop_thread_id:
                return meth(*args, **kwargs)
            self._schedule_from_thread(meth, *args, **kwargs)
        wrapped.make_threadsafe = False
        return wrapped

    def _schedule_from_thread(self, fn: Callable, *args, **kwargs) -> None:
        """Run ``fn(*args, **kwargs)`` in the ioloop soon (from another thread).

        While such calls are on their way, no thread sends requests directly
        (they go through the ioloop, behind these calls), so that the calls of
        a thread reach the wire in the order it made them.
        """
        with self._request_lock:
            self._xthread_calls += 1
            run = self._xthread_run
        self._loop.call_soon_threadsafe(self._run_scheduled, run, fn, args, kwargs)

    def _run_scheduled(self, run: int, fn: Callable, args, kwargs) -> None:
        try:
            fn(*args, **kwargs)
        finally:
            with self._request_lock:
                if run == self._xthread_run:  # not left over from an earlier run
                    self._xthread_calls -= 1

    def _make_threadsafe_blocking(self, meth: Callable) -> Callable:
        @functools.wraps(meth)
        def wrapped(*args, **kwargs):
            timeout = kwargs.pop("timeout", 5)
            loop = self._loop
            if loop is None or _get_ident() == self.ioloop_thread_id:
                return meth(*args, **kwargs)
            return self._call_in_loop(meth, args, kwargs, timeout)
        wrapped.make_threadsafe_blocking = False
        return wrapped

    def _call_in_loop(self, fn: Callable, args, kwargs, timeout: float | None) -> Any:
        """Run ``fn(*args, **kwargs)`` in the ioloop; block for its (awaited) result."""
        return call_blocking(self._loop, fn, args, kwargs, timeout)

    def start(self, timeout: float | None = None) -> None:
        """Start the client (in a managed ioloop thread unless :meth:`set_ioloop` was used).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the client to be running. Do not pass a timeout
            when starting from the thread of the (unmanaged) ioloop itself.
        """
        if self._running.is_set():
            raise RuntimeError("Device client already started.")
        # After stop(), a managed manager hands out a fresh loop for the new run.
        self._ioloop = self._ioloop_manager.get_ioloop()
        self._loop = self._ioloop.asyncio_loop
        if not self._state_fresh:
            self._init_state_per_run()
        self._ioloop_manager.start(timeout)
        if _get_ident() == self.ioloop_thread_id or (
                not self._ioloop_manager.managed and _running_loop() is self._loop):
            self._install()
        else:
            self._loop.call_soon_threadsafe(self._install)
        if timeout and _get_ident() != self.ioloop_thread_id:
            # Not wait_running(): the client may already have run and stopped.
            self._run_started.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the managed ioloop thread to finish (no-op if unmanaged).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait.
        """
        self._ioloop_manager.join(timeout)

    def _stop_in_loop(self) -> None:
        """Begin stopping (ioloop thread): fail requests, drop connection."""
        self._state_fresh = False
        self._running.clear()
        self._on_stopping()
        self._disconnect()
        self._close_early_sock()  # in case the main task never got to run
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    def stop(self, timeout: float | None = None):
        """Stop the client.

        With a managed ioloop this must be called from another thread; the
        loop stops after the client's main coroutine ends (use :meth:`join`).
        From the thread of an unmanaged loop, yield :meth:`until_stopped`.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the client to have started, and to stop.
        """
        if self._ioloop is None:
            raise RuntimeError("Call start() before stop()")
        from_loop = _get_ident() == self.ioloop_thread_id

        async def _stop() -> None:
            if timeout and self._task is None:
                # Not installed in the loop yet: give it the chance to start.
                try:
                    await self._running.until_set(self._loop, timeout)
                except tornado.gen.TimeoutError:
                    pass
            self._stop_in_loop()
            if not from_loop:
                try:
                    await self._stopped.until_set(self._loop, timeout)
                except tornado.gen.TimeoutError:
                    self._logger.warning("Client %s did not stop within %s s",
                                         self.bind_address_string, timeout)

        return self._ioloop_manager.stop(timeout=timeout, callback=_stop)

    def until_stopped(self, timeout: float | None = None):
        """Future that resolves when the client has stopped (ioloop thread only).

        Parameters
        ----------
        timeout : float, optional
            Seconds before the future fails with ``tornado.gen.TimeoutError``.
        """
        return self._stopped.until_set(self._loop, timeout)

    def running(self) -> bool:
        """Whether the client is running."""
        return self._running.is_set()

    def until_running(self, timeout: float | None = None):
        """Future that resolves when the client is running (ioloop thread only)."""
        return self._running.until_set(self._loop, timeout)

    def wait_running(self, timeout: float | None = None) -> bool:
        """Block until the client is running; return whether it is.

        Do not call from the ioloop thread; use :meth:`until_running`.
        """
        if self._ioloop is None:
            raise RuntimeError("Call start() before wait_running()")
        return self._running.wait(timeout)

    def is_connected(self) -> bool:
        """Whether the client is connected to its server."""
        return self._connected.is_set()

    async def _until_flag(self, flag: _StateFlag, timeout: float | None) -> None:
        loop = self._loop
        t0 = loop.time()
        await self._running.until_set(loop, timeout)
        remaining = None if timeout is None else timeout - (loop.time() - t0)
        await flag.until_set(loop, remaining)

    def until_connected(self, timeout: float | None = None):
        """Future that resolves when the client is connected (ioloop thread only)."""
        if self._running.is_set():
            return self._connected.until_set(self._loop, timeout)
        return asyncio.ensure_future(self._until_flag(self._connected, timeout))

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until connected; return whether the client is connected.

        Do not call from the ioloop thread; use :meth:`until_connected`.
        """
        return self._connected.wait(timeout)

    def wait_disconnected(self, timeout: float | None = None) -> bool:
        """Block until disconnected; return whether the client is disconnected."""
        return self._disconnected.wait(timeout)

    def until_protocol(self, timeout: float | None = None):
        """Future that resolves once the server's protocol information is known."""
        if self._running.is_set():
            return self._received_protocol_info.until_set(self._loop, timeout)
        return asyncio.ensure_future(self._until_flag(self._received_protocol_info, timeout))

    def wait_protocol(self, timeout: float | None = None) -> bool:
        """Block until the server's protocol information is known; return whether it is.

        When True, :attr:`protocol_flags` holds the server's flags.
        """
        return self._received_protocol_info.wait(timeout)
