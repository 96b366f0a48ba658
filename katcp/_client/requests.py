"""Request-tracking clients: AsyncClient, CallbackClient, BlockingClient.

Every pending request ends exactly once: with its reply, with a timeout
failure, or with a failure when the connection drops or the client stops.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import ssl as _ssl
import threading
import time
from typing import Any, Callable, Dict, List, Tuple, Type

from katcp._aio.loopcalls import in_loop_thread
from katcp._client.base import DeviceClient, _ClientHandler, log, make_threadsafe
from katcp._protocol.message import KatcpClientError, Message
from katcp._security.redact import loggable

_REQUEST = Message.REQUEST
_REPLY = Message.REPLY


class _Pending:
    """One request awaiting its reply.

    Exactly one of the completion styles is used: callbacks
    (``reply_cb``/``inform_cb``), a future (``future``) or a blocked thread
    (``lock``).
    """

    __slots__ = ("request", "mid", "reply_cb", "inform_cb", "user_data",
                 "deadline", "start", "future", "informs", "lock", "result", "exc",
                 "cancelled")

    # (Called with positional arguments: keywords cost 40% more here, on CPython 3.11.)
    def __init__(self, request: Message, future: asyncio.Future | None = None,
                 informs: List[Message] | None = None, reply_cb: Callable | None = None,
                 inform_cb: Callable | None = None, user_data: tuple | None = None) -> None:
        self.request = request
        self.mid: bytes | None = None
        self.reply_cb = reply_cb
        self.inform_cb = inform_cb
        self.user_data = user_data
        #: Loop time at which the request times out (None: no timer, a blocked thread
        #: keeps its own).
        self.deadline: float | None = None
        self.start = 0.0
        self.future = future
        #: Informs collected for a future or a blocked thread (None: to ``inform_cb``).
        self.informs = informs
        self.lock: threading.Lock | None = None
        self.result: Tuple[Message, List[Message] | None] | None = None
        self.exc: BaseException | None = None
        #: Set (under the client's request lock) when a blocked thread gave up waiting.
        self.cancelled = False


class _RequestHandler(_ClientHandler):
    """Transport handler of the request-tracking clients whose class overrides neither
    :meth:`~DeviceClient.handle_message` nor :meth:`AsyncClient.handle_reply` (chosen per
    class, see :meth:`AsyncClient.__init_subclass__`).

    The reply to a pending future or blocking request, with its message id, ends the
    request here, as those two methods would, without their frames; any other message
    goes the general way.
    """

    __slots__ = ()

    def message_received(self, conn, msg) -> None:
        client: AsyncClient = self._client  # type: ignore[assignment]
        mid = msg.mid
        if (mid is not None and msg.mtype == _REPLY and conn is client._conn
                and not client._pings and client._received_any):
            queue = client._async_queue
            pending = queue.get(mid)
            # (Requests sent without an id are also on the name stacks: the general way.)
            if (pending is not None and pending.request.mid is not None
                    and (pending.future is not None or pending.lock is not None)
                    # One pop ends it, also against a blocked thread giving up (see _pop).
                    and queue.pop(mid, None) is pending):
                # (_replies_in is not kept: AsyncClient._replies_due reads the queue.)
                client._rx_count += 1
                fut = pending.future
                if fut is None:
                    client._complete(pending, msg)
                elif not fut.done():
                    fut.set_result((msg, pending.informs))
                return
        _ClientHandler.message_received(self, conn, msg)


class AsyncClient(DeviceClient):
    """DeviceClient with request tracking: callbacks, futures and blocking calls.

    Message ids are used when the server supports them; replies without ids
    are matched to the oldest pending request of the same name.

    Parameters
    ----------
    host : str
        Host to connect to.
    port : int
        Port to connect to.
    tb_limit : int, optional
        Maximum number of stack frames in logged tracebacks.
    timeout : float, optional
        Default request timeout in seconds (per-call ``timeout`` overrides).
    logger : logging.Logger, optional
        Logger to log to.
    auto_reconnect : bool, optional
        Whether to reconnect when the connection drops.
    ssl : ssl.SSLContext, optional
        Connect with TLS (see :class:`DeviceClient`). For servers with login, see
        :meth:`login` and :meth:`set_credentials`.

    Examples
    --------
    >>> c = AsyncClient('localhost', 10000)
    >>> c.start()
    >>> c.ioloop.add_callback(c.callback_request, katcp.Message.request('myreq'),
    ...                       reply_cb=print, inform_cb=print)
    >>> c.stop(); c.join()
    """

    #: Whether requests may be written past :meth:`send_request` and
    #: :meth:`send_message` (by :meth:`blocking_request` from the calling thread, and
    #: by the ioloop at once): only while the class overrides neither (decided per
    #: class, in __init_subclass__).
    _direct_writes = True
    _handler_class: Type[_ClientHandler] = _RequestHandler

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Decide once per class whether the direct write path may be used.

        An override of :meth:`send_request` or :meth:`send_message` (to log or
        audit traffic, say) must see every request, so such a class sends all
        its requests through them.
        """
        super().__init_subclass__(**kwargs)
        cls._direct_writes = (cls.send_request is DeviceClient.send_request
                              and cls.send_message is DeviceClient.send_message)
        # Replies may end their requests in the transport handler only while
        # handle_message and handle_reply would do just that.
        cls._handler_class = (
            _RequestHandler if (cls.handle_message is DeviceClient.handle_message
                                and cls.handle_reply is AsyncClient.handle_reply)
            else _ClientHandler)

    def __init__(self, host: str, port: int, tb_limit: int = 20, timeout: float = 5.0,
                 logger: logging.Logger = log, auto_reconnect: bool = True, *,
                 ssl: _ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, tb_limit=tb_limit, logger=logger,
                         auto_reconnect=auto_reconnect, ssl=ssl)
        self._request_timeout = timeout
        self._credentials: Tuple[str, str] | None = None
        #: The one timer of the request timeouts, due at ``_timer_when`` (see _push).
        self._timer: asyncio.Handle | None = None
        self._timer_when = 0.0
        self._timer_seq = 0  # (ties of equal deadlines never compare the mids)
        self._reset_async_requests()

    # ------------------------------------------------------------------ login
    def set_credentials(self, user: str | None, password: str | None = None) -> None:
        """Log in as ``user`` first thing on every connection from now on (None: stop).

        For servers with login (see the Security chapter). The password is kept in this
        object's memory for as long as it is set, so that the client can log in again
        after a reconnection; it is never logged (``?login`` is logged redacted).
        Takes effect at the next connection; :meth:`login` also logs in at once.

        Parameters
        ----------
        user : str or None
            User name, or None to forget the credentials.
        password : str, optional
            The user's password.
        """
        if user is None:
            self._credentials = None
            return
        if not password:
            raise ValueError("a password is needed to log in")
        self._credentials = (str(user), str(password))

    def _on_connected(self) -> None:
        credentials = self._credentials
        if credentials is not None:
            # No message id (the server's flags are not known yet): the reply is matched
            # by name. The server handles this client's later requests after the login.
            self.callback_request(Message.request("login", *credentials),
                                  reply_cb=self._relogin_done, use_mid=False)

    def _relogin_done(self, reply: Message) -> None:
        if not reply.reply_ok():
            user = self._credentials[0] if self._credentials else "?"
            self._logger.error("Login as %s to %s failed: %s", user, self.bind_address_string,
                               b" ".join(reply.arguments[1:]).decode("utf-8", "replace"))

    async def login(self, user: str, password: str, timeout: float | None = None) -> str:
        """Log in to the server now, and again after every reconnection.

        Call (await) in the ioloop thread, once connected.

        Parameters
        ----------
        user : str
            User name.
        password : str
            Password.
        timeout : float, optional
            Seconds to wait for the reply (default: the client's timeout).

        Returns
        -------
        role : str
            The role the server granted (``read``, ``control`` or ``admin``).

        Raises
        ------
        KatcpClientError
            The server refused the login (the message says why, as the server put it).
        """
        self.set_credentials(user, password)
        reply, _ = await self.future_request(Message.request("login", user, password),
                                             timeout=timeout)
        return _login_result(reply, user, self)

    # ------------------------------------------------------------------ bookkeeping
    def _reset_async_requests(self) -> None:
        """Forget all pending requests (and stop their timer)."""
        #: mid -> _Pending
        self._async_queue: Dict[bytes, _Pending] = {}
        #: request name -> list of mids of the requests sent without an id (only their
        #: replies and informs are matched by name), oldest first
        self._async_id_stack: Dict[str, List[bytes]] = {}
        #: Heap of (deadline, sequence number, mid) of the requests with a timeout, also of
        #: some that have ended already (dropped lazily, see _push and _expire_requests).
        self._deadlines: List[Tuple[float, int, bytes]] = []
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None

    # The pending requests are shared with threads that send requests directly
    # (blocking_request): _push and _pop are called holding ``_request_lock``.
    def _push(self, mid: bytes, pending: _Pending, timeout: float | None) -> None:
        pending.mid = mid
        loop = self._loop
        assert loop is not None  # requests are registered once started
        pending.start = start = loop.time()
        queue = self._async_queue
        if timeout is not None:
            # (ioloop thread only: blocked threads time out themselves.)  One timer for
            # all requests, not a timer each: a heap push here and nothing when the reply
            # comes, instead of a timer made and cancelled per request; the timer wakes
            # about once per timeout, when the earliest deadline it was set for comes.
            pending.deadline = deadline = start + timeout
            heap = self._deadlines
            if len(heap) > 64 and len(heap) > 2 * len(queue) + 64:
                # Mostly entries of requests that have ended: keep those still pending.
                heap = self._deadlines = [(p.deadline, i, m) for i, (m, p)
                                          in enumerate(queue.items())
                                          if p.deadline is not None]
                heapq.heapify(heap)
                self._timer_seq = len(queue)
            self._timer_seq += 1
            heapq.heappush(heap, (deadline, self._timer_seq, mid))
            if self._timer is None or deadline < self._timer_when:
                self._arm_timer(loop, deadline)
        queue[mid] = pending
        request = pending.request
        if request.mid is None:
            stack = self._async_id_stack.get(request.name)
            if stack is None:
                self._async_id_stack[request.name] = [mid]
            else:
                stack.append(mid)

    def _pop(self, mid: bytes) -> _Pending | None:
        # (A request sent with an id leaves the queue in one atomic pop: _RequestHandler
        # ends it that way, without the lock.)
        pending = self._async_queue.pop(mid, None)
        if pending is not None and pending.request.mid is None:
            stack = self._async_id_stack[pending.request.name]
            if stack[0] == mid:
                del stack[0]
            else:
                stack.remove(mid)
        return pending

    def _arm_timer(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """Have :meth:`_expire_requests` run at ``when`` (ioloop thread)."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
        self._timer = loop.call_at(when, self._expire_requests)
        self._timer_when = when

    def _expire_requests(self) -> None:
        """The earliest deadline the timer was set for has come: time out what is due."""
        self._timer = None
        loop = self._loop
        assert loop is not None  # timers run in the loop
        # (The loop runs a timer a clock resolution early at most.)
        now = max(loop.time(), self._timer_when)
        heap = self._deadlines
        queue = self._async_queue
        due = []
        with self._request_lock:
            while heap and heap[0][0] <= now:
                deadline, _, mid = heapq.heappop(heap)
                pending = queue.get(mid)
                if pending is not None and pending.deadline == deadline:
                    due.append((mid, pending))
        if heap:
            self._arm_timer(loop, heap[0][0])
        for mid, pending in due:
            self._handle_timeout(mid, pending)

    def _complete(self, pending: _Pending, msg: Message) -> None:
        """Deliver the final reply of a pending request."""
        fut = pending.future
        if fut is not None:
            if not fut.done():
                fut.set_result((msg, pending.informs))
            return
        lock = pending.lock
        if lock is not None:
            pending.result = (msg, pending.informs)
            lock.release()
            return
        reply_cb = pending.reply_cb
        if reply_cb is None:
            return
        try:
            if pending.user_data is None:
                reply_cb(msg)
            else:
                reply_cb(msg, *pending.user_data)
        except Exception:
            self._logger.error("Callback reply %s FAIL: %s", msg.name, self._format_exc())

    def _fail(self, pending: _Pending, reason: str) -> None:
        request = pending.request
        self._complete(pending, Message.reply(request.name, "fail", reason, mid=request.mid))

    # ------------------------------------------------------------------ requests
    def _start_request(self, msg: Message, pending: _Pending, timeout: float | None,
                       use_mid: bool | None, timer: bool = True) -> None:
        """Register and send a request (ioloop thread).

        A failure to send (not connected, ids not supported) completes the
        request with a fail reply; any other error goes to the waiting thread
        or future, or is raised for callback requests. With ``timer`` False
        no timeout is set (a blocked thread keeps its own).
        """
        if timeout is None:
            timeout = self._request_timeout
        mid = None
        try:
            # Registered and written under the lock, like the requests that
            # threads send directly: the wire order is the registration order.
            with self._request_lock:
                if pending.cancelled:
                    return
                mid = self._get_mid_and_update_msg(msg, use_mid)
                self._push(mid, pending, timeout if timer else None)
                if not (self._direct_writes and self._write_request_now(msg)):
                    self.send_request(msg)
        except KatcpClientError as exc:
            with self._request_lock:
                popped = None if mid is None else self._pop(mid)
            if popped is not None:
                self._fail(pending, str(exc))
        except Exception as exc:
            if mid is not None:
                with self._request_lock:
                    self._pop(mid)
            if pending.lock is not None:
                pending.exc = exc
                pending.lock.release()
            elif pending.future is not None:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            else:
                raise

    def _write_request_now(self, msg: Message) -> bool:
        """Write a request as :meth:`send_request` would, without its layers (ioloop thread).

        For classes that override neither :meth:`send_request` nor :meth:`send_message`
        (see :meth:`__init_subclass__`): the request is encoded and sent on the socket at
        once. Returns False, having done nothing, for anything :meth:`send_request` must
        handle or report (not connected, a message id the server does not support, not a
        request).
        """
        conn = self._conn
        if conn is None or conn.closing or msg.mtype != _REQUEST:
            return False
        if msg.mid and not self._server_supports_ids:
            return False
        try:
            data = conn.codec.encode(msg)
        except Exception:
            return False  # send_message reports it (and drops the connection)
        conn.write_now(data)
        # (No _requests_out count: _replies_due reads the queue of pending requests.)
        if self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug("Sending to %s: %r", self.bind_address_string, loggable(msg))
        return True

    def _start_request_direct(self, msg: Message, pending: _Pending,
                              use_mid: bool | None) -> bool:
        """Register and send a request from the calling thread, not the ioloop.

        Only the reply then crosses threads. The request is registered and
        written under the request lock, as the ioloop does, so requests go on
        the wire in the order they are registered (replies without ids are
        matched by that order). Returns False, having done nothing, when the
        request must go through the ioloop instead: not connected, calls of
        this client made by other threads still on their way to the ioloop
        (they were made first), an unusual request the ioloop path reports
        on, or a class that overrides :meth:`send_request` or
        :meth:`send_message` (see :meth:`__init_subclass__`).
        """
        if not self._direct_writes:
            return False
        conn = self._conn
        if conn is None or conn.closing or not conn.threadsafe_writes:
            return False
        if msg.mtype != Message.REQUEST:
            return False
        if (msg.mid or use_mid) and not self._server_supports_ids:
            return False  # the ioloop path fails it: ids not supported
        with self._request_lock:
            if self._xthread_calls > 0 or self._conn is not conn or conn.closing:
                return False
            mid = self._get_mid_and_update_msg(msg, use_mid)
            self._push(mid, pending, None)
            try:
                data = conn.codec.encode(msg)
            except Exception:
                self._pop(mid)
                raise
            # If the connection drops from here on, the ioloop fails the request.
            conn.write_threadsafe(data)
        if self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug("Sending to %s: %r", self.bind_address_string, loggable(msg))
        return True

    @make_threadsafe
    def callback_request(self, msg: Message, reply_cb: Callable | None = None,
                         inform_cb: Callable | None = None, user_data: tuple | None = None,
                         timeout: float | None = None, use_mid: bool | None = None) -> None:
        """Send a request; its reply and informs go to callbacks.

        Parameters
        ----------
        msg : Message
            The request to send.
        reply_cb : callable, optional
            ``reply_cb(reply_msg)`` or ``reply_cb(reply_msg, *user_data)``;
            called exactly once, with a fail reply on timeout or disconnect.
        inform_cb : callable, optional
            ``inform_cb(inform_msg)`` or ``inform_cb(inform_msg, *user_data)``.
        user_data : tuple, optional
            Extra arguments for the callbacks.
        timeout : float, optional
            Seconds to wait for the reply (default: the client's timeout).
        use_mid : bool, optional
            Force or suppress message ids (default: if the server supports them).
        """
        self._start_request(msg, _Pending(msg, None, None, reply_cb, inform_cb, user_data), timeout, use_mid)

    def future_request(self, msg: Message, timeout: float | None = None,
                       use_mid: bool | None = None):
        """Send a request; return a future of ``(reply, informs)``.

        Call from the ioloop thread. The future always resolves: with the
        reply, or with a fail reply on timeout, disconnect or stop.

        Parameters
        ----------
        msg : Message
            The request to send.
        timeout : float, optional
            Seconds to wait for the reply (default: the client's timeout).
        use_mid : bool, optional
            Force or suppress message ids.

        Returns
        -------
        tornado.concurrent.Future
            Resolves to ``(reply, informs)``.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("Call start() before future_request()")
        fut = loop.create_future()
        pending = _Pending(msg, fut, [])
        if in_loop_thread(loop):
            try:
                self._start_request(msg, pending, timeout, use_mid)
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            self._schedule_from_thread(self._start_request, msg, pending, timeout, use_mid)
        return fut

    def blocking_request(self, msg: Message, timeout: float | None = None,
                         use_mid: bool | None = None) -> Tuple[Message, List[Message]]:
        """Send a request and wait for ``(reply, informs)``.

        Must not be called from the ioloop thread. Failures are returned, not
        raised: when not connected a fail reply comes back at once; timeouts,
        disconnects and stop give a fail reply too.

        Parameters
        ----------
        msg : Message
            The request to send.
        timeout : float, optional
            Seconds to wait for the reply (default: the client's timeout).
        use_mid : bool, optional
            Force or suppress message ids.

        Returns
        -------
        reply : Message
        informs : list of Message
        """
        loop = self._loop
        if loop is not None and in_loop_thread(loop):
            raise AssertionError("Cannot call blocking_request() in ioloop")
        if timeout is None:
            timeout = self._request_timeout
        if not self._connected.is_set():
            return (Message.reply(msg.name, "fail", f"Not connected to device {self.bind_address_string}", mid=msg.mid), [])
        informs: List[Message] = []
        pending = _Pending(msg, None, informs)
        lock = threading.Lock()
        lock.acquire()
        pending.lock = lock
        start = time.monotonic()
        # One thread hand-off per request: the request is sent from this thread
        # and only the reply is passed over by the ioloop.
        if not self._start_request_direct(msg, pending, use_mid):
            calls = self._loop_calls
            assert calls is not None  # connected, so started
            calls.post(self._start_request, msg, pending, None, use_mid, False)
        if not lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            with self._request_lock:
                pending.cancelled = True
                mid = pending.mid
                # Unless the ioloop is completing it this very moment, it is ours to end.
                mine = mid is None or self._pop(mid) is not None
            if mine:
                elapsed = time.monotonic() - start
                reply = Message.reply(msg.name, "fail",
                                      f"Request {msg.name} timed out after {elapsed:f} seconds.",
                                      mid=msg.mid)
                return (reply, informs)
            lock.acquire()
        if pending.exc is not None:
            raise pending.exc
        result = pending.result
        assert result is not None  # set before the lock was released
        return (result[0], informs)

    # ------------------------------------------------------------------ incoming
    def handle_inform(self, msg: Message):
        """Route an inform to its pending request, else to the ``inform_*`` handlers.

        Parameters
        ----------
        msg : Message
            The inform.
        """
        mid = msg.mid
        if mid is not None:
            pending = self._async_queue.get(mid)
        else:
            pending = None
            with self._request_lock:
                # (A request sent with an id expects informs with that id.)
                stack = self._async_id_stack.get(msg.name)
                if stack:
                    pending = self._async_queue[stack[0]]
        if pending is None:
            return super().handle_inform(msg)
        informs = pending.informs
        if informs is not None:
            informs.append(msg)
            return None
        inform_cb = pending.inform_cb
        if inform_cb is None:
            return super().handle_inform(msg)
        try:
            if pending.user_data is None:
                inform_cb(msg)
            else:
                inform_cb(msg, *pending.user_data)
        except Exception:
            self._logger.error("Callback inform %s FAIL: %s", msg.name, self._format_exc())
        return None

    def handle_reply(self, msg: Message):
        """Complete the pending request a reply belongs to, else dispatch it.

        Parameters
        ----------
        msg : Message
            The reply.
        """
        mid = msg.mid
        with self._request_lock:
            if mid is not None:
                pending = self._pop(mid)
            else:
                pending = None
                stack = self._async_id_stack.get(msg.name)
                if stack:
                    pending = self._pop(stack[0])
        if pending is None:
            return super().handle_reply(msg)
        if pending.reply_cb is None and pending.future is None and pending.lock is None:
            return super().handle_reply(msg)
        self._complete(pending, msg)
        return None

    def _handle_timeout(self, mid: bytes, expected: _Pending | None = None) -> None:
        """Time out the request ``mid`` (its deadline has come), unless it has ended.

        With ``expected``, only if ``mid`` is still that request.
        """
        loop = self._loop
        assert loop is not None  # timers run in the loop
        conn = self._conn
        with self._request_lock:
            pending = self._async_queue.get(mid)
            if pending is None or (expected is not None and pending is not expected):
                return
            if conn is not None and conn.holding:
                # The reply may be among the messages read in time but not handed over
                # yet (a long burst): look again after the next lot of them.
                loop.call_soon(self._handle_timeout, mid, pending)
                return
            self._pop(mid)
        elapsed = loop.time() - pending.start
        self._fail(pending, f"Request {pending.request.name} timed out after {elapsed:f} seconds.")

    def _fail_waiting_requests(self, reason: str) -> None:
        """Fail every pending request with `reason` (ioloop thread)."""
        with self._request_lock:
            queue = self._async_queue
            self._reset_async_requests()
        for pending in queue.values():
            self._fail(pending, reason)

    def _on_connection_lost(self) -> None:
        self._fail_waiting_requests("Connection closed before reply was received")

    def _replies_due(self) -> bool:
        # Every request is tracked here, also those written without send_request.
        return bool(self._async_queue)

    def _on_stopping(self) -> None:
        self._fail_waiting_requests("Client stopped before reply was received")

    def stop(self, *args, **kwargs):
        """Stop the client, failing pending requests first.

        Parameters
        ----------
        timeout : float, optional
            See :meth:`DeviceClient.stop`.
        """
        return super().stop(*args, **kwargs)


def request_check(client: AsyncClient, exception, *msg_parms, **kwargs):
    """Make a blocking request and raise `exception` unless the reply is ok.

    Parameters
    ----------
    client : AsyncClient
        The (thread-safe) client to use.
    exception : type
        Exception class raised when the reply is not ok.
    *msg_parms
        Arguments for :meth:`Message.request` (name first).
    **kwargs
        ``timeout`` is passed to ``blocking_request``; ``mid`` to ``Message.request``.

    Returns
    -------
    reply, informs
        As returned by ``client.blocking_request``.
    """
    timeout = kwargs.get("timeout")
    mid = kwargs.get("mid")
    req_msg = Message.request(*msg_parms, mid=mid)
    if timeout is not None:
        reply, informs = client.blocking_request(req_msg, timeout=timeout)
    else:
        reply, informs = client.blocking_request(req_msg)
    if not reply.reply_ok():
        raise exception(f'Unexpected failure reply "{reply}"\n with device at {client.bind_address_string}, request \n"{req_msg}"'
                        )
    return reply, informs


class CallbackClient(AsyncClient):
    """Thread-safe :class:`AsyncClient` (thread safety enabled in ``__init__``).

    Parameters are those of :class:`AsyncClient`.
    """

    def __init__(self, host: str, port: int, tb_limit: int = 20, timeout: float = 5.0,
                 logger: logging.Logger = log, auto_reconnect: bool = True, *,
                 ssl: _ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, tb_limit=tb_limit, logger=logger, timeout=timeout,
                         auto_reconnect=auto_reconnect, ssl=ssl)
        self.enable_thread_safety()

    def setDaemon(self, daemonic: bool) -> None:
        """Set the daemon flag of the managed ioloop thread (call before start)."""
        self._ioloop_manager.setDaemon(daemonic)


class BlockingClient(CallbackClient):
    """Thread-safe client for blocking use; same as :class:`CallbackClient`.

    Its :meth:`login` blocks (call it from a thread other than the ioloop's).
    """

    def login(self, user: str, password: str,  # type: ignore[override]
              timeout: float | None = None) -> str:
        """Log in to the server now (blocking), and again after every reconnection.

        Parameters and result as :meth:`AsyncClient.login`.
        """
        self.set_credentials(user, password)
        reply, _ = self.blocking_request(Message.request("login", user, password),
                                         timeout=timeout)
        return _login_result(reply, user, self)


def _login_result(reply: Message, user: str, client: AsyncClient) -> str:
    """The role granted by a ``!login`` reply; raise KatcpClientError for a refusal."""
    args = [a.decode("utf-8", "replace") for a in reply.arguments]
    if reply.reply_ok() and len(args) >= 2:
        return args[1]
    reason = " ".join(args[1:]) or "no reason given"
    raise KatcpClientError(f"Login as {user} to {client.bind_address_string} failed: {reason}")
