"""Tests for katcp.resource: names, replies, readings, KATCPSensor and requests."""

import asyncio

import pytest
import tornado.gen

from katcp.core import Message, Sensor
from katcp.resource import (
    KATCPDummyRequest,
    KATCPReply,
    KATCPRequest,
    KATCPResource,
    KATCPResourceError,
    KATCPResourceInactive,
    KATCPSensor,
    KATCPSensorError,
    KATCPSensorReading,
    KATCPSensorsManager,
    SensorResultTuple,
    escape_name,
    normalize_strategy_parameters,
)


def run(coro, timeout=5):
    async def main():
        return await asyncio.wait_for(tornado.gen.convert_yielded(coro()), timeout)

    return asyncio.run(main())


class MemorySensorsManager(KATCPSensorsManager):
    """In-memory sensors manager: strategies in a dict, polls from a value table."""

    def __init__(self, resource_name="dev"):
        self.resource_name = resource_name
        self.strategies = {}
        self.sent = []
        self.poll_values = {}
        self.sensors = {}
        self.clock = 1000.0

    def time(self):
        return self.clock

    def get_sampling_strategy(self, sensor_name):
        return self.strategies.get(sensor_name, ("none",))

    def set_sampling_strategy(self, sensor_name, strategy_and_parms):
        strategy = normalize_strategy_parameters(strategy_and_parms)
        self.strategies[sensor_name] = strategy
        self.sent.append((sensor_name, strategy))
        f = tornado.concurrent.Future()
        f.set_result({sensor_name: (True, strategy)})
        return f

    def drop_sampling_strategy(self, sensor_name):
        self.strategies.pop(sensor_name, None)

    @tornado.gen.coroutine
    def poll_sensor(self, sensor_name):
        ts, status, value = self.poll_values[sensor_name]
        self.sensors[sensor_name].set_formatted(ts, status, value, 5)

    @tornado.gen.coroutine
    def reapply_sampling_strategies(self):
        for name, strategy in self.strategies.items():
            self.sent.append((name, strategy))

    def make_sensor(self, name, sensor_type=Sensor.INTEGER, params=None, units="", desc="d"):
        s = KATCPSensor(dict(name=name, sensor_type=sensor_type, description=desc,
                             units=units, params=params), self)
        self.sensors[name] = s
        return s


class MemoryResource(KATCPResource):
    def __init__(self, manager):
        super().__init__()
        self._manager = manager
        self._sensors = {escape_name(n): s for n, s in manager.sensors.items()}

    name = "mem"
    address = ("127.0.0.1", 0)
    is_connected = True
    req = {}
    parent = None
    children = {}

    @property
    def sensor(self):
        return self._sensors

    @tornado.gen.coroutine
    def list_sensors(self, filter="", strategy=False, status="",
                     use_python_identifiers=True, tuple=False, refresh=False):
        import re

        return [SensorResultTuple(s, s.name, k, s.description, s.type, s.units, s.reading)
                for k, s in sorted(self._sensors.items()) if re.search(filter, k)]


def test_escape_name():
    assert escape_name("a.b-c_d") == "a_b_c_d"
    assert escape_name(b"x-y") == "x_y"
    assert escape_name("plain") == "plain"


@pytest.mark.parametrize("given, expected", [
    ("none", ("none",)),
    ("period 1", ("period", "1.0")),
    (("period", 0.5), ("period", "0.5")),
    (["differential", "2"], ("differential", "2.0")),
    ("event-rate 1 5", ("event-rate", "1.0", "5.0")),
    (b"event", ("event",)),
])
def test_normalize_strategy_parameters(given, expected):
    assert normalize_strategy_parameters(given) == expected


def test_exceptions_hierarchy():
    assert issubclass(KATCPResourceInactive, KATCPResourceError)
    assert issubclass(KATCPSensorError, KATCPResourceError)


def test_reply_truthiness_and_messages():
    req = Message.request("foo", mid=4)
    ok = KATCPReply(Message.reply_to_request(req, "ok", 3), [Message.inform("foo", "x")])
    fail = KATCPReply(Message.reply_to_request(req, "fail", "bad"), [])
    assert ok and ok.succeeded
    assert not fail and not fail.succeeded
    assert ok.messages[0] is ok.reply and len(ok.messages) == 2
    assert str(ok) == "!foo[4] ok 3\n#foo x" and repr(ok) == "!foo ok 3\n#foo x"
    assert ok.reply is ok[0] and ok.informs is ok[1]


