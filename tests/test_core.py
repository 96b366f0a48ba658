"""Tests for katcp.core: Message, MessageParser, ProtocolFlags, metaclasses, helpers."""

import asyncio
import logging

import pytest
import tornado.gen
import tornado.ioloop

import katcp.core as core
from katcp.core import (
    AsyncCallbackEvent,
    AsyncEvent,
    AsyncState,
    AttrDict,
    DefaultAttrDict,
    DeviceMetaclass,
    DeviceServerMetaclass,
    KatcpSyntaxError,
    KatcpTypeError,
    LatencyTimer,
    Message,
    MessageParser,
    ProtocolFlags,
)

# ---------------------------------------------------------------------------
# Message
# ---------------------------------------------------------------------------


def test_type_constants_are_katcp_python_values():
    assert (Message.REQUEST, Message.REPLY, Message.INFORM) == (0, 1, 2)
    assert Message.TYPE_NAMES == {0: "REQUEST", 1: "REPLY", 2: "INFORM"}
    assert Message.TYPE_SYMBOLS == {0: b"?", 1: b"!", 2: b"#"}
    assert Message.TYPE_SYMBOL_LOOKUP == {b"?": 0, b"!": 1, b"#": 2}
    assert (Message.OK, Message.FAIL, Message.INVALID) == (b"ok", b"fail", b"invalid")


def test_constructors_and_attributes():
    req = Message.request("sensor-value", "cpu.load", mid=5)
    assert req.mtype == Message.REQUEST
    assert req.name == "sensor-value"
    assert req.arguments == [b"cpu.load"]
    assert req.mid == b"5"
    assert bytes(req) == b"?sensor-value[5] cpu.load"
    rep = Message.reply("watchdog", "ok")
    assert rep.mtype == Message.REPLY and rep.mid is None
    assert bytes(rep) == b"!watchdog ok"
    inf = Message.inform("log", "info", mid="12")
    assert inf.mtype == Message.INFORM and inf.mid == b"12"
    assert bytes(Message(Message.INFORM, b"foo", [b"a"])) == b"#foo a"


def test_reply_to_request_and_reply_inform_copy_name_and_mid():
    req = Message.request("help", mid=7)
    rep = Message.reply_to_request(req, "ok", 3)
    assert (rep.mtype, rep.name, rep.mid, rep.arguments) == (Message.REPLY, "help", b"7", [b"ok", b"3"])
    inf = Message.reply_inform(req, "watchdog", "Check the connection.")
    assert (inf.mtype, inf.name, inf.mid) == (Message.INFORM, "help", b"7")
    assert bytes(inf) == b"#help[7] watchdog Check\\_the\\_connection."
    no_mid = Message.reply_to_request(Message.request("x"), "ok")
    assert no_mid.mid is None


def test_format_argument():
    m = Message.request("x")
    assert m.format_argument(True) == b"1"
    assert m.format_argument(False) == b"0"
    assert m.format_argument(42) == b"42"
    assert m.format_argument(-3) == b"-3"
    assert m.format_argument(0.1) == b"0.1"
    assert m.format_argument(1e100) == b"1e+100"
    assert m.format_argument(3.0) == b"3.0"
    assert m.format_argument("caf\u00e9") == "caf\u00e9".encode()
    assert m.format_argument(b"\xff raw") == b"\xff raw"
    assert m.format_argument(None) == b"None"
    assert m.format_argument(bytearray(b"ab")) == b"ab"

    class MyInt(int):
        pass

    assert m.format_argument(MyInt(5)) == b"5"
    msg = Message.inform("a", 1, 2.5, True, "s", b"b", None)
    assert msg.arguments == [b"1", b"2.5", b"1", b"s", b"b", b"None"]


def test_escaping_and_empty_arguments():
    msg = Message.inform("foo", "a b", "", "\\", "\t\n\r\0\x1b", "\x0b")
    assert bytes(msg) == b"#foo a\\_b \\@ \\\\ \\t\\n\\r\\0\\e \x0b"
    assert MessageParser().parse(bytes(msg)) == msg


