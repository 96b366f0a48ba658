"""Tests for katcp.kattypes: value types, (un)packing and the handler decorators."""

import asyncio
import concurrent.futures
import inspect
import math
import re

import pytest
import tornado.gen
from hypothesis import given, settings
from hypothesis import strategies as st

import katcp.kattypes as kattypes
from katcp.core import FailReply, Message, ProtocolFlags
from katcp.kattypes import (
    Address,
    Bool,
    Discrete,
    DiscreteMulti,
    Float,
    Int,
    KatcpType,
    Lru,
    Parameter,
    Regex,
    Str,
    StrictTimestamp,
    Struct,
    Timestamp,
    TimestampOrNow,
    async_make_reply,
    concurrent_reply,
    has_katcp_protocol_flags,
    inform,
    make_reply,
    minimum_katcp_version,
    pack_types,
    request,
    request_timeout_hint,
    return_reply,
    send_reply,
    unpack_message,
    unpack_types,
)

MAJORS = (4, 5)
FEW = settings(max_examples=60, deadline=None)


def run_async(coro_fn):
    """Run an ``async def`` test in a fresh event loop (no pytest-asyncio here)."""
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(coro_fn(*args, **kwargs), timeout=5))
    wrapper.__name__ = coro_fn.__name__
    return wrapper


# ---------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------

class TestInt:
    def test_pack_unpack(self):
        t = Int()
        assert t.pack(5) == b"5"
        assert t.pack(-17) == b"-17"
        assert t.unpack(b"42") == 42
        assert t.unpack(b"-3") == -3
        assert t.name == "integer"

    def test_bounds(self):
        t = Int(min=0, max=10)
        assert t.unpack(b"0") == 0 and t.unpack(b"10") == 10
        with pytest.raises(ValueError, match=r"^Integer -1 is lower than minimum 0\.$"):
            t.unpack(b"-1")
        with pytest.raises(ValueError, match=r"^Integer 11 is higher than maximum 10\.$"):
            t.pack(11)
        assert t.pack(11, nocheck=True) == b"11"

    def test_bad(self):
        with pytest.raises(ValueError, match=r"^Could not parse value 'abc' as integer\.$"):
            Int().unpack(b"abc")
        with pytest.raises(ValueError, match="as integer"):
            Int().pack("abc")

    def test_default_and_optional(self):
        assert Int(default=7).unpack(None) == 7
        assert Int(default=7).pack(None) == b"7"
        assert Int(optional=True).unpack(None) is None
        with pytest.raises(ValueError, match="No value or default given"):
            Int().unpack(None)
        with pytest.raises(ValueError, match="Cannot pack a None value"):
            Int(optional=True).pack(None)

    @FEW
    @given(st.integers(), st.sampled_from(MAJORS))
    def test_round_trip(self, value, major):
        t = Int()
        assert t.unpack(t.pack(value, major=major), major) == value


class TestFloat:
    def test_pack_unpack(self):
        t = Float()
        assert t.pack(1.5) == b"1.5"
        assert t.pack(2) == b"2.0"
        assert t.unpack(b"1e3") == 1000.0
        assert math.isnan(t.unpack(b"nan"))

    def test_bounds(self):
        t = Float(min=-1.5, max=2.5)
        with pytest.raises(ValueError, match=r"^Float -2 is lower than minimum -1\.5\.$"):
            t.unpack(b"-2")
        with pytest.raises(ValueError, match=r"^Float 3 is higher than maximum 2\.5\.$"):
            t.pack(3.0)

    def test_bad(self):
        with pytest.raises(ValueError, match=r"^Could not parse value 'abc' as float\.$"):
            Float().unpack(b"abc")
        with pytest.raises(ValueError, match="Could not encode value 'x' as float"):
            Float().pack("x")

    @FEW
    @given(st.floats(allow_nan=False), st.sampled_from(MAJORS))
    def test_round_trip(self, value, major):
        t = Float()
        assert t.unpack(t.pack(value, major=major), major) == value


