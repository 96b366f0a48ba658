"""Tests for katcp.sensor.Sensor and Reading."""

import gc
import math
import tracemalloc
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import katcp._protocol.sensor as sensor_module
from katcp.core import KatcpSyntaxError, KatcpTypeError
from katcp.sensor import Reading, Sensor

FEW = settings(max_examples=60, deadline=None)


@pytest.fixture
def clock(monkeypatch):
    """Replace the sensor wall clock with a settable one."""
    state = {"t": 1_000_000.25}
    monkeypatch.setattr(sensor_module, "now", lambda: state["t"])
    return state


class Recorder:
    def __init__(self):
        self.updates = []

    def update(self, sensor, reading):
        self.updates.append((sensor, reading))


# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

def test_constants():
    assert (Sensor.INTEGER, Sensor.FLOAT, Sensor.BOOLEAN, Sensor.LRU, Sensor.DISCRETE,
            Sensor.STRING, Sensor.TIMESTAMP, Sensor.ADDRESS) == tuple(range(8))
    assert (Sensor.UNKNOWN, Sensor.NOMINAL, Sensor.WARN, Sensor.ERROR, Sensor.FAILURE,
            Sensor.UNREACHABLE, Sensor.INACTIVE) == tuple(range(7))
    assert Sensor.STATUSES == {0: "unknown", 1: "nominal", 2: "warn", 3: "error",
                               4: "failure", 5: "unreachable", 6: "inactive"}
    assert Sensor.STATUSES_RAW[Sensor.WARN] == b"warn"
    assert Sensor.STATUS_NAMES["failure"] == Sensor.FAILURE
    assert Sensor.STATUS_NAMES_RAW[b"inactive"] == Sensor.INACTIVE
    assert Sensor.SENSOR_TYPE_LOOKUP == {"integer": 0, "float": 1, "boolean": 2, "lru": 3,
                                         "discrete": 4, "string": 5, "timestamp": 6,
                                         "address": 7}
    assert Sensor.LRU_VALUES == {0: b"nominal", 1: b"error"}
    assert Sensor.LRU_CONSTANTS == {b"nominal": 0, b"error": 1}
    assert Sensor.SENSOR_SHORTCUTS[float] == Sensor.FLOAT
    assert set(Sensor.SENSOR_TYPES) == set(range(8))


def test_reading_namedtuple():
    r = Reading(1.5, Sensor.NOMINAL, 3)
    assert r.timestamp == 1.5 and r.status == 1 and r.value == 3
    assert tuple(r) == (1.5, 1, 3)
    assert not hasattr(r, "__dict__")


# ---------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("factory, default, stype", [
    (Sensor.integer, 0, "integer"),
    (Sensor.float, 0.0, "float"),
    (Sensor.boolean, False, "boolean"),
    (Sensor.lru, Sensor.LRU_NOMINAL, "lru"),
    (Sensor.string, "", "string"),
    (Sensor.timestamp, 0.0, "timestamp"),
    (Sensor.address, ("0.0.0.0", None), "address"),
])
def test_constructor_defaults(clock, factory, default, stype):
    s = factory("dev.thing")
    assert s.name == "dev.thing"
    assert s.stype == s.type == stype
    assert s.read() == (clock["t"], Sensor.UNKNOWN, default)
    assert s.value() == default and s.status() == Sensor.UNKNOWN
    assert s.units == ""
    assert s.params == [] and s.formatted_params == []
    assert s.description == f"{stype.capitalize()} sensor 'dev.thing' with no unit"


def test_discrete_constructor():
    s = Sensor.discrete("mode", "Operating mode", "", ["idle", "run"])
    assert s.value() == "idle"
    assert s.params == ["idle", "run"]
    assert s.formatted_params == [b"idle", b"run"]
    assert s.description == "Operating mode"
    s = Sensor.discrete("mode", params=[b"a", b"b"], default="b", initial_status=Sensor.WARN)
    assert s.read()[1:] == (Sensor.WARN, "b")
    with pytest.raises(ValueError, match="at least one"):
        Sensor.discrete("mode")
    with pytest.raises(ValueError, match="Invalid value 'c'"):
        Sensor.discrete("mode", params=["a"], default="c")


def test_range_params_and_defaults():
    s = Sensor.integer("i", "desc", "V", [5, 10])
    assert s.value() == 5 and s.units == "V"
    assert s.formatted_params == [b"5", b"10"]
    assert s.description == "desc"
    assert Sensor.integer("i", params=[-5, 5]).value() == 0
    f = Sensor.float("f", params=[1.5, 2.5], default=2.0)
    assert f.value() == 2.0 and f.formatted_params == [b"1.5", b"2.5"]
    assert Sensor.float("f", params=[1, 2]).value() == 1
    assert Sensor.integer("x", unit="m").description == "Integer sensor 'x' in unit m"
    assert Sensor.integer("i", params=[1]).value() == 0   # ignored, as katcp-python does


