"""Blocking NCP client for lab scripts: no ``async``/``await`` needed.

The NCP session runs on a managed ioloop (:class:`katcp.ioloop_manager.IOLoopManager`) in a
daemon thread; the methods here hand work to that loop and wait for the result, so they can
be called from any plain thread::

    from katcp.ncp import blocking

    with blocking.connect("node.example", 9999, timeout=10) as node:
        field = node.request("DSPC", "TIME", SAMP=1024, FCTR=1200)
        print(field["TSDC"])

Every wait is bounded: by the ``timeout`` argument of the call, else by the connection's
network timeout.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Iterator, Mapping, TypeVar

from .._aio.loopcalls import CallTimeoutError, Outcome, call_blocking, in_loop_thread
from ..ioloop_manager import IOLoopManager
from .client import connect as _async_connect
from .connection import Connection, Field, Response
from .errors import ConnectionClosed, NCPError, NetworkTimeoutError

__all__ = ["connect", "BlockingConnection", "BlockingResponse"]

T = TypeVar("T")


class _Runner:
    """Runs coroutines on the managed loop from other threads."""

    def __init__(self, manager: IOLoopManager, owned: bool) -> None:
        self.manager = manager
        self.owned = owned
        self.loop: asyncio.AbstractEventLoop = manager.get_ioloop().asyncio_loop  # type: ignore[attr-defined]

    def run(self, coro: Awaitable[T], timeout: float | None) -> T:
        if in_loop_thread(self.loop):
            coro.close()  # type: ignore[attr-defined]
            raise RuntimeError("blocking NCP calls cannot be made from the ioloop's own thread")
        try:
            return call_blocking(self.loop, lambda: coro, (), {}, timeout)
        except CallTimeoutError as exc:
            if isinstance(exc, NCPError):
                raise  # the session's own timeout
            raise NetworkTimeoutError(f"No result within {timeout} s") from None

    def stop(self) -> None:
        if self.owned:
            self.manager.stop()
            self.manager.join(timeout=5)


class BlockingResponse:
    """Blocking view of a :class:`~katcp.ncp.Response`."""

    def __init__(self, response: Response, runner: _Runner, timeout: float) -> None:
        self._response = response
        self._runner = runner
        self._timeout = timeout

    def recv(self, timeout: float | None = None) -> Field:
        """Wait for the next reply field (see :meth:`katcp.ncp.Response.recv`).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most (default: the connection's network timeout).
        """
        return self._runner.run(self._response.recv(), timeout or self._timeout)

    def recv_field(self, field_name: str, timeout: float | None = None) -> Field:
        """Wait for the next reply field named ``field_name``."""
        return self._runner.run(self._response.recv_field(field_name), timeout or self._timeout)

    def __iter__(self) -> Iterator[Field]:
        """Yield reply fields until the connection closes."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                return


class BlockingConnection:
    """Blocking view of an NCP client :class:`~katcp.ncp.Connection`.

    Made by :func:`connect`. Use it as a context manager, or call :meth:`close`.

    Attributes
    ----------
    connection : katcp.ncp.Connection
        The underlying asyncio connection (use it only from the ioloop's thread).
    """

    def __init__(self, connection: Connection, runner: _Runner, timeout: float) -> None:
        self.connection = connection
        self._runner = runner
        self._timeout = timeout
        self._request_lock = threading.Lock()
        # request() writes from the calling thread once the transport allows it.
        self._direct = runner.run(self._enable_direct(), timeout)

    async def _enable_direct(self) -> bool:
        # (Loop thread.)  The direct path stands for send() then recv(): a Connection
        # subclass that overrides either keeps the loop path.
        conn = self.connection
        cls = type(conn)
        if cls.send is not Connection.send or cls.recv is not Connection.recv:
            return False
        if conn._conn is None:
            return False
        conn._conn.enable_threadsafe_writes()
        return True

    @property
    def remote_hostname(self) -> str:
        """The identifying hostname of the remote end."""
        return self.connection.remote_hostname

    def is_closing(self) -> bool:
        """True once the connection is closing."""
        return self.connection.is_closing()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return fn(*args, **kwargs)

        return self._runner.run(call(), self._timeout)

    def send(self, packet_type: str, field_name: str, **params: Any) -> BlockingResponse:
        """Send a packet with one field; see :meth:`katcp.ncp.Connection.send`."""
        response = self._call(self.connection.send, packet_type, field_name, **params)
        return BlockingResponse(response, self._runner, self._timeout)

    def send_packet(self, packet_type: str, **fields: Mapping[str, Any]) -> BlockingResponse:
        """Send a packet with several fields; see :meth:`katcp.ncp.Connection.send_packet`."""
        response = self._call(self.connection.send_packet, packet_type, **fields)
        return BlockingResponse(response, self._runner, self._timeout)

    def request(
        self, packet_type: str, field_name: str, timeout: float | None = None, **params: Any
    ) -> Field:
        """Send a packet with one field and return the first reply field.

        Parameters
        ----------
        packet_type, field_name : str
            The packet type and field name.
        timeout : float, optional
            Seconds to wait for the reply (default: the connection's network timeout).
        **params
            The NCP params.

        Raises
        ------
        CommandError
            If the reply carries ``ERRO`` (with ``auto_erro``).
        NetworkTimeoutError
            If no reply arrives in time.
        """
        connection = self.connection
        wait = timeout or self._timeout
        if self._direct:
            # The request is written from this thread and the loop hands over the reply
            # field: one thread hand-off per request.  Requests take turns (each would
            # otherwise discard the other's reply while waiting for its own).
            if not self._request_lock.acquire(timeout=wait):
                raise NetworkTimeoutError(f"No turn to send within {wait} s")
            try:
                outcome = Outcome()
                if connection._request_from_thread(packet_type, field_name, params, outcome):
                    try:
                        answered = outcome.wait(wait)
                    finally:
                        connection._drop_reply_watch(outcome)
                    if not answered:
                        raise NetworkTimeoutError(f"No reply within {wait} s")
                    if outcome.exc is not None:
                        raise outcome.exc
                    return outcome.value
            finally:
                self._request_lock.release()

        async def request() -> Field:
            # Send and wait in one trip to the ioloop: one hand-off each way.
            return await connection.send(packet_type, field_name, **params).recv()

        return self._runner.run(request(), wait)

    def recv(self, timeout: float | None = None) -> Field:
        """Wait for the next field received (any field, see :meth:`Connection.recv`)."""
        return self._runner.run(self.connection.recv(), timeout or self._timeout)

    def recv_field(self, packet_type: str, field_name: str, timeout: float | None = None) -> Field:
        """Wait for the next field with this packet type and field name."""
        return self._runner.run(
            self.connection.recv_field(packet_type, field_name), timeout or self._timeout
        )

    def close(self) -> None:
        """Close the connection (and stop the ioloop if this object started it)."""
        try:
            if not self._runner.loop.is_closed():

                async def close() -> None:
                    self.connection.close()
                    await self.connection.wait_closed()

                self._runner.run(close(), self._timeout)
        finally:
            self._runner.stop()

    def __enter__(self) -> BlockingConnection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def connect(
    host: str,
    port: int | None = None,
    *,
    ioloop_manager: IOLoopManager | None = None,
    timeout: int = 60,
    **kwargs: Any,
) -> BlockingConnection:
    """Connect to an NCP server and return a :class:`BlockingConnection`.

    Parameters
    ----------
    host : str
        The NCP server's hostname or address.
    port : int, optional
        Its port (defaults as in :func:`katcp.ncp.connect`).
    ioloop_manager : IOLoopManager, optional
        A started manager whose loop runs the connection. By default a managed ioloop is
        started in a daemon thread for this connection and stopped by :meth:`close`.
    timeout : int
        Network timeout in seconds; also the default wait of every blocking call.
    **kwargs
        Any other argument of :func:`katcp.ncp.connect`.

    Raises
    ------
    NCPError
        If the connection failed.
    """
    owned = ioloop_manager is None
    if ioloop_manager is None:
        ioloop_manager = IOLoopManager(managed_default=True)
        ioloop_manager.start(timeout=5)
    runner = _Runner(ioloop_manager, owned)
    try:
        conn = runner.run(_async_connect(host, port, timeout=timeout, **kwargs), timeout * 2)
    except BaseException:
        runner.stop()
        raise
    return BlockingConnection(conn, runner, timeout)
