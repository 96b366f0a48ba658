"""Concurrency options, per-client ordering, threads, life cycle and DeviceLogger."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
import time

import pytest
from test_server_support import (
    TIMEOUT,
    ExampleAsyncServer,
    ExampleMixin,
    ExampleServer,
    RawClient,
    make_threaded,
    parse,
    run,
    running,
)

from katcp.core import AsyncReply, Message
from katcp.server import (
    AsyncDeviceServer,
    DeviceLogger,
    DeviceServer,
    MessageHandlerThread,
    construct_name_filter,
    return_future,
)


class GateMixin(ExampleMixin):
    """Adds ?wait (blocks until ?release) and ?block (blocks the handler thread)."""

    def setup_sensors(self):
        super().setup_sensors()
        self._gate = None
        self.blocking = threading.Event()
        self.blocked = threading.Event()

    async def request_wait(self, req, msg):
        """Wait until another client sends ?release."""
        if self._gate is None:
            self._gate = asyncio.Event()
        await self._gate.wait()
        return req.make_reply("ok", "released")

    def request_release(self, req, msg):
        """Release the ?wait requests."""
        def release():
            if self._gate is None:
                self._gate = asyncio.Event()
            self._gate.set()
        self.ioloop.add_callback(release)
        return req.make_reply("ok")

    def request_block(self, req, msg):
        """Block the handler for a while (bounded)."""
        self.blocked.set()
        self.blocking.wait(TIMEOUT)
        return req.make_reply("ok", "unblocked")


class GateServer(GateMixin, DeviceServer):
    pass


class GateAsyncServer(GateMixin, AsyncDeviceServer):
    pass


def no_line(client: RawClient, timeout: float = 0.1) -> bool:
    try:
        line = client.readline(timeout)
    except socket.timeout:
        return True
    raise AssertionError(f"unexpected line {line!r}")


def ordering_scenario(address):
    a = RawClient(address)
    a.skip_connect_informs()
    b = RawClient(address)
    b.skip_connect_informs()
    try:
        assert a.readline().startswith(b"#client-connected ")
        a.send(b"?wait[1]\n?watchdog[2]\n?concurrent[3] 0\n")
        # Another client is served meanwhile...
        assert b.request(b"?watchdog") == [b"!watchdog ok"]
        # ...but this client's later requests wait for its pending one.
        assert no_line(a)
        assert b.request(b"?release") == [b"!release ok"]
        lines = [a.readline() for _ in range(3)]
        assert lines == [b"!wait[1] ok released", b"!watchdog[2] ok",
                         b"!concurrent[3] ok concurrent"]
    finally:
        a.close()
        b.close()


def test_future_handler_holds_back_only_its_client_threaded():
    with running(GateServer("127.0.0.1", 0)) as srv:
        ordering_scenario(srv.bind_address)


def test_future_handler_holds_back_only_its_client_async():
    async def main():
        srv = GateAsyncServer("127.0.0.1", 0)
        await srv.start()
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, ordering_scenario, srv.bind_address)
        finally:
            await asyncio.wrap_future(srv.stop())
    run(main())


def test_concurrent_reply_does_not_hold_back():
    with running(GateServer("127.0.0.1", 0)) as srv:
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        c.send(b"?concurrent[1] 0.1\n?watchdog[2]\n")
        assert c.readline() == b"!watchdog[2] ok"
        assert c.readline() == b"!concurrent[1] ok concurrent"
        c.close()


def test_handler_thread_and_loop_thread():
    with running(make_threaded()) as srv:
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        (line,) = c.request(b"?thread")
        assert parse(line).arguments[1].endswith(b".message_handler")
        c.close()
    srv = make_threaded()
    srv.set_concurrency_options(thread_safe=True, handler_thread=False)
    with running(srv):
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        (line,) = c.request(b"?thread")
        name = parse(line).arguments[1].decode()
        loop_thread = [t for t in threading.enumerate() if t.ident == srv._server.ioloop_thread_id]
        assert loop_thread and loop_thread[0].name == name
        c.close()
    with pytest.raises(ValueError):
        make_threaded().set_concurrency_options(thread_safe=False, handler_thread=True)


def test_async_server_runs_handlers_in_callers_loop():
    async def main():
        srv = ExampleAsyncServer("127.0.0.1", 0)
        await srv.start()
        try:
            reader, writer = await asyncio.open_connection(*srv.bind_address)
            writer.write(b"?thread[1]\n")
            while True:
                line = await asyncio.wait_for(reader.readline(), TIMEOUT)
                if line.startswith(b"!thread"):
                    break
            assert line == b"!thread[1] ok %s\n" % threading.current_thread().name.encode()
            writer.close()
        finally:
            await asyncio.wrap_future(srv.stop())
    run(main())


def test_blocking_handler_thread_keeps_sampling_alive():
    with running(GateServer("127.0.0.1", 0)) as srv:
        watcher = RawClient(srv.bind_address)
        watcher.skip_connect_informs()
        watcher.request(b"?sensor-sampling an.int auto")
        blocker = RawClient(srv.bind_address)
        blocker.skip_connect_informs()
        blocker.send(b"?block\n")
        assert srv.blocked.wait(TIMEOUT)
        # Sensor set from this (foreign) thread while the handler thread is blocked.
        srv.get_sensor("an.int").set_value(8)
        line = watcher.read_until(b"#sensor-status")[-1]
        assert line.startswith(b"#sensor-status ") and line.endswith(b" an.int nominal 8")
        srv.blocking.set()
        assert blocker.readline() == b"!block ok unblocked"
        watcher.close()
        blocker.close()


def test_a_burst_of_messages_wakes_the_handler_thread_a_few_times_only():
    srv = make_threaded()
    with running(srv):
        thread = srv._handler_thread
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        c.request(b"?watchdog[1]")
        before = thread.wakeups
        c.send(b"".join(b"?watchdog[%d]\n" % i for i in range(2, 102)))
        replies = [c.readline() for _ in range(100)]
        assert replies == [b"!watchdog[%d] ok" % i for i in range(2, 102)]
        # Messages queued while the thread is busy do not wake it again: far fewer
        # wake-ups than messages (how many depends on how the loop reads the burst, and
        # none if the thread had not yet gone back to waiting).
        woken = thread.wakeups - before
        assert woken <= 50, woken
        c.close()


@pytest.mark.parametrize("cls", [ExampleServer, ExampleAsyncServer])
def test_sensor_update_formatted_once_for_all_clients(cls):
    async def main():
        if cls is ExampleServer:
            srv = cls("127.0.0.1", 0)
            assert srv.start(timeout=TIMEOUT)
        else:
            srv = cls("127.0.0.1", 0)
            await srv.start()
        try:
            # The line is made once per update for all the clients (the server's one
            # formatter, which the clients' strategies share).
            encodes = []
            fmt = srv._format_status
            srv._format_status = lambda *a: (encodes.append("sensor-status"), fmt(*a))[1]
            streams = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection(*srv.bind_address)
                writer.write(b"?sensor-sampling an.int auto\n")
                while not (await asyncio.wait_for(reader.readline(), TIMEOUT)).startswith(
                        b"!sensor-sampling"):
                    pass
                streams.append((reader, writer))
            encodes.clear()
            setter = threading.Thread(target=srv.get_sensor("an.int").set_value, args=(6,))
            setter.start()
            setter.join(TIMEOUT)
            for reader, _ in streams:
                line = await asyncio.wait_for(reader.readline(), TIMEOUT)
                while line.startswith(b"#client-connected"):
                    line = await asyncio.wait_for(reader.readline(), TIMEOUT)
                assert line.endswith(b" an.int nominal 6\n")
            assert encodes == ["sensor-status"]
            for _, writer in streams:
                writer.close()
        finally:
            await asyncio.wrap_future(srv.stop(timeout=None))
            if cls is ExampleServer:
                srv.join(TIMEOUT)
    run(main())


def test_on_client_connect_future_delays_messages():
    class Slow(ExampleServer):
        def on_client_connect(self, client_conn):
            ready = concurrent.futures.Future()
            base = super().on_client_connect

            def later():
                base(client_conn)
                ready.set_result(None)
            self.ioloop.call_later(0.05, later)
            return ready

    with running(Slow("127.0.0.1", 0)) as srv:
        c = RawClient(srv.bind_address)
        c.send(b"?watchdog[1]\n")
        lines = c.read_until(b"!watchdog")
        assert lines[0].startswith(b"#version-connect katcp-protocol")
        assert lines[-1] == b"!watchdog[1] ok"
        c.close()


def test_life_cycle():
    srv = make_threaded()
    assert not srv.running()
    assert srv.bind_address[1] == 0
    assert srv.start(timeout=TIMEOUT)
    port = srv.bind_address[1]
    assert port != 0 and srv.running() and srv.wait_running(1)
    assert srv.sync_with_ioloop(timeout=TIMEOUT) is None
    with pytest.raises(RuntimeError):
        srv.start()
    # log from a foreign thread reaches the client
    c = RawClient(srv.bind_address)
    c.skip_connect_informs()
    srv.log.warn("from %s", "outside")
    msg = parse(c.readline())
    assert msg.name == "log" and msg.arguments[0] == b"warn" and msg.arguments[3] == \
        b"from outside"
    srv.stop().result(TIMEOUT)
    srv.join(timeout=TIMEOUT)
    assert not srv.running()
    assert c.read_until(b"#disconnect")[-1] == b"#disconnect Device\\_server\\_shutting\\_down."
    assert c.is_closed()
    c.close()
    # A stopped server can be started again.
    assert srv.start(timeout=TIMEOUT)
    c = RawClient(srv.bind_address)
    c.skip_connect_informs()
    assert c.request(b"?watchdog") == [b"!watchdog ok"]
    c.close()
    srv.stop().result(TIMEOUT)
    srv.join(timeout=TIMEOUT)


def test_restarts_reuse_the_ioloop_manager_with_a_fresh_loop():
    srv = make_threaded()
    manager = srv._server._ioloop_manager
    loops = []
    for run_no in range(3):
        if run_no == 2:
            srv.setDaemon(False)  # allowed again between runs; applies to the next run
        assert srv.start(timeout=TIMEOUT)
        assert srv._server._ioloop_manager is manager
        loop_thread = [t for t in threading.enumerate()
                       if t.ident == srv._server.ioloop_thread_id]
        assert len(loop_thread) == 1 and loop_thread[0].daemon is (run_no < 2)
        loops.append(srv.ioloop)
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        assert c.request(b"?sensor-sampling an.int event")[-1] == \
            b"!sensor-sampling ok an.int event"
        # Set from this thread: handed to this run's loop.
        srv.get_sensor("an.int").set_value(run_no + 5)
        assert c.readline().endswith(b" an.int nominal %d" % (run_no + 5))
        c.close()
        srv.stop().result(TIMEOUT)
        srv.join(timeout=TIMEOUT)
        assert not srv.running() and not loop_thread[0].is_alive()
    assert len({id(loop) for loop in loops}) == 3


def test_bind_failure_is_reported():
    with running(make_threaded()) as srv:
        threads_before = set(threading.enumerate())
        other = DeviceServer("127.0.0.1", srv.bind_address[1])
        with pytest.raises(OSError):
            other.start(timeout=TIMEOUT)
        assert not other.running()
        # No managed ioloop thread is left behind.
        assert set(threading.enumerate()) <= threads_before
    # Once the port is free, the same server starts (its ioloop manager restarts).
    assert other.start(timeout=TIMEOUT)
    try:
        c = RawClient(other.bind_address)
        c.skip_connect_informs()
        assert c.request(b"?watchdog") == [b"!watchdog ok"]
        c.close()
    finally:
        other.stop().result(TIMEOUT)
        other.join(timeout=TIMEOUT)


def test_handle_message_api_and_server_level_inform_reply():
    with running(make_threaded()) as srv:
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        (conn,) = list(srv._client_conns)
        req = Message.request("watchdog", mid=5)
        srv.inform(conn, Message.inform("hello", "there"))
        srv.reply_inform(conn, Message.inform("watchdog", "x"), req)
        srv.reply(conn, Message.reply("watchdog", "ok"), req)
        assert [c.readline() for _ in range(3)] == [
            b"#hello there", b"#watchdog[5] x", b"!watchdog[5] ok"]
        c.close()


class HandlerCallsServer(ExampleServer):
    """Inform and reply handlers (one of each fails) and a handler misusing ``req``."""

    def setup_sensors(self):
        super().setup_sensors()
        self.handled = []

    def inform_note(self, conn, msg):
        self.handled.append(("inform", msg.arguments))

    def inform_broken(self, conn, msg):
        raise ValueError("broken inform handler")

    def reply_answer(self, conn, msg):
        self.handled.append(("reply", msg.arguments))

    def reply_broken(self, conn, msg):
        raise ValueError("broken reply handler")

    def request_old_style(self, req, msg):
        """Use the server-level inform/reply with the req (deprecated)."""
        self.inform(req, Message.inform("note", "a"))
        self.reply_inform(req, Message.inform("old-style", "b"), msg)
        self.reply(req, Message.reply("old-style", "ok"), msg)
        raise AsyncReply()


def test_inform_and_reply_handlers_and_deprecated_req_use(caplog):
    with running(make_threaded(HandlerCallsServer)) as srv, \
            caplog.at_level(logging.WARNING, logger="katcp.server"):
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        c.send(b"#note 1\n#broken\n!answer ok\n!broken\n")
        assert c.request(b"?old-style[7]") == [b"#note a", b"#old-style[7] b",
                                                b"!old-style[7] ok"]
        assert srv.handled == [("inform", [b"1"]), ("reply", [b"ok"])]
        c.close()
    text = caplog.text
    assert "Inform broken FAIL:" in text and "broken inform handler" in text
    assert "Reply broken FAIL:" in text and "broken reply handler" in text
    for method, instead in [("inform", "req.inform()"), ("reply_inform", "req.inform()"),
                            ("reply", "req.reply(*msg_args)")]:
        assert (f"Deprecation warning: do not use self.{method}() within a reply handler "
                f"context -- use {instead}") in text


def test_device_logger_levels_and_python_mirror(caplog):
    sent = []

    class FakeServer:
        def mass_inform(self, msg):
            sent.append(msg)

        create_log_inform = DeviceServer.create_log_inform
        PROTOCOL_INFO = DeviceServer.PROTOCOL_INFO

    pylog = logging.getLogger("test.devicelogger")
    logger = DeviceLogger(FakeServer(), root_logger="dev", python_logger=pylog)
    assert logger.level_name() == "warn"
    assert logger.level_from_name(b"debug") == DeviceLogger.DEBUG
    with pytest.raises(ValueError, match="Unknown logging level name 'loud'"):
        logger.level_from_name("loud")
    logger.set_log_level_by_name("info")
    assert pylog.level == logging.INFO
    logger.debug("hidden")
    logger.info("shown %d", 1)
    logger.warn("bad format %d")
    logger.error("err", name="dev.sub", timestamp=1234567890.25)
    logger.fatal("fatal!")
    logger.trace("hidden too")
    assert [m.arguments[0] for m in sent] == [b"info", b"warn", b"error", b"fatal"]
    assert sent[0].arguments[2:] == [b"dev", b"shown 1"]
    assert sent[1].arguments[3] == b"bad format %d"
    assert sent[2].arguments[1:] == [b"1234567890.250000", b"dev.sub", b"err"]
    logger.set_log_level(DeviceLogger.OFF)
    logger.fatal("silenced")
    assert len(sent) == 4
    logger.set_log_level(DeviceLogger.ALL)
    logger.trace("all")
    assert sent[-1].arguments[0] == b"trace"
    with caplog.at_level(logging.DEBUG, logger="test.mirror"):
        DeviceLogger.log_to_python(logging.getLogger("test.mirror"),
                                   Message.inform("log", "error", "1.5", "dev", "went wrong"))
    assert caplog.records[-1].levelno == logging.ERROR
    assert caplog.records[-1].getMessage() == "1.5 dev: went wrong"


def test_helpers():
    exact, match = construct_name_filter("a.b")
    assert exact and match("a.b") and not match("a.bc")
    exact, match = construct_name_filter("/b$/")
    assert not exact and match("a.b") and not match("b.a")
    exact, match = construct_name_filter(None)
    assert not exact and match("anything")

    @return_future
    def add(a, b):
        return a + b

    assert add(1, 2).result() == 3

    @return_future
    def broken():
        raise KeyError("x")

    with pytest.raises(KeyError):
        broken().result()


def test_async_server_started_by_callback_in_user_ioloop_thread():
    """katcp-python idiom: ioloop.add_callback(server.start); ioloop.start()."""
    import tornado.ioloop

    made = {}
    made_event = threading.Event()

    def loop_thread():
        asyncio.set_event_loop(asyncio.new_event_loop())
        ioloop = tornado.ioloop.IOLoop.current()
        made["server"] = ExampleAsyncServer("127.0.0.1", 0)
        made["ioloop"] = ioloop
        ioloop.add_callback(made["server"].start)
        made_event.set()
        ioloop.start()
        ioloop.close(all_fds=True)

    thread = threading.Thread(target=loop_thread, daemon=True)
    thread.start()
    assert made_event.wait(TIMEOUT)
    srv = made["server"]
    assert srv.wait_running(TIMEOUT)
    c = RawClient(srv.bind_address)
    c.skip_connect_informs()
    (line,) = c.request(b"?thread")
    assert parse(line).arguments[1].decode() == thread.name
    srv.stop().result(TIMEOUT)
    assert c.is_closed()
    c.close()
    made["ioloop"].add_callback(made["ioloop"].stop)
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_threaded_server_on_user_ioloop():
    from katcp.ioloop_manager import IOLoopManager

    manager = IOLoopManager(managed_default=True)
    manager.setDaemon(True)
    ioloop = manager.get_ioloop()
    manager.start(timeout=TIMEOUT)
    try:
        srv = make_threaded()
        srv.set_ioloop(ioloop)
        assert srv.start(timeout=TIMEOUT)
        assert srv.ioloop is ioloop
        c = RawClient(srv.bind_address)
        c.skip_connect_informs()
        assert c.request(b"?watchdog[3]") == [b"!watchdog[3] ok"]
        srv.stop().result(TIMEOUT)
        srv.join(timeout=TIMEOUT)
        assert c.is_closed()
        c.close()
        assert ioloop.asyncio_loop.is_running()  # the user's loop is left running
    finally:
        manager.stop().result(TIMEOUT)
        manager.join(TIMEOUT)


def test_async_server_join_in_loop_after_halt():
    async def main():
        srv = ExampleAsyncServer("127.0.0.1", 0)
        await srv.start()
        reader, writer = await asyncio.open_connection(*srv.bind_address)
        writer.write(b"?halt[1]\n")
        lines = []
        while not lines or not lines[-1].startswith(b"#disconnect"):
            lines.append(await asyncio.wait_for(reader.readline(), TIMEOUT))
        assert b"!halt[1] ok\n" in lines
        await asyncio.wait_for(srv.join(), TIMEOUT)  # a future in the loop thread
        assert not srv.running()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
    run(main())


def test_flooding_client_is_paused_while_handler_thread_is_busy():
    with running(GateServer("127.0.0.1", 0)) as srv:
        blocker = RawClient(srv.bind_address)
        blocker.skip_connect_informs()
        flooder = RawClient(srv.bind_address)
        flooder.skip_connect_informs()
        blocker.send(b"?block\n")
        assert srv.blocked.wait(TIMEOUT)
        count = 20000
        data = b"".join(b"?watchdog[%d]\n" % i for i in range(1, count + 1))
        sender = threading.Thread(target=flooder.sock.sendall, args=(data,), daemon=True)
        sender.start()
        # The server stops reading from the flooder instead of queueing without bound.
        deadline = time.monotonic() + TIMEOUT
        while not any(c._queue_paused for c in list(srv._client_conns)):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert all(c._submitted < count for c in list(srv._client_conns))
        srv.blocking.set()
        assert blocker.read_until(b"!block")[-1] == b"!block ok unblocked"
        replies = [flooder.readline() for _ in range(count)]
        assert replies[-1] == b"!watchdog[%d] ok" % count
        sender.join(TIMEOUT)
        blocker.close()
        flooder.close()


def test_handler_thread_queue_loses_no_item_with_producers_in_several_threads():
    """Items queued from several threads at once all run, each producer's in order."""
    handled = []
    thread = MessageHandlerThread(lambda conn, msg: None, lambda *a: None,
                                  dispatch=lambda conn, msg: handled.append((conn, msg)))
    thread.start(timeout=TIMEOUT)
    try:
        def produce(k):
            for i in range(3000):
                if i % 2:
                    thread.submit(k, i)
                else:
                    thread.call(lambda k=k, i=i: handled.append((k, i)))
                if i % 500 == 0:
                    time.sleep(0.001)  # let the thread catch up and wait again

        producers = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
        for p in producers:
            p.start()
        for p in producers:
            p.join(TIMEOUT)
        done = threading.Event()
        thread.call(done.set)
        assert done.wait(TIMEOUT)
        for k in range(3):
            assert [i for kk, i in handled if kk == k] == list(range(3000))
        assert thread.wakeups >= 1
    finally:
        thread.stop()
        thread.join(TIMEOUT)