def test_sensor_reading_status():
    r = KATCPSensorReading(1.0, 2.0, Sensor.WARN, 5)
    assert r.status == "warn"
    assert r.istatus == 2 and r.value == 5
    assert KATCPSensorReading(0, 0, Sensor.UNKNOWN, None).status == "unknown"


def test_sensor_properties_and_parsing():
    m = MemorySensorsManager("dev1")
    s = m.make_sensor("pump.speed-rpm", Sensor.FLOAT, [0.0, 100.0], units="rpm", desc="Speed")
    assert s.name == "pump.speed-rpm"
    assert s.normalised_name == "pump_speed_rpm"
    assert s.parent_name == "dev1"
    assert s.units == "rpm" and s.description == "Speed"
    assert s.type == "float"
    assert s.value is None and s.status == "unknown"
    assert s.sampling_strategy == ("none",)
    s.set_formatted(b"1234.5", b"warn", b"2.5", 5)
    assert s.reading == KATCPSensorReading(1000.0, 1234.5, Sensor.WARN, 2.5)
    assert s.value == 2.5 and s.status == "warn"
    s.set_formatted(b"1234500", b"nominal", b"3", 4)  # v4: milliseconds
    assert s.reading.timestamp == pytest.approx(1234.5)
    with pytest.raises(ValueError):
        s.set_formatted(b"1", b"bogus-status", b"3", 5)
    assert s.parse_value(b"7.25") == 7.25


def test_sensor_set_value_defaults():
    m = MemorySensorsManager()
    s = m.make_sensor("a")
    s.set_value(5)
    assert s.reading == KATCPSensorReading(1000.0, 1000.0, Sensor.NOMINAL, 5)
    s.set_value(6, status=Sensor.ERROR, timestamp=12.0)
    assert s.reading == KATCPSensorReading(1000.0, 12.0, Sensor.ERROR, 6)


def test_listeners_signatures_and_errors(caplog):
    m = MemorySensorsManager()
    s = m.make_sensor("a")
    plain, full = [], []

    def plain_listener(received, ts, status, value):
        plain.append((received, ts, status, value))

    class Obj:
        def on_reading(self, sensor, reading):
            full.append((sensor, reading))

    obj = Obj()

    def bad(*args):
        raise RuntimeError("listener boom")

    s.register_listener(plain_listener)
    s.register_listener(obj.on_reading, reading=True)
    s.register_listener(bad)
    assert s.is_listener(plain_listener) and s.is_listener(obj.on_reading)
    s.set(10.0, Sensor.NOMINAL, 3)
    assert plain == [(1000.0, 10.0, "nominal", 3)]
    assert full == [(s, KATCPSensorReading(1000.0, 10.0, Sensor.NOMINAL, 3))]
    assert "listener boom" in caplog.text
    s.unregister_listener(obj.on_reading)  # a fresh bound method object
    assert not s.is_listener(obj.on_reading)
    s.unregister_listener(obj.on_reading)  # no error when absent
    s.clear_listeners()
    s.set(11.0, Sensor.NOMINAL, 4)
    assert len(plain) == 1


def test_strategies_via_manager():
    m = MemorySensorsManager()
    s = m.make_sensor("a")

    async def main():
        result = await s.set_strategy("period", 2)
        assert result == {"a": (True, ("period", "2.0"))}
        assert s.sampling_strategy == ("period", "2.0")
        await s.set_strategy("event-rate", "1 5")
        assert s.sampling_strategy == ("event-rate", "1.0", "5.0")
        await s.set_strategy("differential", [0.5])
        assert s.sampling_strategy == ("differential", "0.5")
        await s.set_sampling_strategy("auto")
        assert s.sampling_strategy == ("auto",)
        await s.set_strategy("none")
        assert s.sampling_strategy == ("none",)
        s.drop_sampling_strategy()
        assert "a" not in m.strategies

    run(main)