class TestBool:
    def test_pack_unpack(self):
        t = Bool()
        assert t.pack(True) == b"1" and t.pack(False) == b"0"
        assert t.unpack(b"1") is True and t.unpack(b"0") is False

    def test_bad(self):
        with pytest.raises(ValueError, match=r"^Boolean value must be '0' or '1' but is 'yes'\.$"):
            Bool().unpack(b"yes")

    @FEW
    @given(st.booleans(), st.sampled_from(MAJORS))
    def test_round_trip(self, value, major):
        assert Bool().unpack(Bool().pack(value, major=major), major) is value


class TestStr:
    def test_pack_unpack(self):
        t = Str()
        assert t.pack("héllo") == "héllo".encode()
        assert t.pack(b"\xff raw") == b"\xff raw"
        assert t.pack(12) == b"12"
        assert t.unpack(b"abc") == "abc"

    def test_bad_utf8(self):
        with pytest.raises(ValueError, match="Could not decode value"):
            Str().unpack(b"\xff\xfe")

    @FEW
    @given(st.text(), st.sampled_from(MAJORS))
    def test_round_trip(self, value, major):
        assert Str().unpack(Str().pack(value, major=major), major) == value


class TestDiscrete:
    def test_values(self):
        t = Discrete(["on", "off"])
        assert t.pack("on") == b"on"
        assert t.unpack(b"off") == "off"
        with pytest.raises(ValueError, match=r"^Discrete value 'ON' is not one of \['on', 'off'\]\.$"):
            t.unpack(b"ON")
        with pytest.raises(ValueError):
            t.pack("maybe")

    def test_case_insensitive(self):
        t = Discrete(["on", "off"], case_insensitive=True)
        assert t.unpack(b"ON") == "ON"
        with pytest.raises(ValueError, match=r"\(case-insensitive\)"):
            t.unpack(b"maybe")

    @FEW
    @given(st.data())
    def test_round_trip(self, data):
        values = data.draw(st.lists(st.text(min_size=1), min_size=1, unique=True))
        value = data.draw(st.sampled_from(values))
        t = Discrete(values)
        assert t.unpack(t.pack(value)) == value


class TestDiscreteMulti:
    def test_values(self):
        t = DiscreteMulti(["b", "A", "c"])
        assert t.unpack(b"c,A") == ["A", "c"]
        assert t.unpack(b"all") == ["A", "b", "c"]
        assert t.pack(["c", "b"]) == b"b,c"
        with pytest.raises(ValueError, match="Discrete value 'd'"):
            t.unpack(b"A,d")

    def test_separator_and_no_all(self):
        t = DiscreteMulti(["x", "y", "all"], all_keyword=None, separator=":")
        assert t.unpack(b"all") == ["all"]
        assert t.unpack(b"y: x") == ["x", "y"]

    @FEW
    @given(st.lists(st.sampled_from(["alpha", "beta", "gamma", "Delta"]), min_size=1,
                    unique=True))
    def test_round_trip(self, value):
        t = DiscreteMulti(["alpha", "beta", "gamma", "Delta"])
        assert t.unpack(t.pack(value)) == sorted(value, key=str.lower)


class TestLru:
    def test_pack_unpack(self):
        t = Lru()
        assert t.pack(Lru.LRU_NOMINAL) == b"nominal"
        assert t.pack(Lru.LRU_ERROR) == b"error"
        assert t.unpack(b"error") == Lru.LRU_ERROR
        with pytest.raises(ValueError, match="Lru value must be 'nominal' or 'error'"):
            t.unpack(b"bad")
        with pytest.raises(ValueError, match="LRU_NOMINAL or LRU_ERROR"):
            t.pack(3)


