"""Test servers and mock requests for users' test suites."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
from unittest import mock

from katcp._aio.futures import AsyncEvent, steal_docstring_from
from katcp._protocol.decorators import concurrent_reply, request, request_timeout_hint, return_reply
from katcp._protocol.kattypes import Bool, Float, Int, Str
from katcp._protocol.message import AsyncReply, FailReply, Message, ProtocolFlags
from katcp._protocol.sensor import Sensor
from katcp._server.connections import ClientConnection
from katcp._server.requests import DeviceServer
from katcp._testutils.misc import WaitingMock


class ClientConnectionTest:
    """Stand-in for a server's client connection that records what is sent to it."""

    __test__ = False

    # Everything the server sends goes through inform() and reply() here: no shortcut
    # to a transport (see ClientConnection's flags of the same names).
    _direct_reply = False
    _direct_inform = False
    _direct_bytes = False
    address = "<ClientConnectionTest>"

    def __init__(self) -> None:
        self.messages: list = []
        self.mass_informs: list = []

    def reply_inform(self, inform: Message, orig_req: Message) -> None:
        """Record a reply inform (with the request's message id)."""
        inform.mid = orig_req.mid
        self.inform(inform)

    def flush_on_close(self) -> concurrent.futures.Future:
        """Nothing to flush: a resolved future (``on_client_disconnect`` waits on it)."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        done.set_result(None)
        return done

    def inform(self, msg: Message) -> None:
        """Record an inform."""
        self.messages.append(msg)

    def mass_inform(self, msg: Message) -> None:
        """Record a mass inform."""
        self.mass_informs.append(msg)

    def reply(self, msg: Message, req_msg: Message) -> None:
        """Record a reply."""
        self.messages.append(msg)

    @property
    def informs(self) -> list:
        """Recorded informs."""
        return [m for m in self.messages if m.mtype == Message.INFORM]

    @property
    def replies(self) -> list:
        """Recorded replies."""
        return [m for m in self.messages if m.mtype == Message.REPLY]


class DeviceTestSensor(Sensor):
    """Sensor created with an explicit initial timestamp, status and value."""

    def __init__(self, sensor_type, name, description, units, params, timestamp, status,
                 value) -> None:
        super().__init__(sensor_type, name, description, units, params)
        self.set(timestamp, status, value)


class DeviceTestServer(DeviceServer):
    """DeviceServer with canned sensors and requests that records received messages.

    Sensors: ``an.int``, ``a.discrete``, ``a.float``, ``a.floatwithzero``.
    Requests: ``new-command``, ``raise-exception``, ``raise-fail``,
    ``slow-command <s>`` (cancel with ``cancel-slow-command``), ``decorated``,
    ``decorated-return-exception``; ``break_help`` / ``break_sensor_list``
    make those requests fail with the given text.
    """

    __test__ = False
    VERSION_INFO = ("device_test_server", 1, 0)
    BUILD_INFO = ("device_test_server", 0, 1, "")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Copies, so that tests may change the handlers without side effects.
        self._request_handlers = dict(self._request_handlers)
        self._inform_handlers = dict(self._inform_handlers)
        self._reply_handlers = dict(self._reply_handlers)
        self.__msgs: list = []
        self.break_sensor_list = False
        self.break_help = False
        self.restart_queue: queue.Queue = queue.Queue()
        self.set_restart_queue(self.restart_queue)
        self._slow_futures: dict = {}
        self._cnt_futures: set = set()
        #: Clear to hold back ``#version-connect`` (and requests) of new clients.
        self.proceed_on_client_connect = AsyncEvent()
        self.proceed_on_client_connect.set()

    @property
    def request_names(self) -> list:
        """Names of all requests."""
        return list(self._request_handlers.keys())

    @property
    def sensor_names(self) -> list:
        """Names of all sensors."""
        return list(self._sensors.keys())

    def on_client_connect(self, client_conn):
        """Greet the client once ``proceed_on_client_connect`` is set.

        A plain method, as katcp-python's (a tornado coroutine that runs at once): called
        directly while the flag is set (the default), it greets the client before it
        returns, so a test may drive it with a `ClientConnectionTest` and no loop.

        Returns
        -------
        ready : Future
            Resolves when the device is ready for the client's messages.
        """
        if self.proceed_on_client_connect.is_set():
            return super().on_client_connect(client_conn)
        return asyncio.ensure_future(self._greet_when_allowed(client_conn))

    async def _greet_when_allowed(self, client_conn):
        await self.proceed_on_client_connect.until_set()
        result = super().on_client_connect(client_conn)
        if isinstance(result, concurrent.futures.Future):
            result = asyncio.wrap_future(result)
        return await result

    def setup_sensors(self) -> None:
        """Add the canned sensors."""
        self.restarted = False
        self.add_sensor(DeviceTestSensor(Sensor.INTEGER, "an.int", "An Integer.", "count",
                                         [-5, 5], timestamp=12345, status=Sensor.NOMINAL,
                                         value=3))
        self.add_sensor(DeviceTestSensor(Sensor.DISCRETE, "a.discrete", "A Discrete.", "",
                                         ["one", "two", "three"], timestamp=12345,
                                         status=Sensor.NOMINAL, value="one"))
        self.add_sensor(DeviceTestSensor(Sensor.FLOAT, "a.float", "A Float.", "",
                                         [-123.4, 123.4], timestamp=12345,
                                         status=Sensor.NOMINAL, value=12))
        self.add_sensor(DeviceTestSensor(Sensor.FLOAT, "a.floatwithzero", "A Float with zero.",
                                         "", [-123.0, 123.0], timestamp=12345,
                                         status=Sensor.NOMINAL, value=12))

    def request_new_command(self, req, msg):
        """A new command."""
        return Message.reply(msg.name, "ok", "param1", "param2")

    def request_raise_exception(self, req, msg):
        """A handler which raises an exception."""
        raise Exception("An exception occurred!")

    def request_raise_fail(self, req, msg):
        """A handler which raises a FailReply."""
        raise FailReply("There was a problem with your request.")

    @request_timeout_hint(99)
    def request_slow_command(self, req, msg):
        """A slow command, waits for msg.arguments[0] seconds.

        This is an async request that will allow another request to be handled
        before this one replies.

        Request can be cancelled using ?cancel-slow-command
        """
        if req.client_connection in self._slow_futures:
            raise FailReply("A slow command is already running for this connection")
        wait_time = float(msg.arguments[0])
        cancel = self._slow_futures[req.client_connection] = concurrent.futures.Future()

        async def slow_timeout():
            try:
                await asyncio.wait_for(asyncio.wrap_future(cancel), wait_time)
                req.reply("ok")
            except asyncio.TimeoutError:
                req.reply("ok")
            except Exception:
                self._logger.exception("Unable to complete ?slow-command request")
                req.reply("fail", "Unhandled exception, see logs")
            finally:
                self._slow_futures.pop(req.client_connection, None)

        # The handler may run in the handler thread: the loop starts the wait.
        self._server._post(asyncio.ensure_future, slow_timeout())
        raise AsyncReply()

    def request_cancel_slow_command(self, req, msg):
        """Cancel slow command request, resulting in it replying immediately."""
        fut = self._slow_futures.pop(req.client_connection, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
        return req.make_reply("ok")

    @request(Str(), Float(), Int(), Bool())
    @return_reply(Str(), Float(), Int(), Bool())
    def request_decorated(self, req, _string, _float, _int, do_raise):
        """Decorated handler, return params, optionally raise exception."""
        if do_raise:
            raise Exception("An exception occurred!")
        req.inform("_string", str(type(_string)))
        req.inform("_float", str(type(_float)))
        req.inform("_int", str(type(_int)))
        req.inform("do_raise", str(type(do_raise)))
        return "ok", _string, _float, _int, do_raise

    @return_reply()
    def request_decorated_return_exception(self, req, msg):
        """Decorated handler, return fail with exception object."""
        try:
            raise Exception("An exception occurred!")
        except Exception as exc:
            return "fail", exc

    def handle_message(self, req, msg):
        """Record `msg`, then handle it as usual."""
        self.__msgs.append(msg)
        self._check_cnt_futures()
        return super().handle_message(req, msg)

    @steal_docstring_from(DeviceServer.request_help)
    def request_help(self, req, msg):
        if self.break_help:
            return req.make_reply("fail", self.break_help)
        return super().request_help(req, msg)

    @steal_docstring_from(DeviceServer.request_sensor_list)
    def request_sensor_list(self, req, msg):
        if self.break_sensor_list:
            return req.make_reply("fail", self.break_sensor_list)
        return super().request_sensor_list(req, msg)

    @property
    def messages(self) -> list:
        """Messages received from clients."""
        return self.__msgs

    def until_messages(self, cnt: int) -> concurrent.futures.Future:
        """Thread-safe future resolving (to the message list) once `cnt` messages arrived."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._cnt_futures.add((cnt, fut))
        self._check_cnt_futures()
        return fut

    def _check_cnt_futures(self) -> None:
        cnt = len(self.__msgs)
        for f_cnt, fut in list(self._cnt_futures):
            if cnt >= f_cnt:
                self._cnt_futures.discard((f_cnt, fut))
                if not fut.done():
                    fut.set_result(self.__msgs)

    def stop(self, *args, **kwargs):
        """Release slow commands, then stop."""
        for fut in list(self._slow_futures.values()):
            if not fut.done():
                fut.set_result(None)
        return super().stop(*args, **kwargs)