def test_invalid_messages_rejected():
    with pytest.raises(KatcpSyntaxError):
        Message(3, "foo")
    with pytest.raises(KatcpSyntaxError, match="missing command name"):
        Message.request("")
    for bad in ("foo_bar", "1foo", "-foo", "f\u00f6o", "foo bar"):
        with pytest.raises(KatcpSyntaxError):
            Message.request(bad)
    # The protocol wins over katcp-python on message ids.
    for bad_mid in (0, "0", b"007", 2**31, -1, "abc", b"", True):
        with pytest.raises(KatcpSyntaxError):
            Message.request("foo", mid=bad_mid)
    assert Message.request("foo", mid=2**31 - 1).mid == b"2147483647"


def test_reply_ok():
    assert Message.reply("foo", "ok").reply_ok()
    assert not Message.reply("foo", "fail", "x").reply_ok()
    assert not Message.reply("foo").reply_ok()
    assert not Message.inform("foo", "ok").reply_ok()
    assert not Message.request("foo", "ok").reply_ok()


def test_copy_equality_str_repr():
    msg = Message.request("foo", "a", mid=3)
    dup = msg.copy()
    assert dup == msg and dup is not msg
    dup.arguments.append(b"b")
    assert msg.arguments == [b"a"]
    assert dup != msg
    assert msg != Message.reply("foo", "a", mid=3)
    assert msg != Message.request("foo", "a", mid=4)
    assert msg != Message.request("bar", "a", mid=3)
    assert (msg == "?foo[3] a") is False
    assert str(msg) == "?foo[3] a"
    assert repr(msg) == "<Message request foo (b'a')>"
    # Differs from katcp-python on purpose (it raises UnicodeDecodeError): see doc/differences.rst
    assert str(Message.inform("x", b"\xff")) == "#x \\xff"
    long_repr = repr(Message.inform("x", "y" * 5000))
    assert len(long_repr) < 1100
    assert long_repr.endswith("yyy...')>")


def test_repr_and_encoding_match_katcp_python(caplog):
    """Forms taken from katcp-python 0.9.3 run on the same messages."""
    msg = Message.request("foo", b"\xff\xfe", "a b")
    assert repr(msg) == "<Message request foo (b'\\xff\\xfe', b'a\\\\_b')>"
    assert repr(Message.request("foo")) == "<Message request foo >"
    escaped = Message.request("foo", b"a\x00\\\n\t\x1b\r", b"")
    assert repr(escaped) == "<Message request foo (b'a\\\\0\\\\\\\\\\\\n\\\\t\\\\e\\\\r', b'')>"
    assert repr(Message.reply("foo", "ok", mid=5)) == "<Message reply foo (b'ok')>"
    with caplog.at_level("ERROR"):
        assert Message.request("foo", "\ud800x").arguments == [b"?x"]
    assert "Replacing bad characters with '?'" in caplog.text
    with pytest.raises(TypeError):
        hash(msg)


def test_request_helpers_reject_unknown_keywords():
    with pytest.raises(TypeError):
        Message.request("foo", spam=1)


def test_construction_from_parser_is_equal_to_constructor():
    parsed = MessageParser().parse(b"#sensor-status 1.5 1 a nominal 3")
    built = Message.inform("sensor-status", 1.5, 1, "a", "nominal", 3)
    assert parsed == built
    assert type(parsed) is Message


# ---------------------------------------------------------------------------
# MessageParser
# ---------------------------------------------------------------------------


def test_message_parser_basic():
    p = MessageParser()
    m = p.parse(b"?foo[12] a\\_b \\@")
    assert (m.mtype, m.name, m.mid, m.arguments) == (0, "foo", b"12", [b"a b", b""])
    assert p.parse(bytearray(b"!x ok")).reply_ok()


def test_message_parser_errors():
    p = MessageParser()
    with pytest.raises(KatcpTypeError):
        p.parse("?foo")
    with pytest.raises(KatcpSyntaxError, match="Empty message"):
        p.parse(b"")
    with pytest.raises(KatcpSyntaxError, match="Empty message"):
        p.parse(b"  \t")
    with pytest.raises(KatcpSyntaxError, match="message id"):
        p.parse(b"?foo[007]")
    assert issubclass(KatcpSyntaxError, ValueError)


# ---------------------------------------------------------------------------
# ProtocolFlags
# ---------------------------------------------------------------------------


