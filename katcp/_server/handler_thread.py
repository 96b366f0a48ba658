"""`MessageHandlerThread`: the single request-handling thread of a threaded device server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections import deque
from typing import Any, Callable, Deque

from katcp._protocol.message import Message
from katcp._security.redact import loggable

__all__ = ["MessageHandlerThread"]

log = logging.getLogger("katcp.server")


class MessageHandlerThread:
    """The single thread that runs all request handlers of a threaded server.

    Messages and calls wait in one queue and are handled in the order they were
    queued.  Handing one over costs a ``deque.append``, plus one wake-up of this
    thread if it was waiting: while it is busy, messages that arrive meanwhile
    are queued without waking it, so a burst costs one wake-up.

    Parameters
    ----------
    handler : callable
        ``handler(client_conn, msg)``, normally the device's ``handle_message``.
    log_inform_formatter : callable
        The device's ``create_log_inform``.
    logger : logging.Logger object, optional
        Logger to log messages to.
    dispatch : callable, optional
        ``dispatch(client_conn, msg)``, called in this thread for every queued
        message (a threaded device passes its in-order dispatcher); default
        ``handler``.

    """

    def __init__(self, handler: Callable, log_inform_formatter: Callable,
                 logger: logging.Logger = log,
                 dispatch: Callable[[Any, Message], None] | None = None) -> None:
        self.handler = handler
        owner = getattr(getattr(handler, "__self__", None), "__class__", type(self)).__name__
        self.name = f"{owner}.message_handler"
        self.log_inform_formatter = log_inform_formatter
        self._logger = logger
        #: Queued (client_conn, msg) pairs and callables, in order (others may read
        #: its length: while it is not empty, this thread has more to do).
        self.queued: Deque[Any] = deque()
        # True while this thread waits (or is about to wait) on _wake for new items.
        self._idle = False
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        #: Number of times a queued item woke this thread (a burst of items: one).
        self.wakeups = 0
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self.ioloop = None
        #: Called in this thread for every queued (client, msg); default: ``handler``.
        self.dispatch: Callable[[Any, Message], None] = dispatch or self._default_dispatch

    def set_ioloop(self, ioloop: Any) -> None:
        """Set the ioloop whose futures the handlers may use."""
        self.ioloop = ioloop

    def _default_dispatch(self, client_conn: Any, msg: Message) -> None:
        self.handler(client_conn, msg)

    def on_message(self, client_conn: Any, msg: Message) -> concurrent.futures.Future:
        """Queue one message for handling.

        Returns
        -------
        ready : concurrent.futures.Future
            Resolves with the handler's result once the message has been handled.

        """
        ready: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                ready.set_result(self.handler(client_conn, msg))
            except Exception as exc:
                self._report_error(client_conn, msg)
                ready.set_exception(exc)

        self.call(run)
        return ready

    def submit(self, client_conn: Any, msg: Message) -> None:
        """Queue one message for ``dispatch`` (from any thread; the ioloop's, normally)."""
        self.queued.append((client_conn, msg))
        if self._idle:
            self._wake_up()

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` in the handler thread, after everything queued so far."""
        self.queued.append(fn)
        if self._idle:
            self._wake_up()

    def _wake_up(self) -> None:
        # Two producers may both see _idle and both wake the thread: one wake-up is then
        # spurious, and harmless (the thread finds nothing and waits again).
        self._idle = False
        self.wakeups += 1
        self._wake.put(None)

    def _report_error(self, client_conn: Any, msg: Message) -> None:
        # loggable: a ?login's password must not reach the log or the #log inform.
        err_msg = ("Error calling message handler for msg:\n "
                   f"{loggable(msg).decode('utf-8', 'replace')}")
        self._logger.error(err_msg, exc_info=True)
        try:
            client_conn.inform(self.log_inform_formatter(
                "error", "See device logs:\n" + err_msg, "root"))
        except Exception:
            self._logger.debug("Could not send error inform", exc_info=True)

    def run(self) -> None:
        """Thread main loop: handle queued messages and calls until stopped."""
        if self.ioloop is not None:
            # Handlers calling IOLoop.current() get the server's ioloop, as in katcp-python.
            asyncio.set_event_loop(self.ioloop.asyncio_loop)
        self._running.set()
        items = self.queued
        popleft = items.popleft
        wait = self._wake.get
        dispatch = self.dispatch
        running = self._running.is_set
        try:
            while running():
                try:
                    item = popleft()
                except IndexError:
                    # Say we are waiting, then look again: an item queued before the
                    # producer could see the flag would otherwise wait for the next one.
                    self._idle = True
                    if items:
                        self._idle = False
                        continue
                    wait()
                    continue
                if type(item) is tuple:
                    client_conn, msg = item
                    try:
                        dispatch(client_conn, msg)
                    except Exception:
                        self._report_error(client_conn, msg)
                else:
                    try:
                        item()
                    except Exception:
                        self._logger.exception("Error in message handler thread callback")
        except Exception:
            self._logger.error("Unhandled exception in message handler thread", exc_info=True)
        finally:
            self._running.clear()
            self._logger.debug("Message handler thread stopped.")

    def start(self, timeout: float | None = None) -> bool | None:
        """Start the handler thread (optionally waiting up to ``timeout`` s for it)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("Cannot start since thread is already running")
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        if timeout:
            return self.wait_running(timeout)
        return None

    def stop(self, timeout: float | None = 1.0) -> None:
        """Stop the handler thread (from another thread).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the thread to have *started*.

        """
        if timeout:
            self._running.wait(timeout)
        self._running.clear()
        self._wake.put(None)  # wake the thread if it waits

    def join(self, timeout: float | None = None) -> None:
        """Rejoin the handler thread."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def isAlive(self) -> bool:
        """Whether the handler thread is alive."""
        return bool(self._thread and self._thread.is_alive())

    is_alive = isAlive

    def running(self) -> bool:
        """Whether the handler thread is running."""
        return self._running.is_set()

    def wait_running(self, timeout: float | None = None) -> bool:
        """Wait until the handler thread is running."""
        return self._running.wait(timeout)

    @property
    def thread_id(self) -> int | None:
        """Thread ident of the handler thread (None before start)."""
        return self._thread.ident if self._thread is not None else None
