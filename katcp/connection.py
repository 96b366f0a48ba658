"""The one transport: a codec-parameterised stream connection on asyncio.

Every connection in the package -- server side and client side, KATCP and NCP, plain TCP and
TLS -- is a :class:`Connection`.  It is an :class:`asyncio.BufferedProtocol` that knows nothing
about the wire format: bytes read from the socket go to a sans-I/O *codec*
(``feed(bytes) -> list[message | Exception]``, ``encode(message) -> bytes``, ``buffer_size``)
and every decoded item is handed to a *handler* object, which may serve many connections:

* ``handler.connection_made(conn)``
* ``handler.message_received(conn, msg)`` -- each decoded message, in order
* ``handler.decode_error(conn, exc)`` -- a malformed message, or :class:`MessageTooLong`
  (after which the connection flushes what the handler wrote and closes)
* ``handler.connection_lost(conn, exc)`` -- exactly once; ``exc`` is None for a clean close

All callbacks run in the event loop's thread.  An exception raised by a handler callback is
logged and never stops the connection.

The connection owns:

* the receive buffer (one buffer per event loop, shared by all its connections, because asyncio
  fills it and calls :meth:`Connection.buffer_updated` synchronously; an idle connection costs
  only its own small objects);
* the maximum message size (an unterminated message longer than ``max_msg_size`` bytes is
  reported as :class:`MessageTooLong` and that connection alone is closed);
* the write-buffer limit (a peer too slow to read its output, so that more than
  ``max_write_buffer_size`` bytes are waiting to be sent, is logged and aborted; everyone else
  is served on);
* coalescing of writes: writes are queued and joined; those made while the messages of one
  read (or ``handler.connection_made``) are handled go out in one ``transport.write`` right
  after it, and other writes of one loop iteration in one ``transport.write`` at the end of
  the iteration (scheduled once with ``call_soon``); a large queue is handed over at once;
* close (after flushing), abort, the peer address and :meth:`Connection.wait_closed`;
* writes from other threads (:meth:`Connection.write_threadsafe`, once enabled): sent on the
  socket by the calling thread while nothing is queued, otherwise queued for the ioloop, so
  that a blocked client thread does not wait for the ioloop to send its request.

Use :func:`create_server` and :func:`open_connection` to make connections.  (The code lives in
:mod:`katcp._transport`: ``protocol``, ``listen`` (servers) and ``dial`` (clients); import it
from here.)  A plain TCP server
on asyncio's selector loop makes each connection's transport in the accept callback itself, so
a greeting written in ``handler.connection_made`` goes out one loop iteration after the accept
rather than two (asyncio's own path starts a task per connection first).
"""

from __future__ import annotations

from katcp._transport.dial import open_connection, start_connect
from katcp._transport.listen import create_server
from katcp._transport.protocol import FLUSH_THRESHOLD as FLUSH_THRESHOLD  # noqa: F401 (public constant)
from katcp._transport.protocol import READ_BUFFER_SIZE as READ_BUFFER_SIZE  # noqa: F401 (public constant)
from katcp._transport.protocol import (
    Connection,
    MessageTooLong,
    WriteBufferOverflow,
    format_address,
)

__all__ = [
    "Connection",
    "MessageTooLong",
    "WriteBufferOverflow",
    "create_server",
    "open_connection",
    "start_connect",
    "format_address",
]
