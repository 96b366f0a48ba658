"""Corpus of kattypes/Sensor operations run by both our katcp and katcp-python 0.9.3.

``run()`` returns a list of ``[label, outcome]`` where outcome is ``repr`` of the
result or ``"ERR"``; it must run unchanged under either library (the test runs
it in-process for ours and in a katcp 0.9.3 virtualenv for the peer).
Cases where we deliberately differ from katcp-python are left out (see
test_kattypes.test_matches_katcp_python_093).
"""


def run():
    from katcp.core import Sensor
    from katcp.kattypes import (
        Address,
        Bool,
        Discrete,
        DiscreteMulti,
        Float,
        Int,
        Lru,
        Str,
        StrictTimestamp,
        Struct,
        Timestamp,
        TimestampOrNow,
    )

    out = []

    def record(label, fn, *args):
        try:
            result = fn(*args)
        except Exception:
            out.append([label, "ERR"])
        else:
            out.append([label, "NOW" if result is TimestampOrNow.NOW else repr(result)])

    types = {
        "int": Int(), "int_range": Int(min=-5, max=5), "float": Float(),
        "float_range": Float(min=0.5, max=2.5), "bool": Bool(), "str": Str(),
        "discrete": Discrete(["on", "off"]), "discrete_ci": Discrete(["on"], case_insensitive=True),
        "multi": DiscreteMulti(["a", "B", "c"]), "lru": Lru(), "address": Address(),
        "timestamp": Timestamp(), "ts_or_now": TimestampOrNow(), "strict": StrictTimestamp(),
        "struct": Struct(">hI"), "int_default": Int(default=3), "str_optional": Str(optional=True),
    }
    raw_inputs = [b"0", b"1", b"-3", b"7", b"1.5", b"1e3", b"abc", b"", b"on", b"ON", b"off",
                  b"a,c", b"all", b"B,a", b"nominal", b"error", b"127.0.0.1:7147",
                  b"[::1]:80", b"[fe80::1]", b"host", b"::1", b"now", b"1500", b"-1.5",
                  b"1.2.3", b"\x00\x01\x00\x00\x00\x02", None]
    for name, kattype in sorted(types.items()):
        for raw in raw_inputs:
            for major in (4, 5):
                record(f"unpack {name} {raw!r} v{major}", kattype.unpack, raw, major)
    values = [0, 1, -3, 7, 1.5, 0.1, 1e300, True, False, "on", "abc", b"raw", None,
              ("127.0.0.1", 7147), ("::1", 80), ("host", None), ["a", "c"], (1, 2),
              1234.5, 1500]
    for name, kattype in sorted(types.items()):
        for value in values:
            for major in (4, 5):
                record(f"pack {name} {value!r} v{major}", kattype.pack, value, False, major)

    record("pack NOW", lambda: TimestampOrNow().pack(TimestampOrNow.NOW))

    sensors = [
        ("integer", Sensor.integer("s.int", "d", "u", [0, 10]), [3, -4, 0]),
        ("float", Sensor.float("s.float", "d", "u", [-1.0, 1.0]), [0.25, 1e-9, -7.0]),
        ("boolean", Sensor.boolean("s.bool"), [True, False]),
        ("lru", Sensor.lru("s.lru"), [Sensor.LRU_ERROR, Sensor.LRU_NOMINAL]),
        ("discrete", Sensor.discrete("s.disc", params=["x", "y z"]), ["y z", "x"]),
        ("string", Sensor.string("s.str"), ["hello world", ""]),
        ("timestamp", Sensor.timestamp("s.ts"), [1500000000.25, 0.5]),
        ("address", Sensor.address("s.addr"), [("10.0.0.1", 80), ("::1", 7147),
                                               ("h", None)]),
    ]
    for name, sensor, svalues in sensors:
        record(f"sensor {name} meta", lambda s: (s.name, s.description, s.units, s.stype,
                                                 s.params, s.formatted_params, s.value(),
                                                 s.status()), sensor)
        for value in svalues:
            for status in (Sensor.NOMINAL, Sensor.WARN, Sensor.INACTIVE):
                sensor.set_value(value, status, 1600000000.125)
                for major in (4, 5):
                    record(f"sensor {name} {value!r} {status} v{major}",
                           sensor.read_formatted, major)
                    formatted = sensor.read_formatted(major)
                    record(f"sensor {name} parse {value!r} v{major}",
                           sensor.parse_value, formatted[2], major)
    for type_name in ["integer", "float", "boolean", "lru", "discrete", "string",
                      "timestamp", "address", "bogus"]:
        record(f"parse_type {type_name}", Sensor.parse_type, type_name)
    record("parse_params int", lambda: Sensor.parse_params(Sensor.INTEGER, [b"1", b"5"]))
    record("parse_params float", lambda: Sensor.parse_params(Sensor.FLOAT, [b"1", b"5.5"]))
    record("parse_params discrete", lambda: Sensor.parse_params(Sensor.DISCRETE, [b"a"]))
    record("statuses", lambda: sorted(Sensor.STATUSES.items()))
    record("status names raw", lambda: sorted(Sensor.STATUS_NAMES_RAW.items()))
    record("type lookup", lambda: sorted(Sensor.SENSOR_TYPE_LOOKUP.items()))
    return out


if __name__ == "__main__":
    import json
    import sys

    json.dump(run(), sys.stdout)
