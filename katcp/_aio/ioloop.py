"""Managed ioloop threads (:class:`IOLoopManager`) and the thread-safe wrappers built on them;
documented and public in :mod:`katcp.ioloop_manager`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import logging
import textwrap
import threading
from typing import Any, Callable, Dict, Sequence

import tornado.gen
import tornado.ioloop

from katcp._aio.loopcalls import call_blocking, in_loop_thread, loop_calls, resolve
from katcp._aio.lowlevel import running_loop
from katcp._aio.proxies import ObjectWrapper

__all__ = [
    "IOLoopManager",
    "IOLoopThreadWrapper",
    "StopFuture",
    "ThreadSafeMethodAttrWrapper",
    "with_relative_timeout",
]

log = logging.getLogger("katcp.ioloop_manager")

# Extra seconds a call made through IOLoopThreadWrapper.decorate_callable() waits beyond
# its own ``timeout`` argument, so that the callable's timeout fires first.
_DECORATED_TIMEOUT_MARGIN = 1.0


def with_relative_timeout(
    timeout: float | None, future: Any, io_loop: tornado.ioloop.IOLoop | None = None
) -> Any:
    """Wrap a future so that it fails if not resolved within ``timeout`` seconds from now.

    Must be called in the ioloop's thread.

    Parameters
    ----------
    timeout : float or None
        Seconds from now; None means no timeout (``future`` is returned unchanged).
    future : Future or awaitable
        What to wait for (tornado/asyncio future, concurrent future, coroutine).
    io_loop : tornado.ioloop.IOLoop, optional
        Accepted for katcp-python compatibility; the timeout always runs on the current loop.

    Returns
    -------
    future : Future
        Resolves like ``future``, or fails with :class:`tornado.util.TimeoutError`
        (which is :class:`asyncio.TimeoutError`) after ``timeout`` seconds.
    """
    if timeout is None:
        return tornado.gen.convert_yielded(future)
    return tornado.gen.with_timeout(datetime.timedelta(seconds=timeout), future)


def _new_ioloop() -> tornado.ioloop.IOLoop:
    """A fresh IOLoop over a fresh asyncio loop, not made current in this thread."""
    return tornado.ioloop.IOLoop(make_current=False)


def _loop_is_closed(ioloop: tornado.ioloop.IOLoop) -> bool:
    aloop = getattr(ioloop, "asyncio_loop", None)
    return aloop is not None and aloop.is_closed()










class StopFuture(concurrent.futures.Future):
    """Thread-safe future (``result(timeout)`` from any thread) that can also be awaited.

    Returned by :meth:`IOLoopManager.stop`: other threads block on :meth:`result`, code in
    an event loop may ``await`` it (or ``yield`` it in a tornado coroutine).
    """

    def __await__(self):
        return asyncio.wrap_future(self).__await__()


class IOLoopManager:
    """Own an ioloop: create it, run it in a thread of its own, and stop it.

    Parameters
    ----------
    managed_default : bool
        What :meth:`get_ioloop` does when no loop has been set with :meth:`set_ioloop`:
        if True it creates a new *managed* IOLoop (run in its own thread by :meth:`start`);
        if False it uses ``IOLoop.current()`` unmanaged.  Also the default of
        :meth:`set_ioloop`'s ``managed`` argument.
    logger : logging.Logger
        Where problems are logged.

    Notes
    -----
    A managed loop runs in a daemon thread (see :meth:`setDaemon`), so a forgotten
    :meth:`stop` never keeps the interpreter alive; call :meth:`join` to wait for it.
    When a managed loop stops, tasks still pending on it are cancelled and the loop is
    closed.  The manager can then be started again, as in katcp-python: once the stopped
    loop has finished, :meth:`get_ioloop` (and so :meth:`start`) makes a fresh managed loop,
    which :meth:`start` runs in a new thread.  Objects that live on the loop must therefore
    fetch it with :meth:`get_ioloop` again on every start.
    """

    def __init__(self, managed_default: bool = True, logger: logging.Logger = log) -> None:
        self._ioloop: tornado.ioloop.IOLoop | None = None
        self._created_ioloop: tornado.ioloop.IOLoop | None = None
        self._ioloop_managed = False
        self._managed_default = managed_default
        self._logger = logger
        self._ioloop_thread: threading.Thread | None = None
        self._running = threading.Event()
        self._daemonize = True
        # The managed loop of the current run has stopped (and is closed or closing).
        self._loop_finished = False
        # stop() was called on the running managed loop of the current run.
        self._stop_requested = False
        # Thread of the previous (stopped) run, so that join() still works after a renewal.
        self._previous_thread: threading.Thread | None = None

    # Seconds get_ioloop() waits for the thread of a stopped managed loop to finish before
    # it makes the loop of the next run.
    _RESTART_JOIN_TIMEOUT = 5.0

    @property
    def managed(self) -> bool:
        """True if this manager runs and stops the loop itself."""
        return self._ioloop_managed

    def get_ioloop(self) -> tornado.ioloop.IOLoop:
        """Return the ioloop, creating (or adopting) it first if none was set.

        After a managed loop has been stopped, this returns a fresh managed loop: the one
        the next :meth:`start` runs.  (Called from the stopping loop's own thread, e.g. in
        a stop callback, it still returns the stopping loop.)

        Returns
        -------
        ioloop : tornado.ioloop.IOLoop
        """
        if self._ioloop is None:
            if self._managed_default:
                self._create_managed_ioloop()
            else:
                self.set_ioloop(tornado.ioloop.IOLoop.current(), managed=False)
        elif self._previous_run_over():
            self._renew_managed_ioloop()
        assert self._ioloop is not None
        return self._ioloop

    def _previous_run_over(self) -> bool:
        """True if the managed loop has run (or been closed by :meth:`stop`) and stopped.

        A loop asked to stop but still winding down in its thread is waited for (at most
        ``_RESTART_JOIN_TIMEOUT`` seconds), except from that thread itself.
        """
        if not self._ioloop_managed:
            return False
        if self._loop_finished:
            return True
        thread = self._ioloop_thread
        if thread is None or not self._stop_requested or thread is threading.current_thread():
            return False
        thread.join(self._RESTART_JOIN_TIMEOUT)
        if not self._loop_finished:
            self._logger.warning(
                "Managed ioloop %r did not stop within %s s", self._ioloop,
                self._RESTART_JOIN_TIMEOUT)
        return self._loop_finished

    def _renew_managed_ioloop(self) -> None:
        """Forget the stopped run and create the managed loop of the next one."""
        if self._ioloop_thread is not None:
            self._previous_thread = self._ioloop_thread
        self._ioloop_thread = None
        self._loop_finished = False
        self._stop_requested = False
        self._running.clear()
        self._ioloop = None
        self._create_managed_ioloop()

    def set_ioloop(
        self, ioloop: tornado.ioloop.IOLoop | None = None, managed: bool | None = None
    ) -> None:
        """Use ``ioloop``; must be called before :meth:`start`.

        Calling it again before :meth:`start` replaces the loop (a loop this manager
        created itself and never ran is then closed).

        Parameters
        ----------
        ioloop : tornado.ioloop.IOLoop, optional
            The loop to use (None: a new IOLoop if ``managed``, else ``IOLoop.current()``).
        managed : bool
            If True this manager starts the loop in its own thread and stops it; if False
            the caller runs the loop and :meth:`start`/:meth:`stop` leave it running.
            None means the ``managed_default`` given to the constructor.

        Raises
        ------
        RuntimeError
            If the manager has already been started.
        """
        if self._previous_run_over():
            self._renew_managed_ioloop()
        if self._ioloop_thread is not None or self._running.is_set():
            raise RuntimeError("Cannot set the IOLoop once the manager has been started")
        managed = self._managed_default if managed is None else bool(managed)
        if ioloop is None:
            ioloop = _new_ioloop() if managed else tornado.ioloop.IOLoop.current()
        old = self._created_ioloop
        if old is not None and old is not ioloop and not _loop_is_closed(old):
            old.close()
        self._created_ioloop = None
        self._ioloop = ioloop
        self._ioloop_managed = managed

    def _create_managed_ioloop(self) -> tornado.ioloop.IOLoop:
        ioloop = _new_ioloop()
        self.set_ioloop(ioloop, managed=True)
        self._created_ioloop = ioloop
        return ioloop

    def setDaemon(self, daemonic: bool) -> None:  # noqa: N802 - katcp-python name
        """Make the managed ioloop thread a daemon thread or not; call before :meth:`start`.

        Parameters
        ----------
        daemonic : bool
            True (the default here) lets the interpreter exit while the loop runs.

        Raises
        ------
        RuntimeError
            If the thread has already been started.
        """
        if self._ioloop_thread is not None and not self._previous_run_over():
            raise RuntimeError("Cannot change daemon status after the thread has started")
        self._daemonize = bool(daemonic)

    def start(
        self, timeout: float | None = None, *, first_call: Callable[[], Any] | None = None
    ) -> bool | None:
        """Start the managed ioloop in a new thread (an unmanaged one is left alone).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the loop to be running.
        first_call : callable, optional
            Called where nothing can race with the loop: for a managed loop, here, before
            its thread starts (the loop runs nowhere yet: whoever waits for what it does
            need not wait for the thread); otherwise in the loop's thread once the loop
            runs (at once, if this is that thread).

        Returns
        -------
        running : bool or None
            With ``timeout``: whether the loop is running.  Without: None.

        Raises
        ------
        RuntimeError
            If the managed loop has already been started and not stopped since, or the
            loop is closed.

        Notes
        -----
        A managed manager may be started again after :meth:`stop`: it then runs a fresh
        loop (see :meth:`get_ioloop`) in a new thread.
        """
        ioloop = self.get_ioloop()  # a fresh managed loop if the previous one was stopped
        aloop = ioloop.asyncio_loop  # type: ignore[attr-defined]
        if self._ioloop_managed:
            if self._ioloop_thread is not None:
                raise RuntimeError("Managed ioloop has already been started")
            if _loop_is_closed(ioloop):
                raise RuntimeError("Managed ioloop is closed (it was not made by this manager)")
            # The loop runs in no thread until thread.start() below (which orders memory):
            # a plain call_soon is safe, and unlike a cross-thread post it writes nothing to
            # the loop's self-pipe, which the loop's first pass would have to read back.
            aloop.call_soon(self._running.set)
            if first_call is not None:
                first_call()
            self._run_managed_ioloop()
        else:
            calls = loop_calls(aloop)
            # The caller runs the loop; mark it as running once it gets going.
            if _loop_is_closed(ioloop):
                raise RuntimeError("IOLoop is closed")
            if in_loop_thread(ioloop):
                self._running.set()  # running in this very thread: no need to wake it
                if first_call is not None:
                    first_call()
            else:
                calls.post(self._running.set)
                if first_call is not None and not calls.post(first_call):
                    raise RuntimeError("IOLoop is closed")
        if timeout:
            return self._running.wait(timeout)
        return None

    def _run_managed_ioloop(self) -> None:
        ioloop = self._ioloop
        assert ioloop is not None

        def run_ioloop() -> None:
            aloop = ioloop.asyncio_loop  # type: ignore[attr-defined]
            asyncio.set_event_loop(aloop)
            try:
                ioloop.start()
            except Exception:
                self._logger.exception("Managed ioloop %r stopped with an error", ioloop)
            finally:
                if self._ioloop_thread is threading.current_thread():  # not yet renewed
                    self._running.clear()
                    self._loop_finished = True
                try:
                    self._shutdown_loop(aloop)
                finally:
                    ioloop.close(all_fds=True)
                    asyncio.set_event_loop(None)
                    self._logger.debug("Managed ioloop %r closed", ioloop)

        thread = threading.Thread(target=run_ioloop, name=f"katcp-ioloop-{id(ioloop):x}")
        thread.daemon = self._daemonize
        self._ioloop_thread = thread
        thread.start()

    def _shutdown_loop(self, aloop: asyncio.AbstractEventLoop, grace: float = 1.0) -> None:
        """Cancel tasks still pending on a stopped loop and let them finish (bounded)."""
        try:
            tasks = [t for t in asyncio.all_tasks(aloop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                aloop.run_until_complete(asyncio.wait(tasks, timeout=grace))
            aloop.run_until_complete(aloop.shutdown_asyncgens())
        except Exception:
            self._logger.exception("Error while shutting down managed ioloop")

    def stop(
        self, timeout: float | None = None, callback: Callable[[], Any] | None = None
    ) -> StopFuture:
        """Call ``callback`` in the loop, then stop the loop if it is managed.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the loop to have started before asking it to stop.
        callback : callable, optional
            Called in the loop's thread before it stops; if it returns a future or
            coroutine, that is awaited first.  Its exceptions are logged.

        Returns
        -------
        stopped : StopFuture
            Thread-safe (and awaitable) future resolving to None once ``callback`` is done
            and the stop has been requested.  Use :meth:`join` to wait for a managed
            thread to exit.

        Notes
        -----
        A managed loop that was never started runs ``callback`` right here (in the calling
        thread, on that loop) and is closed.
        """
        stopped = StopFuture()
        ioloop = self._ioloop
        if timeout:
            self._running.wait(timeout)
        if ioloop is None or _loop_is_closed(ioloop):
            self._running.clear()
            stopped.set_result(None)
            return stopped
        if self._ioloop_managed:
            if self._ioloop_thread is None:
                # Never started: run the callback on the loop here, then close the loop.
                self._stop_unstarted(ioloop, callback)
                stopped.set_result(None)
                return stopped
            self._stop_requested = True

        async def _stop() -> None:
            try:
                if callback is not None:
                    try:
                        await resolve(callback())
                    except Exception:
                        self._logger.exception("Unhandled exception calling stop callback")
                if self._ioloop_managed and not self._loop_finished:
                    self._logger.debug("Stopping ioloop %r", ioloop)
                    # One more iteration so that callbacks scheduled above can run.
                    await asyncio.sleep(0)
                    ioloop.stop()
                if self._ioloop is ioloop:
                    self._running.clear()
            finally:
                if not stopped.done():
                    stopped.set_result(None)

        def start_stopping() -> None:
            asyncio.ensure_future(_stop())

        loop_calls(ioloop.asyncio_loop).post(start_stopping)  # type: ignore[attr-defined]
        if _loop_is_closed(ioloop) and not stopped.done():  # raced with the loop closing
            stopped.set_result(None)
        return stopped

    def _stop_unstarted(
        self, ioloop: tornado.ioloop.IOLoop, callback: Callable[[], Any] | None
    ) -> None:
        aloop = ioloop.asyncio_loop  # type: ignore[attr-defined]

        async def run_callback() -> None:
            if callback is not None:
                await resolve(callback())

        try:
            if running_loop() is None:
                aloop.run_until_complete(run_callback())
                self._shutdown_loop(aloop)
            elif callback is not None:
                self._logger.warning(
                    "Managed ioloop was never started; stop callback not called "
                    "(cannot run it while another event loop runs in this thread)"
                )
        except Exception:
            self._logger.exception("Unhandled exception calling stop callback")
        finally:
            self._loop_finished = True
            ioloop.close(all_fds=True)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the managed ioloop thread to exit; a no-op for an unmanaged loop.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most.

        Raises
        ------
        RuntimeError
            If the managed loop was never started, or when called from its own thread.
        """
        if not self._ioloop_managed:
            return
        thread = self._ioloop_thread or self._previous_thread
        if thread is None:
            raise RuntimeError("Cannot join if not started")
        thread.join(timeout)


