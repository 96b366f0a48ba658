"""katcp.testutils: the helpers users' own test suites import."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import subprocess
import sys
import threading
import unittest

import tornado.testing

from katcp.core import Message
from katcp.sensor import Sensor
from katcp.testutils import (
    AsyncDeviceTestServer,
    AsyncWaitingMock,
    BlockingTestClient,
    ClientConnectionTest,
    DeviceTestServer,
    DeviceTestServerWithTimeoutHints,
    SensorComparisonMixin,
    SensorTransitionStatusWaiter,
    SensorTransitionWaiter,
    TestLogHandler,
    TestUtilMixin,
    TimewarpAsyncTestCase,
    WaitingMock,
    add_mid_to_msg_str,
    call_in_ioloop,
    counting_callback,
    handle_mock_req,
    list_to_native_strings,
    mock_req,
    start_thread_with_cleanup,
    suppress_queue_repeats,
    wait_sensor,
    wait_sensor_async,
)

WAIT = 10.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerClientMixin:
    server_class = DeviceTestServer

    def setUp(self):
        self.server = self.server_class("127.0.0.1", 0)
        start_thread_with_cleanup(self, self.server, timeout=WAIT, start_timeout=WAIT)
        host, port = self.server.bind_address
        self.client = BlockingTestClient(self, host, port)
        start_thread_with_cleanup(self, self.client, timeout=WAIT, start_timeout=WAIT)
        self.assertTrue(self.client.wait_protocol(WAIT))


class TestBlockingTestClient(ServerClientMixin, unittest.TestCase):
    def test_requests(self):
        c = self.client
        self.assertEqual(c.assert_request_succeeds("new-command", args_equal=["param1", "param2"]),
                         ["param1", "param2"])
        c.assert_request_succeeds("new-command", args_length=2)
        c.assert_request_succeeds("new-command", args_in=[["x"], ["param1", "param2"]])
        c.assert_request_succeeds("decorated", "abc", 1.5, 3, False, informs_count=4,
                                  args_echo=False, args_length=4)
        status, error = c.assert_request_fails("raise-fail", status_equals="fail",
                                               error_equals="There was a problem with your "
                                                            "request.")
        self.assertEqual(status, b"fail")
        c.assert_request_fails("no-such-request", status_equals="invalid")
        c.assert_request_fails("raise-exception")
        with self.assertRaises(AssertionError):
            c.assert_request_succeeds("raise-fail")
        with self.assertRaises(AssertionError):
            c.assert_request_fails("new-command")
        with self.assertRaises(AssertionError):
            c.assert_request_succeeds("new-command", args_equal=["nope"])

    def test_sensors(self):
        c = self.client
        self.assertEqual(c.get_sensor_value("an.int", int), 3)
        self.assertEqual(c.get_sensor_status("an.int"), "nominal")
        self.assertEqual(c.get_sensor_timestamp("an.int"), 12345.0)
        value, status, ts = c.get_sensor("a.discrete")
        self.assertEqual((value, status), ("one", "nominal"))
        c.assert_sensor_equals("an.int", 3, int, status="nominal")
        c.assert_sensor_equals("a.float", 12.0, float)
        c.assert_sensor_not_equal("an.int", 4, int)
        c.assert_sensor_status_equals("a.float", "nominal")
        c.assert_sensors_equal([("an.int", 3, int), ("a.discrete", "one")])
        c.assert_sensors_not_equal([("an.int", 2, int)])
        with self.assertRaises(AssertionError):
            c.assert_sensor_equals("an.int", 4, int)
        with self.assertRaises(AssertionError):
            c.get_sensor("no.such.sensor")

        sensor = self.server.get_sensor("an.int")
        threading.Timer(0.05, sensor.set_value, (4,)).start()
        c.wait_until_sensor_equals(WAIT, "an.int", 4, int)
        c.wait_until_sensors_equal(WAIT, [("an.int", 4, int)])
        ok, why = c.wait_condition(0.05, lambda: False, poll_period=0.01)
        self.assertFalse(ok)
        self.assertIn("Timed out", why)
        with self.assertRaises(AssertionError):
            c.wait_until_sensor_equals(0.05, "an.int", 5, int)

    def test_sensor_list_and_help(self):
        c = self.client
        c.test_sensor_list([
            ("an.int", "An Integer.", "count", "integer", "-5", "5"),
            ("a.discrete", "A Discrete.", "", "discrete", "one", "two", "three"),
            ("a.float", "A Float.", "", "float", "-123.4", "123.4"),
            ("a.floatwithzero", "A Float with zero.", "", "float", "-123.0", "123.0"),
        ])
        with self.assertRaises(AssertionError):
            c.test_sensor_list([("an.int", "An Integer.", "count", "integer", "-5", "5")])
        expected = ["new-command", "raise-exception", "raise-fail", "slow-command",
                    "cancel-slow-command", "decorated", "decorated-return-exception"]
        c.test_help(expected)
        c.test_help([("new-command", "A new command.")] + [
            (name, self.server._request_handlers[name].__doc__) for name in expected[1:]])
        self.server.break_help = "broken"
        with self.assertRaises(AssertionError):
            c.test_help(expected)

    def test_setter_and_recorder(self):
        c = self.client
        recorder = c.message_recorder(whitelist=["sensor-status"])
        c.assert_request_succeeds("sensor-sampling", "an.int", "event")
        msgs = recorder(min_number=1, timeout=WAIT)
        self.assertEqual(msgs[0].name, "sensor-status")
        self.server.get_sensor("an.int").set_value(2)
        self.assertTrue(recorder.wait_number(1, WAIT))
        self.assertEqual(recorder()[0].arguments[-1], b"2")
        replies = c.message_recorder(informs=False, replies=True, regex_filter="!new-command")
        c.assert_request_succeeds("new-command")
        self.assertEqual(len(replies.get_msgs(1, WAIT)), 1)
        self.assertIsNone(replies.wait_number(1, 0.01))

    def test_server_records_messages(self):
        fut = self.server.until_messages(2)
        self.client.assert_request_succeeds("new-command")
        self.client.assert_request_succeeds("watchdog")
        msgs = fut.result(WAIT)
        self.assertEqual([m.name for m in msgs[-2:]], ["new-command", "watchdog"])
        self.assertIn("an.int", self.server.sensor_names)
        self.assertIn("slow-command", self.server.request_names)

    def test_slow_command_cancel(self):
        c = self.client
        done = threading.Event()
        out = []

        def reply_cb(msg):
            out.append(msg)
            done.set()

        c.callback_request(Message.request("slow-command", 5), reply_cb=reply_cb, timeout=WAIT)
        c.assert_request_succeeds("new-command")  # not blocked by the slow command
        c.assert_request_succeeds("cancel-slow-command")
        self.assertTrue(done.wait(WAIT))
        self.assertTrue(out[0].reply_ok())


class TestAsyncDeviceTestServer(ServerClientMixin, unittest.TestCase):
    server_class = AsyncDeviceTestServer

    def test_slow_command(self):
        self.client.assert_request_succeeds("slow-command", 0.01)


class TestTimeoutHintsServer(ServerClientMixin, unittest.TestCase):
    server_class = DeviceTestServerWithTimeoutHints

    def test_hints(self):
        self.client.assert_request_succeeds("request-timeout-hint", "slow-command",
                                            informs_args_equal=[["slow-command", "10.5"]])


class TestSmallHelpers(TestUtilMixin, SensorComparisonMixin, unittest.TestCase):
    def test_message_helpers(self):
        self.assertEqual(add_mid_to_msg_str("?foo a b", 5), "?foo[5] a b")
        self.assertEqual(add_mid_to_msg_str("?foo a", None), "?foo a")
        self.assertEqual(list_to_native_strings([b"a", "b", 1]), ["a", "b", "1"])
        msgs = [Message.inform("foo", 1), Message.reply("foo", "ok")]
        self._assert_msgs_equal(msgs, ["#foo 1", "!foo ok"])
        self._assert_msgs_match(msgs, [r"#foo \d", "!foo"])
        self._assert_msgs_like(msgs, [("#foo", "1"), ("!foo", "ok")])
        with self.assertRaises(AssertionError):
            self._assert_msgs_equal(msgs, ["#foo 1"])
        with self.assertRaises(AssertionError):
            self._assert_msgs_like(msgs, [("#bar", ""), ("!foo", "")])

    def test_client_connection_test(self):
        conn = ClientConnectionTest()
        conn.inform(Message.inform("a"))
        conn.reply(Message.reply("a", "ok"), Message.request("a"))
        conn.mass_inform(Message.inform("b"))
        self.assertEqual([m.name for m in conn.informs], ["a"])
        self.assertEqual(len(conn.replies), 1)
        self.assertEqual(len(conn.mass_informs), 1)

    def test_log_handler(self):
        handler = TestLogHandler()
        log = logging.getLogger("katcp.test.testutils")
        log.addHandler(handler)
        try:
            log.warning("hello")
        finally:
            log.removeHandler(handler)
        self.assertEqual(handler._records[0].getMessage(), "hello")
        handler.clear()
        self.assertEqual(handler._records, [])

    def test_counting_callback_and_waiting_mock(self):
        @counting_callback(number_of_calls=2)
        def cb(x):
            return x * 2

        self.assertEqual(cb(2), 4)
        self.assertFalse(cb.wait(0.01))
        threading.Thread(target=cb, args=(1,)).start()
        self.assertTrue(cb.assert_wait(WAIT))
        self.assertEqual(cb.get_no_calls(), 2)
        cb.reset()
        self.assertEqual(cb.get_no_calls(), 0)

        m = WaitingMock()
        threading.Timer(0.02, m, (1,)).start()
        m.assert_wait_call_count(1, timeout=WAIT)
        self.assertEqual(m.call_args_list[0][0], (1,))
        with self.assertRaises(AssertionError):
            m.assert_wait_call_count(2, timeout=0.01)
        m.reset_mock()
        self.assertEqual(m.call_count, 0)
        m()
        m.assert_wait_call_count(1, timeout=WAIT)

    def test_async_waiting_mock(self):
        async def main():
            m = AsyncWaitingMock()
            asyncio.get_running_loop().call_later(0.01, m)
            await m.assert_wait_call_count(1, timeout=WAIT)
            try:
                await m.assert_wait_call_count(2, timeout=0.01)
            except AssertionError:
                return True
            return False
        self.assertTrue(asyncio.run(main()))

    def test_suppress_queue_repeats(self):
        q = queue.Queue()
        for v in (1, 1, 2, 2, 3, 1):
            q.put(v)
        self.assertEqual(list(suppress_queue_repeats(q, 1, read_time=0.01)), [2, 3, 1])

    def test_sensor_waiters(self):
        sensor = Sensor.integer("an.int", "An int", "", [0, 10], default=0)
        sensor.set_value(1)
        waiter = SensorTransitionWaiter(sensor, [1, 2, 3])
        t = threading.Thread(target=lambda: [sensor.set_value(v) for v in (2, 2, 3)])
        t.start()
        self.assertTrue(waiter.wait(WAIT))
        t.join()
        self.assertEqual(waiter.received_values, [1, 2, 3])
        with self.assertRaises(RuntimeError):
            waiter.wait()
        with self.assertRaises(ValueError):
            SensorTransitionWaiter(sensor, [7])
        bad = SensorTransitionWaiter(sensor, [3, 5])
        sensor.set_value(4)
        self.assertFalse(bad.wait(WAIT))
        timeout = SensorTransitionWaiter(sensor, [4, 9])
        self.assertFalse(timeout.wait(0.01))
        self.assertTrue(timeout.timed_out)
        recorder = SensorTransitionWaiter(sensor)
        sensor.set_value(6)
        self.assertEqual(recorder.get_received_values(), [4, 6])

        status_waiter = SensorTransitionStatusWaiter(
            sensor, [(Sensor.NOMINAL, 6), (Sensor.WARN, 7)])
        sensor.set_value(7, Sensor.WARN)
        self.assertTrue(status_waiter.wait(WAIT))
        threading.Timer(0.02, sensor.set_value, (8,)).start()
        self.assertTrue(wait_sensor(sensor, 8, timeout=WAIT))
        self.assertFalse(wait_sensor(sensor, 9, timeout=0.01))

        async def main():
            fut = wait_sensor_async(sensor, 9)
            asyncio.get_running_loop().call_later(0.01, sensor.set_value, 9)
            return await asyncio.wait_for(fut, WAIT)
        self.assertTrue(asyncio.run(main()))

    def test_sensor_comparison(self):
        a = Sensor.integer("s1", "Sensor one", "V", [0, 5], default=1)
        b = Sensor.integer("s1", "Sensor one", "V", [0, 5], default=1)
        a.set(10.0, Sensor.NOMINAL, 3)
        b.set(10.0, Sensor.NOMINAL, 3)
        self.assert_sensor_equal(a, b)
        self.assert_sensor_equal_description(a, {"value": 3, "units": "V"})
        self.assert_sensors_equal_description([a], [{"name": "s1", "description": "Sensor one"}])
        self.assert_sensors_value_conditions([a], {"s1": lambda v: self.assertEqual(v, 3)})
        b.set(11.0, Sensor.WARN, 4)
        with self.assertRaises(AssertionError):
            self.assert_sensor_equal(a, b)
        self.assert_sensor_equal(a, b, ignore_attributes=("value", "status", "timestamp"))

    def test_mock_req(self):
        server = DeviceTestServer("127.0.0.1", 0)
        req = mock_req("new-command")
        reply, informs = handle_mock_req(server, req).result(WAIT)
        self.assertEqual(reply.arguments, [b"ok", b"param1", b"param2"])
        req.reply.assert_called_once_with(b"ok", b"param1", b"param2")
        req = mock_req("decorated", "x", 1.0, 2, False)
        reply, informs = handle_mock_req(server, req).result(WAIT)
        self.assertTrue(reply.reply_ok())
        self.assertEqual(len(informs), 4)
        self.assertEqual(req.make_reply("ok").arguments, [b"ok"])
        with self.assertRaises(TypeError):
            mock_req("x", server=server, client_conn=object())

    def test_importable_without_mock_package(self):
        code = (f"import sys; sys.modules['mock'] = None; sys.path.insert(0, {ROOT!r}); "
                "import katcp.testutils")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())


class TestTimewarp(TimewarpAsyncTestCase):
    @tornado.testing.gen_test
    async def test_fake_clock_drives_timers(self):
        fired = []
        # gen_test's own timeout runs on the fake clock too: stay below it.
        self.io_loop.call_later(1, fired.append, "ioloop")
        self.io_loop.asyncio_loop.call_later(2, fired.append, "asyncio")
        self.assertEqual(self.io_loop.time(), 0)
        await self.set_ioloop_time(0.5)
        self.assertEqual(fired, [])
        await self.set_ioloop_time(1.5)
        await self.wake_ioloop()
        self.assertEqual(fired, ["ioloop"])
        await self.set_ioloop_time(2.5)
        await self.wake_ioloop()
        self.assertEqual(fired, ["ioloop", "asyncio"])

    def test_call_in_ioloop(self):
        loop_thread_result = []
        t = threading.Thread(target=lambda: loop_thread_result.append(
            call_in_ioloop(self.io_loop, lambda x: x + 1, 1, ioloop_timeout=WAIT)))
        t.start()

        async def drive():
            while t.is_alive():
                await asyncio.sleep(0)
        self.io_loop.run_sync(drive, timeout=WAIT)
        t.join(WAIT)
        self.assertEqual(loop_thread_result, [2])


def test_client_connection_test_drives_the_test_server_directly():
    """katcp-python's idiom: a ClientConnectionTest and a server that was never started."""
    server = DeviceTestServer("", 0)
    conn = ClientConnectionTest()
    ready = server.on_client_connect(conn)  # a plain method: greets before returning
    assert ready.done()
    assert [m.name for m in conn.informs] == ["version-connect"] * 3
    for name, informs in (("watchdog", 0), ("sensor-list", 4), ("sensor-value", 4),
                          ("new-command", 0), ("raise-fail", 0)):
        c = ClientConnectionTest()
        server.handle_message(c, Message.request(name))
        assert len(c.informs) == informs, name
        assert [m.name for m in c.replies] == [name]
    assert conn.replies == []
    server.on_client_disconnect(conn, "bye", True)
    assert str(conn.informs[-1]) == "#disconnect bye"


def test_slow_command_on_a_threaded_test_server():
    """The handler runs in the handler thread; the loop starts its wait (LoopCalls)."""
    server = DeviceTestServer("127.0.0.1", 0)
    server.set_concurrency_options(thread_safe=True, handler_thread=True)
    server.start(timeout=5)
    try:
        client = BlockingTestClient(None, *server.bind_address)
        client.start(timeout=5)
        try:
            client.wait_protocol(timeout=5)
            reply, _ = client.blocking_request(Message.request("slow-command", "0.05"),
                                               timeout=5)
            assert reply.arguments == [b"ok"]
        finally:
            client.stop()
            client.join(5)
    finally:
        server.stop()
        server.join(5)