class AsyncDeviceTestServer(DeviceTestServer):
    """DeviceTestServer running its handlers in the ioloop (no handler thread)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.set_concurrency_options(thread_safe=False, handler_thread=False)

    @request(Float())
    @return_reply()
    @request_timeout_hint(99)
    @concurrent_reply
    async def request_slow_command(self, req, wait_time):
        """A slow coroutine request, waits for msg.arguments[0] seconds.

        This is an async request that will allow another request to be handled
        before this one replies.

        Request can be cancelled using ?cancel-slow-command
        """
        if req.client_connection in self._slow_futures:
            raise FailReply("A slow command is already running for this connection")
        cancel = self._slow_futures[req.client_connection] = concurrent.futures.Future()
        try:
            await asyncio.wait_for(asyncio.wrap_future(cancel), wait_time)
        except asyncio.TimeoutError:
            pass
        finally:
            self._slow_futures.pop(req.client_connection, None)
        return ("ok",)


class DeviceTestServerWithTimeoutHints(DeviceTestServer):
    """DeviceTestServer advertising KATCP 5.1 request timeout hints."""

    PROTOCOL_INFO = ProtocolFlags(5, 1, {ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
                                         ProtocolFlags.REQUEST_TIMEOUT_HINTS})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout_hints = {"slow-command": 10.5, "raise-fail": 2.3}

    @request(Str(optional=True))
    @return_reply(Int())
    def request_request_timeout_hint(self, req, name):
        """Return timeout hints for requests"""
        hints = ({name: self.request_timeout_hints.get(name, 0)} if name
                 else self.request_timeout_hints)
        for req_name, timeout_hint in hints.items():
            req.inform(req_name, timeout_hint)
        return ("ok", len(hints))


def mock_req(req_name: str, *args, **kwargs):
    """Create a mock ClientRequestConnection for request `req_name` with `args`.

    Keyword arguments: ``server`` (build a real ClientConnection of that
    server), ``client_conn`` (use this connection), ``sock`` (connection id).

    Returns
    -------
    WaitingMock
        With ``client_connection``, ``msg``, ``reply_msg``, ``inform_msgs``
        and ``reply_and_inform_msgs_future`` (resolves to
        ``(reply_msg, inform_msgs)`` when ``req.reply(...)`` is called);
        ``make_reply`` returns the reply Message.
    """
    server = kwargs.get("server")
    client_conn = kwargs.get("client_conn")
    sock = kwargs.get("sock")
    if server and client_conn:
        raise TypeError("Specify either server or client_conn, not both")
    if client_conn and sock:
        raise TypeError("Specify either client_conn or sock, not both")
    if not sock:
        sock = WaitingMock()
    if server:
        client_conn = ClientConnection(server._server, sock)
    if not client_conn:
        client_conn = WaitingMock()
    req = WaitingMock()
    req.reply_msg = None
    req.inform_msgs = []
    req.client_connection = client_conn
    req.msg = Message.request(req_name, *args)
    req.make_reply.side_effect = lambda *a: Message.reply_to_request(req.msg, *a)
    req.reply_and_inform_msgs_future = concurrent.futures.Future()

    def reply_side_effect(*a):
        req.reply_msg = Message.reply_to_request(req.msg, *a)
        if not req.reply_and_inform_msgs_future.done():
            req.reply_and_inform_msgs_future.set_result((req.reply_msg, req.inform_msgs))

    req.reply.side_effect = reply_side_effect
    req.inform.side_effect = lambda *a: req.inform_msgs.append(
        Message.reply_inform(req.msg, *a))
    return req


def handle_mock_req(dev, req):
    """Let a (not necessarily started) DeviceServer handle a :func:`mock_req` request.

    Returns
    -------
    concurrent.futures.Future
        Resolves to ``(reply_msg, inform_msgs)``; the reply is also recorded
        on the mock (``req.reply.assert_called_once_with('ok')``).
    """
    client_connection = req.client_connection
    client_connection.reply.side_effect = lambda rep_msg, _req: req.reply(*rep_msg.arguments)
    client_connection._send.side_effect = lambda rep_msg: req.reply(*rep_msg.arguments)
    with mock.patch("katcp._server.dispatch.ClientRequestConnection") as crc:
        crc.return_value = req
        dev.handle_request(client_connection, req.msg)
    return req.reply_and_inform_msgs_future