def test_get_value_reading_status():
    m = MemorySensorsManager()
    s = m.make_sensor("a")
    m.poll_values["a"] = (b"5.0", b"error", b"42")

    async def main():
        assert await s.get_value() == 42
        assert await s.get_status() == "error"
        r = await s.get_reading()
        assert r.timestamp == 5.0 and r.istatus == Sensor.ERROR and r.value == 42

    run(main)


def test_wait_requires_strategy():
    m = MemorySensorsManager()
    s = m.make_sensor("a")

    async def main():
        with pytest.raises(KATCPSensorError):
            s.wait(3)

    run(main)


def test_wait_value_predicate_sequence_and_timeout():
    m = MemorySensorsManager()
    s = m.make_sensor("a")
    m.strategies["a"] = ("event",)

    async def main():
        loop = asyncio.get_running_loop()
        # Already satisfied.
        s.set_value(1)
        assert await s.wait(1, timeout=1) is True
        # Satisfied by a later update.
        f = s.wait(5, timeout=1)
        loop.call_soon(s.set_value, 4)
        loop.call_later(0.01, s.set_value, 5)
        assert await f is True
        # Predicate on the reading.
        f = s.wait(lambda r: r.value > 10 and r.status == "warn", timeout=1)
        loop.call_soon(s.set_value, 11)
        loop.call_later(0.01, s.set_value, 12, Sensor.WARN)
        assert await f is True
        # A sequence must be satisfied in order.
        f = s.wait([20, 21], timeout=1)
        loop.call_soon(s.set_value, 21)
        loop.call_later(0.01, s.set_value, 20)
        loop.call_later(0.02, s.set_value, 21)
        assert await f is True
        # Timeout, and the listener is removed afterwards.
        with pytest.raises(tornado.gen.TimeoutError):
            await s.wait(99, timeout=0.05)
        assert len(s._listeners) == 0
        # A failing predicate propagates its exception.
        f = s.wait(lambda r: 1 / 0, timeout=1)
        with pytest.raises(ZeroDivisionError):
            await f
        assert len(s._listeners) == 0

    run(main)


def test_resource_wait_and_strategies():
    m = MemorySensorsManager()
    m.make_sensor("a.x")
    m.make_sensor("b")
    res = MemoryResource(m)

    async def main():
        with pytest.raises(KATCPSensorError):
            await res.wait("nonexistent", 1)
        result = await res.set_sampling_strategy("a.x", "event")
        assert result == {"a_x": (True, ("event",))}
        assert await res.wait("a.x", 3, timeout=0.05) is False
        loop = asyncio.get_running_loop()
        loop.call_soon(m.sensors["a.x"].set_value, 3)
        assert await res.wait("a_x", 3, timeout=1) is True
        result = await res.set_sampling_strategies(".", "period 1")
        assert result == {"a_x": (True, ("period", "1.0")), "b": (True, ("period", "1.0"))}
        missing = await res.set_sampling_strategy("zzz", "event")
        assert missing["zzz"][0] is False

    run(main)


def test_resource_active_flag():
    res = MemoryResource(MemorySensorsManager())
    assert res.is_active()
    res.set_active(False)
    assert not res.is_active()


class EchoRequest(KATCPRequest):
    def issue_request(self, *args, **kwargs):
        return ("issued", args, kwargs)


def test_request_properties_and_inactive():
    active = [True]
    req = EchoRequest({"name": "do-it", "description": "?do-it x\nDo it.",
                       "timeout_hint": 12.0}, is_active=lambda: active[0])
    assert req.name == "do-it"
    assert req.description.startswith("?do-it")
    assert req.__doc__ == req.description
    assert req.timeout_hint == 12.0
    assert req(1, timeout=3) == ("issued", (1,), {"timeout": 3})
    active[0] = False
    with pytest.raises(KATCPResourceInactive):
        req(1)
    assert EchoRequest({"name": "x", "description": ""}).timeout_hint is None


def test_dummy_request():
    req = KATCPDummyRequest({"name": "anything", "description": "dummy"})

    async def main():
        reply = await req(1, 2)
        assert isinstance(reply, KATCPReply)
        assert reply.succeeded and reply.informs == []
        assert reply.reply.name == "anything"

    run(main)