class TestAddress:
    @pytest.mark.parametrize("packed, value", [
        (b"127.0.0.1:7147", ("127.0.0.1", 7147)),
        (b"host.example", ("host.example", None)),
        (b"[::1]:80", ("::1", 80)),
        (b"[fe80::1%eth0]", ("fe80::1%eth0", None)),
    ])
    def test_pack_unpack(self, packed, value):
        t = Address()
        assert t.unpack(packed) == value
        assert t.pack(value) == packed

    @pytest.mark.parametrize("bad", [b"::1:80", b"[::1", b"a:b", b"a:80:90"])
    def test_bad(self, bad):
        with pytest.raises(ValueError, match="as an address"):
            Address().unpack(bad)

    def test_bad_pack(self):
        with pytest.raises(ValueError, match="Could not extract host and port"):
            Address().pack("127.0.0.1")
        with pytest.raises(ValueError, match="Could not extract host and port"):
            Address().pack(("127.0.0.1", "port"))

    @FEW
    @given(st.one_of(st.ip_addresses().map(str),
                     st.from_regex(r"[a-z][a-z0-9.\-]{0,20}", fullmatch=True)),
           st.one_of(st.none(), st.integers(0, 65535)))
    def test_round_trip(self, host, port):
        t = Address()
        assert t.unpack(t.pack((host, port))) == (host, port)


class TestTimestamp:
    def test_v5_seconds(self):
        t = Timestamp()
        assert t.pack(1234.5, major=5) == b"1234.500000"
        assert t.unpack(b"1234.5", 5) == 1234.5

    def test_v4_milliseconds(self):
        t = Timestamp()
        assert t.pack(1234.5, major=4) == b"1234500"
        assert t.pack(1.005, major=4) == b"1005"
        assert t.unpack(b"1234500", 4) == pytest.approx(1234.5)

    def test_bad(self):
        with pytest.raises(ValueError, match=r"^Could not parse value 'x' as timestamp\.$"):
            Timestamp().unpack(b"x")
        with pytest.raises(ValueError, match="as timestamp"):
            Timestamp().pack("x")

    @FEW
    @given(st.integers(0, 2**41))
    def test_round_trip_v4(self, ms):
        t = Timestamp()
        packed = b"%d" % ms
        assert t.pack(t.unpack(packed, 4), major=4) == packed

    @FEW
    @given(st.integers(0, 2**51))
    def test_round_trip_v5(self, us):
        t = Timestamp()
        packed = b"%d.%06d" % divmod(us, 10**6)
        assert t.pack(t.unpack(packed, 5), major=5) == packed

    def test_or_now(self):
        t = TimestampOrNow()
        assert t.pack(TimestampOrNow.NOW) == b"now"
        assert t.unpack(b"now") is TimestampOrNow.NOW
        assert t.unpack(b"1500", 4) == pytest.approx(1.5)
        assert t.pack(1.5, major=4) == b"1500"


class TestStrictTimestamp:
    def test_pack_unpack(self):
        t = StrictTimestamp()
        assert t.unpack(b"123.25") == 123.25
        assert t.unpack(b"123") == 123.0
        assert t.pack(1.5) == b"1.5"

    @pytest.mark.parametrize("bad", [b"1e3", b"abc", b"1.2.3", b""])
    def test_bad(self, bad):
        with pytest.raises(ValueError, match="as strict timestamp"):
            StrictTimestamp().unpack(bad)

    def test_negative(self):
        with pytest.raises(ValueError, match="may not be negative"):
            StrictTimestamp().unpack(b"-1.5")


class TestStruct:
    def test_pack_unpack(self):
        t = Struct(">HI")
        assert t.pack((1, 2)) == b"\x00\x01\x00\x00\x00\x02"
        assert t.unpack(b"\x00\x01\x00\x00\x00\x02") == (1, 2)

    def test_bad(self):
        with pytest.raises(ValueError, match="Could not unpack"):
            Struct(">I").unpack(b"\x00")
        with pytest.raises(ValueError, match="Could not pack"):
            Struct(">B").pack((300,))

    @FEW
    @given(st.tuples(st.integers(-2**31, 2**31 - 1), st.floats(allow_nan=False)))
    def test_round_trip(self, value):
        t = Struct("<id")
        assert t.unpack(t.pack(value)) == value