class IOLoopThreadWrapper:
    """Run callables in an ioloop's thread from other threads, blocking for their results.

    Parameters
    ----------
    ioloop : tornado.ioloop.IOLoop, optional
        The loop to run callables on (default ``IOLoop.current()``).

    Attributes
    ----------
    default_timeout : float or None
        Seconds to wait when no timeout is given (None: wait indefinitely).
    """

    default_timeout: float | None = None

    def __init__(self, ioloop: tornado.ioloop.IOLoop | None = None) -> None:
        self.ioloop = ioloop or tornado.ioloop.IOLoop.current()

    def call_in_ioloop(
        self,
        fn: Callable[..., Any],
        args: Sequence[Any],
        kwargs: Dict[str, Any],
        timeout: float | None = None,
    ) -> Any:
        """Call ``fn(*args, **kwargs)`` in the ioloop's thread and return its result.

        If ``fn`` returns a future (tornado, asyncio or concurrent) or a coroutine, its
        result is waited for and returned (or its exception raised).

        Parameters
        ----------
        fn : callable
            What to call.
        args : sequence
            Positional arguments.
        kwargs : dict
            Keyword arguments.
        timeout : float, optional
            Seconds to wait for the result (default :attr:`default_timeout`).

        Returns
        -------
        result : object
            What ``fn`` returned, or the result of the future it returned.

        Raises
        ------
        TimeoutError
            If the result is not available within ``timeout`` (the call is then cancelled
            if it is still waiting on a future); the message names ``timeout``.  A
            ``TimeoutError`` raised by ``fn`` (or its future) is re-raised as is.
        RuntimeError
            If called from the ioloop's own thread (it would wait for itself forever), or
            if the ioloop is closed.
        Exception
            Whatever ``fn`` (or its future) raised.
        """
        timeout = timeout or self.default_timeout
        if in_loop_thread(self.ioloop):
            raise RuntimeError(
                "Cannot call a thread-wrapped object from its own ioloop's thread "
                "(it would wait for itself); call the object directly there"
            )
        aloop = getattr(self.ioloop, "asyncio_loop", None)
        if aloop is None or aloop.is_closed():
            raise RuntimeError("IOLoop is closed")
        return call_blocking(aloop, fn, args, kwargs, timeout)

    def decorate_callable(self, callable_: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``callable_`` so that calling it runs it in the ioloop via :meth:`call_in_ioloop`.

        A ``timeout`` keyword argument of the call is passed on to ``callable_`` and bounds
        the wait as well, plus a margin of one second so that the callable's own timeout
        error (usually more telling) is the one raised.

        Parameters
        ----------
        callable_ : callable
            What to wrap.

        Returns
        -------
        decorated : callable
            Blocking, thread-safe version of ``callable_``.
        """

        @functools.wraps(callable_)
        def decorated(*args: Any, **kwargs: Any) -> Any:
            timeout = kwargs.get("timeout")
            if timeout:
                timeout = timeout + _DECORATED_TIMEOUT_MARGIN
            return self.call_in_ioloop(callable_, args, kwargs, timeout)

        decorated.__doc__ = "\n\n".join(
            (
                "Wrapped async call. Will call in ioloop.\n\n"
                "This call will block until the original callable has finished running on\n"
                "the ioloop, and will pass on the return value. If the original callable\n"
                "returns a future, this call will wait for the future to resolve and return\n"
                "the value or raise the exception that the future resolves with.\n\n"
                "Original Callable Docstring\n"
                "---------------------------\n",
                textwrap.dedent(callable_.__doc__ or ""),
            )
        )
        return decorated


class ThreadSafeMethodAttrWrapper(ObjectWrapper):
    """Proxy whose attributes are read, and methods run, in an ioloop's thread.

    Parameters
    ----------
    subject : object
        The object to wrap (it lives on the ioloop).
    ioloop_wrapper : IOLoopThreadWrapper
        Used to reach the subject's ioloop.

    Notes
    -----
    An attribute of the subject is read in the ioloop's thread (:meth:`_getattr`); a
    callable one is returned as a blocking wrapper
    (:meth:`IOLoopThreadWrapper.decorate_callable`) that runs it in the ioloop, waits for
    the future or coroutine it returns and gives its result.  Attribute writes go to the
    subject directly.  Use from the ioloop's own thread raises :class:`RuntimeError`
    (the call would wait for itself); use the subject directly there.

    Subclasses keep attributes of their own on the wrapper by defining them on the class
    (see :class:`katcp.object_proxies.ObjectWrapper`).
    """

    # Attributes must be defined on the class, or they would be proxied to the subject.
    _ioloop_wrapper: IOLoopThreadWrapper | None = None

    def __init__(self, subject: Any, ioloop_wrapper: IOLoopThreadWrapper) -> None:
        self._ioloop_wrapper = ioloop_wrapper
        super().__init__(subject)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # special names are the subject's, never fetched in the loop
            raise AttributeError(attr)
        val = self._getattr(attr)
        if callable(val):
            return self._decorate(val)
        return val

    def _getattr(self, attr: str) -> Any:
        """Read ``attr`` of the subject in the ioloop's thread."""
        assert self._ioloop_wrapper is not None
        return self._ioloop_wrapper.call_in_ioloop(getattr, (self.__subject__, attr), {})

    def _decorate(self, callable_: Callable[..., Any]) -> Callable[..., Any]:
        """Blocking, thread-safe version of ``callable_`` (runs in the ioloop)."""
        assert self._ioloop_wrapper is not None
        return self._ioloop_wrapper.decorate_callable(callable_)