def test_generic_constructor_and_shortcuts():
    s = Sensor(int, "a", "b", "c", default=3, initial_status=Sensor.NOMINAL)
    assert s.stype == "integer" and s.read()[1:] == (Sensor.NOMINAL, 3)
    assert Sensor(float, "f").stype == "float"
    assert Sensor(str, "s").stype == "string"
    assert Sensor(bool, "b").stype == "boolean"
    assert Sensor(Sensor.ADDRESS, b"addr").name == "addr"
    with pytest.raises(ValueError, match="Invalid sensor type"):
        Sensor(99, "x")
    with pytest.raises(ValueError, match="Invalid initial status"):
        Sensor.integer("x", initial_status=9)
    with pytest.raises(ValueError, match="Units cannot be specified"):
        Sensor.timestamp("t", unit="s")


def test_repr_and_slots():
    s = Sensor.integer("abc")
    assert "name='abc'" in repr(s)
    assert not hasattr(s, "__dict__")
    s.description = "new"
    assert s.description == "new"


def test_deprecated_attributes_warn():
    s = Sensor.integer("x", default=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert s._value == 4
        assert s._status == Sensor.UNKNOWN
    assert all(issubclass(w.category, DeprecationWarning) for w in caught)
    assert len(caught) == 2


# ---------------------------------------------------------------------------
# Setting values
# ---------------------------------------------------------------------------

GOOD = [
    (Sensor.integer, 42, 42),
    (Sensor.integer, True, True),
    (Sensor.float, 1.25, 1.25),
    (Sensor.float, 3, 3.0),
    (Sensor.boolean, True, True),
    (Sensor.boolean, 0, False),
    (Sensor.lru, Sensor.LRU_ERROR, Sensor.LRU_ERROR),
    (Sensor.string, "text", "text"),
    (Sensor.string, b"raw", b"raw"),
    (Sensor.timestamp, 12345, 12345.0),
    (Sensor.address, ("1.2.3.4", 80), ("1.2.3.4", 80)),
    (Sensor.address, ["::1", None], ("::1", None)),
]


@pytest.mark.parametrize("factory, value, stored", GOOD)
def test_set_value_good(clock, factory, value, stored):
    s = factory("s")
    rec = Recorder()
    s.attach(rec)
    clock["t"] = 2000.5
    s.set_value(value)
    assert s.read() == (2000.5, Sensor.NOMINAL, stored)
    assert isinstance(s.read(), Reading)
    assert rec.updates == [(s, s.read())]


BAD = [
    (Sensor.integer, 1.5),
    (Sensor.integer, "3"),
    (Sensor.integer, None),
    (Sensor.float, "1.0"),
    (Sensor.float, None),
    (Sensor.boolean, 2),
    (Sensor.boolean, "yes"),
    (Sensor.lru, 2),
    (Sensor.lru, "nominal"),
    (Sensor.string, 5),
    (Sensor.timestamp, "now"),
    (Sensor.address, "1.2.3.4:80"),
    (Sensor.address, ("1.2.3.4", "80")),
    (Sensor.address, ("1.2.3.4", 70000)),
]


@pytest.mark.parametrize("factory, value", BAD)
def test_set_value_bad_leaves_sensor_unchanged(factory, value):
    s = factory("dev.s")
    rec = Recorder()
    s.attach(rec)
    before = s.read()
    with pytest.raises(ValueError) as err:
        s.set_value(value)
    assert "'dev.s'" in str(err.value) and repr(value) in str(err.value)
    assert s.read() is before
    assert rec.updates == []
    with pytest.raises(ValueError):
        s.set(1.0, Sensor.NOMINAL, value)
    assert s.read() is before


def test_discrete_set_value():
    s = Sensor.discrete("d", params=["on", "off"])
    s.set_value("off", Sensor.WARN, timestamp=5.0)
    assert s.read() == (5.0, Sensor.WARN, "off")
    s.set_value(b"on")
    assert s.value() == "on"
    with pytest.raises(ValueError, match=r"Invalid value 'maybe' for discrete sensor 'd': "
                                         r"expected one of \['on', 'off'\]"):
        s.set_value("maybe")
    with pytest.raises(ValueError):
        s.set_value(["on"])
    assert s.value() == "on"


def test_bad_status_and_timestamp():
    s = Sensor.integer("x")
    before = s.read()
    with pytest.raises(ValueError, match="Invalid status 7"):
        s.set_value(1, status=7)
    with pytest.raises(ValueError, match="Invalid status 'nominal'"):
        s.set_value(1, status="nominal")
    with pytest.raises(ValueError, match="Invalid timestamp"):
        s.set_value(1, timestamp="yesterday")
    with pytest.raises(ValueError, match="Invalid timestamp"):
        s.set("yesterday", Sensor.NOMINAL, 1)
    assert s.read() is before


def test_set_explicit(clock):
    s = Sensor.float("f")
    s.set(12.5, Sensor.ERROR, 2.5)
    assert s.read() == Reading(12.5, Sensor.ERROR, 2.5)
    s.set_value(1.0, Sensor.WARN, 99.0)
    assert s.read() == (99.0, Sensor.WARN, 1.0)


# ---------------------------------------------------------------------------
# Observers
# ---------------------------------------------------------------------------

def test_observers():
    s = Sensor.integer("x")
    a, b = Recorder(), Recorder()
    s.attach(a)
    s.attach(a)
    s.attach(b)
    s.set_value(1)
    assert len(a.updates) == 1 and len(b.updates) == 1
    s.detach(a)
    s.detach(a)   # no error
    s.set_value(2)
    assert len(a.updates) == 1 and len(b.updates) == 2
    s.notify(Reading(1.0, Sensor.WARN, 7))
    assert b.updates[-1] == (s, (1.0, Sensor.WARN, 7))


def test_observer_detaching_during_notify():
    s = Sensor.integer("x")
    calls = []

    class SelfRemoving:
        def update(self, sensor, reading):
            calls.append("self")
            sensor.detach(self)

    later = Recorder()
    s.attach(SelfRemoving())
    s.attach(later)
    s.set_value(1)
    s.set_value(2)
    assert calls == ["self"]
    assert [r.value for _, r in later.updates] == [1, 2]


# ---------------------------------------------------------------------------
# Formatting and parsing
# ---------------------------------------------------------------------------

FORMATTED = [
    (Sensor.integer, {}, -7, b"-7"),
    (Sensor.float, {}, 0.1, b"0.1"),
    (Sensor.boolean, {}, True, b"1"),
    (Sensor.lru, {}, Sensor.LRU_ERROR, b"error"),
    (Sensor.discrete, {"params": ["a b", "c"]}, "a b", b"a b"),
    (Sensor.string, {}, "héllo", "héllo".encode()),
    (Sensor.timestamp, {}, 1234.5, None),
    (Sensor.address, {}, ("::1", 7147), b"[::1]:7147"),
    (Sensor.address, {}, ("10.0.0.1", None), b"10.0.0.1"),
]


@pytest.mark.parametrize("factory, kwargs, value, packed", FORMATTED)
@pytest.mark.parametrize("major", [4, 5])
def test_read_formatted_and_back(factory, kwargs, value, packed, major):
    s = factory("s", **kwargs)
    s.set_value(value, Sensor.WARN, 1234.5)
    ts, status, raw = s.read_formatted(major)
    assert ts == (b"1234.500000" if major == 5 else b"1234500")
    assert status == b"warn"
    if packed is None:   # timestamp sensors follow the major version too
        packed = b"1234.500000" if major == 5 else b"1234500"
    assert raw == packed
    assert s.format_reading(s.read(), major) == (ts, status, raw)
    other = factory("t", **kwargs)
    other.set_formatted(ts, status, raw, major)
    assert other.read() == (pytest.approx(1234.5), Sensor.WARN,
                            pytest.approx(value) if factory is Sensor.timestamp else value)


def test_set_formatted_errors():
    s = Sensor.integer("x")
    before = s.read()
    with pytest.raises(ValueError, match="as timestamp"):
        s.set_formatted(b"never", b"nominal", b"1")
    with pytest.raises(ValueError, match="Invalid status b'fine'"):
        s.set_formatted(b"1.0", b"fine", b"1")
    with pytest.raises(ValueError, match="as integer"):
        s.set_formatted(b"1.0", b"nominal", b"one")
    assert s.read() is before


def test_parse_value():
    assert Sensor.integer("x").parse_value(b"12") == 12
    assert Sensor.timestamp("t").parse_value(b"1500", 4) == pytest.approx(1.5)
    assert Sensor.address("a").parse_value(b"[::1]:80") == ("::1", 80)
    assert Sensor.discrete("d", params=["x"]).parse_value(b"x") == "x"
    with pytest.raises(ValueError):
        Sensor.discrete("d", params=["x"]).parse_value(b"y")
    with pytest.raises(KatcpTypeError, match="must be bytes"):
        Sensor.integer("x").parse_value("12")


def test_parse_type_and_params():
    assert Sensor.parse_type("discrete") == Sensor.DISCRETE
    assert Sensor.parse_type(b"address") == Sensor.ADDRESS
    with pytest.raises(KatcpSyntaxError, match="Invalid sensor type string bogus"):
        Sensor.parse_type("bogus")
    assert Sensor.parse_params(Sensor.INTEGER, [b"1", b"10"]) == [1, 10]
    assert Sensor.parse_params(Sensor.FLOAT, [b"-1.5", b"2"]) == [-1.5, 2.0]
    assert Sensor.parse_params(Sensor.DISCRETE, [b"on", b"off"]) == ["on", "off"]
    assert Sensor.parse_params(Sensor.STRING, []) == []


# ---------------------------------------------------------------------------
# Hypothesis round trips through the wire format
# ---------------------------------------------------------------------------

VALUES = st.one_of(
    st.tuples(st.just(Sensor.INTEGER), st.integers(-2**63, 2**63)),
    st.tuples(st.just(Sensor.FLOAT), st.floats(allow_nan=False)),
    st.tuples(st.just(Sensor.BOOLEAN), st.booleans()),
    st.tuples(st.just(Sensor.LRU), st.sampled_from([0, 1])),
    st.tuples(st.just(Sensor.STRING), st.text()),
    st.tuples(st.just(Sensor.ADDRESS),
              st.tuples(st.ip_addresses().map(str), st.one_of(st.none(),
                                                               st.integers(0, 65535)))),
)


@FEW
@given(VALUES, st.sampled_from(list(Sensor.STATUSES)), st.sampled_from([4, 5]),
       st.integers(0, 2**41))
def test_wire_round_trip(type_value, status, major, ms):
    stype, value = type_value
    timestamp = ms / 1000.0
    s = Sensor(stype, "src")
    s.set_value(value, status, timestamp)
    formatted = s.read_formatted(major)
    d = Sensor(stype, "dst")
    d.set_formatted(*formatted, major=major)
    ts, st_, val = d.read()
    assert st_ == status and val == value
    assert math.isclose(ts, timestamp, abs_tol=1e-6)
    assert d.read_formatted(major) == formatted


@FEW
@given(st.lists(st.text(min_size=1), min_size=1, max_size=8, unique=True), st.data())
def test_discrete_round_trip(values, data):
    value = data.draw(st.sampled_from(values))
    s = Sensor.discrete("d", params=values)
    s.set_value(value)
    d = Sensor.discrete("d", params=values)
    d.set_formatted(*s.read_formatted())
    assert d.value() == value


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------

def test_memory_per_sensor():
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        sensors = [Sensor.float(f"device.subsystem.sensor-{i:05d}",
                                f"Temperature of sensor {i}", "degC") for i in range(2000)]
        for s in sensors:
            s.set_value(1.5)
        per_sensor = (tracemalloc.get_traced_memory()[0] - start) / len(sensors)
    finally:
        tracemalloc.stop()
    # The whole budget including server bookkeeping is 900 bytes.
    assert per_sensor < 600, per_sensor


def test_name_and_units_must_be_text():
    with pytest.raises(TypeError, match="must be str"):
        Sensor.integer(None)
    with pytest.raises(TypeError, match="must be str"):
        Sensor.integer("x", unit=5)


def test_discrete_sensors_share_their_type():
    a = Sensor.discrete("a", params=["ok", "fail"])
    b = Sensor.discrete("b", params=[b"ok", b"fail"], default="fail")
    c = Sensor.discrete("c", params=["ok", "other"])
    assert a._kattype is b._kattype and a._kattype is not c._kattype
    b.set_value("ok")
    assert a.value() == "ok" and b.value() == "ok"
    with pytest.raises(ValueError):
        c.set_value("fail")
    # Changing params of one sensor does not affect the others.
    a.params = ["ok", "fail", "unknown"]
    a.set_value("unknown")
    assert a.params == ["ok", "fail", "unknown"]
    assert a.formatted_params == [b"ok", b"fail", b"unknown"]
    with pytest.raises(ValueError):
        b.set_value("unknown")
    assert b.params == ["ok", "fail"]
    with pytest.raises(ValueError, match="at least one"):
        a.params = []


def test_range_params_setter():
    s = Sensor.integer("i")
    s.params = [0, 5]
    assert s.params == [0, 5] and s.formatted_params == [b"0", b"5"]
    s.params = []
    assert s.params == [] and s.formatted_params == []


def test_memory_per_discrete_sensor():
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        sensors = [Sensor.discrete(f"device.subsystem.mode-{i:05d}", f"Mode of unit {i}", "",
                                   ["idle", "running", "error"]) for i in range(2000)]
        for s in sensors:
            s.set_value("running")
        per_sensor = (tracemalloc.get_traced_memory()[0] - start) / len(sensors)
    finally:
        tracemalloc.stop()
    assert per_sensor < 600, per_sensor