class TestRegex:
    def test_match(self):
        t = Regex(r"^\d+-[a-z]+$")
        assert t.unpack(b"12-ab") == "12-ab"
        with pytest.raises(ValueError, match=r"^Value 'ab' does not match regex"):
            t.unpack(b"ab")

    def test_compiled_flags(self):
        t = Regex(re.compile("^ab$", re.I))
        assert t.unpack(b"AB") == "AB"
        with pytest.raises(ValueError, match="with flags 'I"):
            t.unpack(b"abc")


def test_base_type_has_no_codec():
    with pytest.raises(TypeError):
        KatcpType().pack(1)


def test_types_are_slotted():
    with pytest.raises(AttributeError):
        Int().arbitrary = 1


# ---------------------------------------------------------------------------
# Parameters, pack_types, unpack_types
# ---------------------------------------------------------------------------

def test_parameter_error_names_parameter():
    p = Parameter(2, "gain", Float(), 5)
    assert p.unpack(b"1.5") == 1.5
    assert p.pack(1.5) == b"1.5"
    with pytest.raises(FailReply, match=r"^Error in parameter 2 \(gain\): Could not parse "
                                        r"value 'abc' as float\.$"):
        p.unpack(b"abc")


def test_unpack_types():
    types = (Int(), Float(default=0.5), Str(optional=True))
    assert unpack_types(types, [b"1", b"2.5", b"x"], ["a", "b", "c"], 5) == [1, 2.5, "x"]
    assert unpack_types(types, [b"1"], ["a", "b", "c"], 5) == [1, 0.5, None]
    with pytest.raises(FailReply, match="^Too many parameters given.$"):
        unpack_types(types, [b"1", b"2", b"3", b"4"], ["a", "b", "c"], 5)
    with pytest.raises(FailReply, match=r"^Error in parameter 1 \(a\): No value or default"):
        unpack_types(types, [], ["a", "b", "c"], 5)


def test_unpack_types_multiple():
    types = (Str(), Int(multiple=True))
    assert unpack_types(types, [b"x", b"1", b"2", b"3"], ["s", "n"], 5) == ["x", 1, 2, 3]
    with pytest.raises(FailReply, match=r"^Error in parameter 4 \(n\): Could not parse"):
        unpack_types(types, [b"x", b"1", b"2", b"z"], ["s", "n"], 5)


def test_unpack_types_timestamps_by_major():
    assert unpack_types((Timestamp(),), [b"1500"], ["t"], 4) == [pytest.approx(1.5)]
    assert unpack_types((Timestamp(),), [b"1500"], ["t"], 5) == [1500.0]


def test_pack_types():
    assert pack_types((Int(), Float()), [1, 2.5], 5) == [b"1", b"2.5"]
    assert pack_types((Int(), Float(default=1.0)), [1], 5) == [b"1", b"1.0"]
    assert pack_types((Str(), Int(multiple=True)), ["a", 1, 2], 5) == [b"a", b"1", b"2"]
    assert pack_types((Timestamp(),), [1.5], 4) == [b"1500"]
    with pytest.raises(ValueError, match="Too many arguments to pack"):
        pack_types((Int(),), [1, 2], 5)


def test_multiple_only_last():
    with pytest.raises(TypeError, match="Only the last parameter"):
        request(Int(multiple=True), Int())
    with pytest.raises(TypeError, match="Only the last parameter"):
        return_reply(Int(multiple=True), Int())


# ---------------------------------------------------------------------------
# make_reply
# ---------------------------------------------------------------------------

