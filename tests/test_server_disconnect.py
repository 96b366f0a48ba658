"""A client that goes away: ``on_client_disconnect`` is called once, whatever it returns.

The server calls the hook as soon as the connection is lost; only a result still to come
(a coroutine, a future not done yet) is waited for, in a task, at most
``DISCONNECT_TIMEOUT``.  Resolved futures (the default hooks return them), None, failures
and failed futures need no task.  Each kind is run over a real socket, with the default
threaded server and with one that runs its handlers in the ioloop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

import pytest
from test_server_support import ExampleServer, RawClient, running
from test_server_support import eventually as _eventually

WAIT = 10.0


def _server_class(base, kind):
    class Hooked(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls = []
            self.finished = threading.Event()

        def on_client_disconnect(self, conn, msg, connection_valid):
            self.calls.append((msg, connection_valid))
            default = super().on_client_disconnect(conn, msg, connection_valid)
            if kind == "default":
                self.finished.set()
                return default
            if kind == "none":
                self.finished.set()
                return None
            if kind == "raises":
                raise RuntimeError("hook failed")
            if kind == "failed-future":
                fut = concurrent.futures.Future()
                fut.set_exception(RuntimeError("hook future failed"))
                return fut
            if kind == "coroutine":
                async def later():
                    await asyncio.sleep(0.02)
                    self.finished.set()
                return later()
            if kind == "pending-future":
                fut = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_later(0.02, fut.set_result, None)
                fut.add_done_callback(lambda _f: self.finished.set())
                return fut
            raise AssertionError(kind)

    return Hooked


@pytest.mark.parametrize("handler_thread", [True, False], ids=["handler-thread", "inline"])
@pytest.mark.parametrize("kind", ["default", "none", "raises", "failed-future", "coroutine",
                                  "pending-future"])
def test_hook_called_once_and_connection_dropped(handler_thread, kind, caplog):
    server = _server_class(ExampleServer, kind)("127.0.0.1", 0)
    if not handler_thread:
        server.set_concurrency_options(thread_safe=False, handler_thread=False)
    caplog.set_level(logging.ERROR, logger="katcp")
    with running(server):
        client = RawClient(server.bind_address)
        client.skip_connect_informs()
        assert client.request(b"?echo hi")[-1] == b"!echo ok hi"
        assert _eventually(lambda: len(server._server._connections) == 1)
        client.close()
        assert _eventually(lambda: len(server.calls) == 1)
        assert _eventually(lambda: not server._server._connections)
        if kind in ("raises", "failed-future"):
            assert _eventually(lambda: "Error while calling on_client_disconnect"
                               in caplog.text)
        else:
            assert server.finished.wait(WAIT)
            assert "Error while calling on_client_disconnect" not in caplog.text
        # The server still serves others.
        other = RawClient(server.bind_address)
        other.skip_connect_informs()
        assert other.request(b"?echo again")[-1] == b"!echo ok again"
        other.close()
    assert len(server.calls) == 2
    assert server.calls[0][1] is False  # the connection was gone already