def test_protocol_flags_parse_and_str():
    pf = ProtocolFlags.parse_version(b"5.1-MIBT")
    assert (pf.major, pf.minor) == (5, 1)
    assert pf.flags == {b"M", b"I", b"B", b"T"}
    assert str(pf) == "5.1-BIMT"
    assert pf.multi_client and pf.message_ids
    assert pf.request_timeout_hints and pf.bulk_set_sensor_sampling
    assert pf.supports(ProtocolFlags.MESSAGE_IDS) and pf.supports("M")
    assert ProtocolFlags.parse_version("5.0-MI") == ProtocolFlags(5, 0, [b"M", b"I"])
    assert str(ProtocolFlags(5, 0, {ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS})) == "5.0-IM"
    assert str(ProtocolFlags(4, 0, set())) == "4.0"
    assert str(ProtocolFlags(5, 0, "M")) == "5.0-M"


def test_protocol_flags_version_gating():
    """As katcp-python 0.9.3: a flag the version cannot have raises ValueError."""
    for text in (b"5.0-MIBT", b"5.0-T", b"5.0-B", b"4.0-I", b"4.9-MI", b"3.0-I"):
        with pytest.raises(ValueError):
            ProtocolFlags.parse_version(text)
    for major, minor, flags in ((5, 0, "T"), (5, 0, "B"), (4, 0, "I"), (None, None, "I")):
        with pytest.raises(ValueError):
            ProtocolFlags(major, minor, flags)
    pf = ProtocolFlags.parse_version(b"5.0-MI")
    assert pf.supports(b"I") and pf.message_ids
    assert not pf.request_timeout_hints and not pf.bulk_set_sensor_sampling
    v4 = ProtocolFlags.parse_version(b"4.0-M")
    assert v4.multi_client and not v4.message_ids
    assert ProtocolFlags(6, 0, "MIBT").request_timeout_hints
    bad = ProtocolFlags.parse_version(b"garbage")
    assert (bad.major, bad.minor, bad.flags) == (None, None, set())


def test_protocol_flags_strategies():
    assert ProtocolFlags(5, 0, "").strategy_allowed(b"event-rate")
    assert ProtocolFlags(5, 0, "").strategy_allowed("differential-rate")
    assert not ProtocolFlags(4, 0, "").strategy_allowed(b"event-rate")
    assert ProtocolFlags(4, 0, "").strategy_allowed(b"period")
    assert not ProtocolFlags(5, 0, "").strategy_allowed(b"bogus")
    assert ProtocolFlags.MULTI_CLIENT == b"M" and ProtocolFlags.BULK_SET_SENSOR_SAMPLING == b"B"
    assert ProtocolFlags.REQUEST_TIMEOUT_HINTS == b"T" and ProtocolFlags.MESSAGE_IDS == b"I"


# ---------------------------------------------------------------------------
# dicts, names, metaclasses
# ---------------------------------------------------------------------------


def test_attr_dicts():
    d = AttrDict(a=1)
    d.b = 2
    assert d == {"a": 1, "b": 2} and d.a == 1
    del d.a
    with pytest.raises(AttributeError):
        d.a  # noqa: B018
    dd = DefaultAttrDict(list)
    dd.x.append(1)
    assert dd["x"] == [1]
    dd.y = 3
    assert dd.y == 3


def test_convert_method_name():
    assert core.convert_method_name("request_", "request_foo_bar") == "foo-bar"
    assert core.convert_method_name("inform_", "inform_sensor_status") == "sensor-status"


def test_device_metaclass_collects_handlers():
    class Base(metaclass=DeviceMetaclass):
        def request_foo_bar(self, req, msg):
            """Do foo bar."""

        def inform_sensor_status(self, msg):
            pass

        def reply_help(self, msg):
            pass

        request_not_callable = 5

    class Child(Base):
        def request_extra(self, req, msg):
            """Extra."""

    assert set(Base._request_handlers) == {"foo-bar"}
    assert Base._request_handlers["foo-bar"] is Base.request_foo_bar
    assert set(Base._inform_handlers) == {"sensor-status"}
    assert set(Base._reply_handlers) == {"help"}
    assert set(Child._request_handlers) == {"foo-bar", "extra"}
    assert "extra" not in Base._request_handlers


def test_device_metaclass_requires_docstrings():
    with pytest.raises(TypeError, match="request_undocumented"):

        class Bad(metaclass=DeviceMetaclass):
            def request_undocumented(self, req, msg):
                pass