def test_make_reply():
    reply = make_reply("foo", (Int(), Float()), ("ok", 3, 1.5), 5)
    assert reply.mtype == Message.REPLY and reply.name == "foo"
    assert reply.arguments == [b"ok", b"3", b"1.5"]
    fail = make_reply("foo", (Int(),), ("fail", "it broke"), 5)
    assert fail.arguments == [b"fail", b"it broke"]
    with pytest.raises(ValueError, match="First returned value must be 'ok' or 'fail'"):
        make_reply("foo", (), ("maybe",), 5)
    assert make_reply("t", (Timestamp(),), ("ok", 2.0), 4).arguments == [b"ok", b"2000"]


# ---------------------------------------------------------------------------
# Decorators over real Message objects
# ---------------------------------------------------------------------------

class Connection:
    """Stand-in for a server's client connection: just protocol flags."""

    def __init__(self, major):
        self.protocol_flags = ProtocolFlags(major, 0, "")


class Req:
    """Minimal request object as a server passes to handlers."""

    def __init__(self, msg, connection=None):
        self.msg = msg
        self.client_connection = connection
        self.sent = []

    def reply_with_message(self, rep_msg):
        self.sent.append(rep_msg)


class Device:
    @request(Int(min=1), Float())
    @return_reply(Str(), Float())
    def request_scale(self, req, count, gain):
        """?scale count gain -> text, product"""
        return ("ok", "x" * count, count * gain)

    @return_reply(Int())
    @request(Int(), include_msg=True)
    def request_echo_mid(self, req, msg, value):
        """Reply value; msg is passed too."""
        assert msg.name == "echo-mid"
        return ("ok", value)

    @request(Timestamp())
    @return_reply(Timestamp())
    def request_later(self, req, when):
        """when + 1 s, in the protocol's timestamp format."""
        return ("ok", when + 1.0)

    @request(Str())
    @return_reply()
    def request_fail(self, req, why):
        """Always fails with the given reason."""
        return ("fail", why)

    @request(Int())
    @return_reply(Int())
    async def request_async_double(self, req, value):
        """Native coroutine handler."""
        await asyncio.sleep(0)
        return ("ok", 2 * value)

    @return_reply(Int())
    @request(Int())
    async def request_async_outer(self, req, value):
        """Native coroutine handler, decorators the other way round."""
        await asyncio.sleep(0)
        if value < 0:
            raise FailReply("negative")
        return ("ok", value + 1)

    @request(Int())
    @return_reply(Int())
    @tornado.gen.coroutine
    def request_gen_triple(self, req, value):
        """tornado.gen coroutine handler."""
        yield tornado.gen.moment
        return ("ok", 3 * value)

    @request(Int())
    @return_reply(Int())
    def request_future(self, req, value):
        """Returns an asyncio future."""
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, ("ok", value * 10))
        return fut

    @request(Int())
    @return_reply(Int())
    def request_thread_future(self, req, value):
        """Returns a concurrent.futures future."""
        fut = concurrent.futures.Future()
        fut.set_result(("ok", value - 1))
        return fut

    @concurrent_reply
    @request_timeout_hint(2.5)
    @minimum_katcp_version(5, 1)
    @has_katcp_protocol_flags([ProtocolFlags.MULTI_CLIENT])
    @request()
    @return_reply()
    def request_marked(self, req):
        """Marked handler."""
        return ("ok",)


class DeviceV4(Device):
    PROTOCOL_INFO = ProtocolFlags(4, 0, "")


def call(handler, *args, conn=None, obj=None):
    msg = Message.request(handler.__name__[len("request_"):].replace("_", "-"), *args)
    return getattr(obj or Device(), handler.__name__)(Req(msg, conn), msg)


def test_request_return_reply():
    reply = call(Device.request_scale, 3, 0.5)
    assert reply.mtype == Message.REPLY and reply.name == "scale"
    assert reply.arguments == [b"ok", b"xxx", b"1.5"]


def test_name_and_doc_kept():
    assert Device.request_scale.__name__ == "request_scale"
    assert Device.request_scale.__doc__ == "?scale count gain -> text, product"
    assert Device.request_async_double.__doc__ == "Native coroutine handler."


def test_bad_argument_names_parameter():
    with pytest.raises(FailReply) as err:
        call(Device.request_scale, 3, "abc")
    assert str(err.value) == "Error in parameter 2 (gain): Could not parse value 'abc' as float."
    with pytest.raises(FailReply, match=r"^Error in parameter 1 \(count\): Integer 0 is lower"):
        call(Device.request_scale, 0, 1.0)
    with pytest.raises(FailReply, match="^Too many parameters given.$"):
        call(Device.request_scale, 1, 1.0, 3)
    with pytest.raises(FailReply, match=r"^Error in parameter 2 \(gain\): No value"):
        call(Device.request_scale, 1)


def test_include_msg_and_order():
    assert call(Device.request_echo_mid, 7).arguments == [b"ok", b"7"]
    with pytest.raises(FailReply, match=r"parameter 1 \(value\)"):
        call(Device.request_echo_mid, "x")


def test_fail_tuple():
    assert call(Device.request_fail, "broken").arguments == [b"fail", b"broken"]


def test_major_default_and_explicit_connection():
    assert call(Device.request_later, b"1.5").arguments == [b"ok", b"2.500000"]
    # The connection's protocol flags pick v4 (integer milliseconds).
    assert call(Device.request_later, b"1500", conn=Connection(4)).arguments == [b"ok", b"2500"]
    assert call(Device.request_later, b"1.5", conn=Connection(5)).arguments == \
        [b"ok", b"2.500000"]


def test_major_from_server_protocol_info():
    assert call(Device.request_later, b"1500", obj=DeviceV4()).arguments == [b"ok", b"2500"]


def test_major_option_fixed():
    class Fixed:
        PROTOCOL_INFO = ProtocolFlags(5, 0, "")

        @request(Timestamp(), major=4)
        @return_reply(Timestamp(), major=4)
        def request_t(self, req, when):
            """fixed v4"""
            return ("ok", when)

    msg = Message.request("t", b"1500")
    assert Fixed().request_t(Req(msg), msg).arguments == [b"ok", b"1500"]


def test_unknown_options_rejected():
    with pytest.raises(TypeError, match="does not take keyword"):
        request(Int(), bogus=True)
    with pytest.raises(TypeError, match="does not take keyword"):
        return_reply(Int(), bogus=True)


def test_return_reply_needs_request_name():
    with pytest.raises(ValueError, match="request_"):
        @return_reply(Int())
        def handler(self, req):
            return ("ok", 1)


def test_bad_return_value_is_error():
    class Bad:
        @return_reply(Int())
        def request_bad(self, req, msg):
            """returns nonsense"""
            return ("ok", "not an int")

    with pytest.raises(ValueError, match="Could not encode value 'not an int' as integer"):
        Bad().request_bad(None, Message.request("bad"))


def test_markers_survive_stacking():
    handler = Device.request_marked
    assert handler._concurrent_reply is True
    assert handler.request_timeout_hint == 2.5
    assert handler._minimum_katcp_version == (5, 1)
    assert handler._has_katcp_protocol_flags == [ProtocolFlags.MULTI_CLIENT]
    assert call(Device.request_marked).arguments == [b"ok"]


@run_async
async def test_coroutine_handlers():
    result = call(Device.request_async_double, 21)
    assert asyncio.iscoroutine(result)
    reply = await result
    assert reply.name == "async-double" and reply.arguments == [b"ok", b"42"]
    reply = await call(Device.request_async_outer, 1)
    assert reply.arguments == [b"ok", b"2"]
    with pytest.raises(FailReply, match="negative"):
        await call(Device.request_async_outer, -1)
    # Argument errors are raised at once, before a coroutine is even made.
    with pytest.raises(FailReply, match=r"parameter 1 \(value\)"):
        call(Device.request_async_double, "x")
    with pytest.raises(FailReply, match=r"parameter 1 \(value\)"):
        call(Device.request_async_outer, "x")