def test_device_server_metaclass_filters_by_protocol():
    def handler(doc, version=None, flags=None):
        def request(self, req, msg):
            pass

        request.__doc__ = doc
        if version is not None:
            request._minimum_katcp_version = version
        if flags is not None:
            request._has_katcp_protocol_flags = flags
        return request

    class Server(metaclass=DeviceServerMetaclass):
        PROTOCOL_INFO = ProtocolFlags(5, 0, [b"M", b"I"])
        request_plain = handler("Plain.")
        request_new = handler("Needs 5.1.", version=(5, 1))
        request_old = handler("Needs 4.", version=(4, 0))
        request_timeouts = handler("Needs T.", flags=[b"T"])
        request_ids = handler("Needs I.", flags=[b"I"])

    assert set(Server._request_handlers) == {"plain", "old", "ids"}

    class NewServer(Server):
        PROTOCOL_INFO = ProtocolFlags(5, 1, [b"M", b"I", b"T"])

    assert set(NewServer._request_handlers) == {"plain", "old", "ids", "new", "timeouts"}


def test_constants():
    assert core.DEFAULT_KATCP_MAJOR == 5
    assert core.MID_KATCP_MAJOR == 5
    assert core.VERSION_CONNECT_KATCP_MAJOR == 5
    assert core.INTERFACE_CHANGED_KATCP_MAJOR == 5
    assert core.SEC_TS_KATCP_MAJOR == 5
    assert core.FLOAT_TS_KATCP_MAJOR == 4
    assert core.SEC_TO_MS_FAC == 1000
    assert core.MS_TO_SEC_FAC == 0.001


def test_exception_hierarchy():
    assert issubclass(core.KatcpVersionError, core.KatcpClientError)
    assert issubclass(core.KatcpClientDisconnected, core.KatcpClientError)
    assert issubclass(KatcpTypeError, TypeError)
    for exc in (core.FailReply, core.AsyncReply, core.KatcpDeviceError):
        assert issubclass(exc, Exception)
    from katcp import codec

    assert core.KatcpSyntaxError is codec.KatcpSyntaxError


def test_lazy_sensor_and_reading():
    try:
        import katcp.sensor as sensor_mod
    except ImportError:
        pytest.skip("katcp.sensor not written yet")
    assert core.Sensor is sensor_mod.Sensor
    assert core.Reading is sensor_mod.Reading
    with pytest.raises(AttributeError):
        core.NoSuchThing  # noqa: B018


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def test_hashable_identity_and_steal_docstring():
    class A:
        def meth(self):
            """Doc."""

    a = A()
    assert core.hashable_identity(a.meth) == core.hashable_identity(a.meth)
    assert core.hashable_identity(a.meth) != core.hashable_identity(A().meth)
    assert core.hashable_identity("x") == "x"
    assert core.hashable_identity(a) == id(a)

    @core.steal_docstring_from(A.meth)
    def other():
        pass

    assert other.__doc__ == "Doc."


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_async_event():
    async def main():
        ev = AsyncEvent()
        assert not ev.is_set() and not ev.isSet()
        fut = ev.until_set()
        assert not fut.done()
        ev.set()
        assert await fut is True
        assert ev.until_set().done()
        ev.clear()
        with pytest.raises(tornado.gen.TimeoutError):
            await ev.until_set(timeout=0.01)

    run(main())


def test_async_event_wait_with_ioloop_from_thread():
    async def main():
        ev = AsyncEvent()
        ioloop = tornado.ioloop.IOLoop.current()
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, ev.wait_with_ioloop, ioloop, 0.01) is False
        fut = loop.run_in_executor(None, ev.wait_with_ioloop, ioloop, 5)
        loop.call_later(0.01, ev.set)
        assert await fut is True

    run(main())


def test_async_callback_event():
    calls = []

    async def main():
        ev = AsyncCallbackEvent(calls.append)
        ev.set()
        ev.clear()

    run(main())
    assert calls == [True, False]