@run_async
async def test_future_handlers():
    fut = call(Device.request_gen_triple, 5)
    assert asyncio.isfuture(fut)
    assert (await fut).arguments == [b"ok", b"15"]
    fut = call(Device.request_future, 4)
    assert asyncio.isfuture(fut)
    assert (await fut).arguments == [b"ok", b"40"]


def test_concurrent_future_handler():
    fut = call(Device.request_thread_future, 4)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=1).arguments == [b"ok", b"3"]


@run_async
async def test_async_make_reply_propagates_errors():
    loop = asyncio.get_running_loop()
    src = loop.create_future()
    out = async_make_reply("x", (Int(),), src, 5)
    src.set_exception(FailReply("nope"))
    with pytest.raises(FailReply, match="nope"):
        await out
    src = loop.create_future()
    out = async_make_reply("x", (Int(),), src, 5)
    src.set_result(("ok", "bad"))
    with pytest.raises(ValueError, match="as integer"):
        await out
    src = loop.create_future()
    out = async_make_reply("x", (Int(),), src, 5)
    out.cancel()
    await asyncio.sleep(0)
    assert src.cancelled()


def test_inform_and_unpack_message():
    seen = []

    class Client:
        @inform(Int(), Str())
        def inform_thing(self, count, label):
            seen.append((count, label))

        @unpack_message(Str(), Int(), include_msg=True)
        def reply_thing(self, msg, status, count):
            seen.append((msg.name, status, count))

    Client().inform_thing(Message.inform("thing", 3, "abc"))
    Client().reply_thing(Message.reply("thing", "ok", 4))
    assert seen == [(3, "abc"), ("thing", "ok", 4)]
    with pytest.raises(FailReply, match=r"parameter 1 \(count\)"):
        Client().inform_thing(Message.inform("thing", "x", "abc"))


def test_inform_major_from_client_protocol_flags():
    seen = []

    class Client:
        protocol_flags = ProtocolFlags(4, 0, "")

        @inform(Timestamp())
        def inform_tick(self, when):
            seen.append(when)

    Client().inform_tick(Message.inform("tick", b"2500"))
    assert seen == [pytest.approx(2.5)]


def test_send_reply():
    class Dev:
        @send_reply(Int(), Float())
        def my_callback(self, req):
            return (req, "ok", 5, 2.0)

    req = Req(Message.request("thing", mid=7))
    assert Dev().my_callback(req) is None
    (reply,) = req.sent
    assert reply.name == "thing" and reply.arguments == [b"ok", b"5", b"2.0"]


def test_device_metaclass_collects_decorated_handlers():
    from katcp.core import DeviceMetaclass

    class Server(metaclass=DeviceMetaclass):
        @request(Int())
        @return_reply(Int())
        def request_add_one(self, req, value):
            """Add one."""
            return ("ok", value + 1)

    handler = Server._request_handlers["add-one"]
    msg = Message.request("add-one", 1)
    assert handler(Server(), Req(msg), msg).arguments == [b"ok", b"2"]


def test_module_exports_decorators():
    for name in ("request", "return_reply", "inform", "send_reply", "concurrent_reply",
                 "request_timeout_hint", "minimum_katcp_version", "has_katcp_protocol_flags",
                 "make_reply", "async_make_reply", "unpack_message", "unpack_types",
                 "pack_types"):
        assert name in kattypes.__all__ and callable(getattr(kattypes, name))
    assert "request" in dir(kattypes)


# ---------------------------------------------------------------------------
# End to end: decorated handlers in a real server over loopback
# ---------------------------------------------------------------------------