def test_async_state():
    async def main():
        st = AsyncState(["idle", "busy", "done"])
        assert st.state == "idle" and st.valid_states == ("idle", "busy", "done")
        assert st.until_state("idle").done()
        busy = st.until_state("busy")
        either = st.until_state_in("busy", "done", timeout=1)
        st.set_state("busy")
        assert await busy is True
        assert await either is True
        with pytest.raises(ValueError):
            st.set_state("bogus")
        with pytest.raises(ValueError):
            st.until_state("bogus")
        with pytest.raises(tornado.gen.TimeoutError):
            await st.until_state("done", timeout=0.01)
        later = st.until_state("done")
        st.set_state("done")
        assert await later is True
        with pytest.raises(ValueError):
            AsyncState(["a"], initial_state="b")

    run(main())


def test_until_any_some_later_and_timeout_manager():
    async def main():
        loop = asyncio.get_running_loop()
        f1, f2 = loop.create_future(), loop.create_future()
        anyf = core.until_any(f1, f2)
        f2.set_result("two")
        assert await anyf == "two"
        f3 = loop.create_future()
        with pytest.raises(tornado.gen.TimeoutError):
            await core.until_any(f3, timeout=0.01)
        f4 = loop.create_future()
        errf = core.until_any(f4)
        f4.set_exception(RuntimeError("boom"))
        with pytest.raises(RuntimeError):
            await errf

        a, b = loop.create_future(), loop.create_future()
        some = core.until_some(a, b, done_at_least=1)
        b.set_result(2)
        assert await some == [(1, 2)]
        some_kw = core.until_some(x=core.until_later(0.001), y=core.until_later(0.002))
        assert sorted(await some_kw) == [("x", None), ("y", None)]
        with pytest.raises(tornado.gen.TimeoutError):
            await core.until_some(loop.create_future(), timeout=0.01)

        t0 = loop.time()
        assert await core.until_later(0.02) is None
        assert loop.time() - t0 >= 0.015

        mt = core.future_timeout_manager(5)
        assert 0 < mt.remaining() <= 5
        assert await mt(core.until_later(0.001)) is None
        assert core.future_timeout_manager(None).remaining() is None
        mt2 = core.future_timeout_manager(0.01)
        with pytest.raises(tornado.gen.TimeoutError):
            await mt2(loop.create_future())

    run(main())


def test_log_future_exceptions(caplog):
    async def main():
        loop = asyncio.get_running_loop()
        log = logging.getLogger("test.core.logfut")
        f = loop.create_future()
        core.log_future_exceptions(log, f)
        f.set_exception(RuntimeError("logged"))
        g = loop.create_future()
        core.log_future_exceptions(log, g, ignore=(KeyError,))
        g.set_exception(KeyError("ignored"))
        await asyncio.sleep(0)

        @core.log_coroutine_exceptions
        async def failing():
            raise ValueError("coro failed")

        with pytest.raises(ValueError):
            await failing()
        await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR):
        run(main())
    text = caplog.text
    assert "logged" in text and "ignored" not in text and "coro failed" in text


class _FakeLoopClock:
    def __init__(self):
        self.now = 0.0

    def time(self):
        return self.now


def test_latency_timer(monkeypatch):
    clock = _FakeLoopClock()
    timer = LatencyTimer(0.5)
    monkeypatch.setattr(timer, "_time", clock.time)

    class Done:
        def __init__(self, done):
            self._done = done

        def done(self):
            return self._done

    assert not timer.check_future(Done(False))
    assert not timer.time_to_yield()
    assert timer.check_future(Done(True))
    clock.now = 0.3
    assert timer.check_future(Done(True))
    assert not timer.time_to_yield()
    clock.now = 0.6
    assert timer.check_future(Done(True))
    assert timer.time_to_yield()
    # After yielding, the hogging period restarts.
    assert timer.check_future(Done(True))
    assert not timer.time_to_yield()


def test_waiters_are_independent_and_do_not_accumulate():
    async def main():
        ev = AsyncEvent()
        for _ in range(5):
            with pytest.raises(tornado.gen.TimeoutError):
                await ev.until_set(timeout=0.001)
        assert not ev._waiting_futures
        st = AsyncState(["a", "b"])
        first, second = st.until_state("b"), st.until_state("b")
        first.cancel()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(st.until_state("b"), 0.001)
        st.set_state("b")
        assert await second is True
        for _ in range(3):
            with pytest.raises(tornado.gen.TimeoutError):
                await st.until_state("a", timeout=0.001)
        assert not st._waiting_futures.get("a")

    run(main())