def _make_server_class(protocol_info):
    from katcp.server import AsyncDeviceServer

    class Dev(AsyncDeviceServer):
        VERSION_INFO = ("kattypes-test", 1, 0)
        BUILD_INFO = ("kattypes-test", 1, 0, "")
        PROTOCOL_INFO = protocol_info

        def setup_sensors(self):
            pass

        @request(Int(), Float())
        @return_reply(Str())
        def request_scale(self, req, count, gain):
            """Scale."""
            return ("ok", f"{count * gain:g}")

        @request(Timestamp())
        @return_reply(Timestamp())
        def request_later(self, req, when):
            """when + 1 s."""
            return ("ok", when + 1.0)

        @request(Int())
        @return_reply(Int())
        async def request_double(self, req, value):
            """Coroutine handler."""
            await asyncio.sleep(0)
            return ("ok", 2 * value)

    return Dev


async def _exchange(protocol_info, lines, n_replies):
    server = _make_server_class(protocol_info)("127.0.0.1", 0)
    await server.start()
    try:
        host, port = server.bind_address
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"".join(line + b"\n" for line in lines))
        await writer.drain()
        replies = []
        while len(replies) < n_replies:
            line = await asyncio.wait_for(reader.readline(), 3)
            assert line, "server closed the connection"
            if line.startswith(b"!"):
                replies.append(line.rstrip(b"\n"))
        writer.close()
        return replies
    finally:
        stopped = server.stop()
        if isinstance(stopped, concurrent.futures.Future):
            stopped = asyncio.wrap_future(stopped)
        if inspect.isawaitable(stopped):
            await asyncio.wait_for(stopped, 3)


@run_async
async def test_server_v5_end_to_end():
    replies = await _exchange(ProtocolFlags(5, 0, "MI"), [
        b"?scale[1] 3 abc", b"?scale[2] 3 0.5", b"?double[3] 21", b"?double[4] q",
        b"?later[5] 1.5", b"?scale[6] 1 2 3",
    ], 6)
    assert replies == [
        rb"!scale[1] fail Error\_in\_parameter\_2\_(gain):\_Could\_not\_parse\_value"
        rb"\_'abc'\_as\_float.",
        b"!scale[2] ok 1.5",
        b"!double[3] ok 42",
        rb"!double[4] fail Error\_in\_parameter\_1\_(value):\_Could\_not\_parse\_value"
        rb"\_'q'\_as\_integer.",
        b"!later[5] ok 2.500000",
        rb"!scale[6] fail Too\_many\_parameters\_given.",
    ]


@run_async
async def test_server_v4_uses_milliseconds():
    replies = await _exchange(ProtocolFlags(4, 0, ""), [b"?later 1500"], 1)
    assert replies == [b"!later ok 2500"]


@run_async
async def test_async_make_reply_from_another_thread():
    loop = asyncio.get_running_loop()
    src = loop.create_future()
    out = await loop.run_in_executor(None, async_make_reply, "x", (Int(),), src, 5)
    src.set_result(("ok", 9))
    assert (await out).arguments == [b"ok", b"9"]


# ---------------------------------------------------------------------------
# Differential test against the real katcp-python 0.9.3
# ---------------------------------------------------------------------------

def test_matches_katcp_python_093():
    """Same corpus of pack/unpack/Sensor operations, same results as katcp 0.9.3.

    Deliberate differences are not in the corpus: error texts (0.9.3 leaks
    ``b'...'`` reprs), v4 timestamps that are not whole milliseconds (we
    round, 0.9.3 truncates: ``1.005 s`` is ``1005`` ms, not ``1004``), and
    values of the wrong type for a sensor (we raise ValueError, 0.9.3 stores
    them).
    """
    import json
    import os
    import subprocess

    import _kattypes_corpus
    from peers import katcp093_env, katcp093_python

    python = katcp093_python()
    proc = subprocess.run([python, os.path.abspath(_kattypes_corpus.__file__)], cwd="/",
                          env=katcp093_env(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    theirs = json.loads(proc.stdout)
    ours = _kattypes_corpus.run()
    assert len(ours) == len(theirs) > 1500
    differences = [(label, mine, peer) for (label, mine), (_, peer) in zip(ours, theirs)
                   if mine != peer]
    assert differences == []
