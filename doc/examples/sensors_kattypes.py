"""Sensors and KATCP types, without any network: create, set, read, observe, format, parse."""

from katcp import Sensor
from katcp.kattypes import Address, Bool, Discrete, Float, Int, Timestamp, unpack_types

# --- KATCP types: Python value <-> KATCP argument (bytes) -------------------
gain = Float(min=0.0, max=10.0)
print(gain.pack(2.5), gain.unpack(b"7.25"))
print(Int().pack(42), Bool().pack(True), Bool().unpack(b"0"))
print(Discrete(("idle", "observe")).unpack(b"observe"))
print(Address().unpack(b"192.168.1.10:7147"), Timestamp().pack(1.5))
for kattype, raw in [(gain, b"11"), (Int(), b"4.5"), (Discrete(("idle", "observe")), b"run")]:
    try:
        kattype.unpack(raw)
    except ValueError as exc:               # out of range or unparsable
        print("ValueError:", exc)
# A missing optional argument unpacks to its default.
print(unpack_types([Int(), Float(default=1.0)], [b"3"], ["count", "scale"], 5))

# --- Sensors ---------------------------------------------------------------
temperature = Sensor.float("temperature", "Receiver temperature", "degC",
                           params=[-20.0, 80.0], default=21.0,
                           initial_status=Sensor.NOMINAL)
mode = Sensor.discrete("mode", "Operating mode", "", ["idle", "observe"], default="idle",
                       initial_status=Sensor.NOMINAL)
print(temperature.name, temperature.stype, temperature.units, temperature.params)
print(temperature.read())                   # Reading(timestamp, status, value)

# Observers are told about every set(); a sampling strategy is one such observer.
class Printer:
    def update(self, sensor, reading):
        print(f"  observer: {sensor.name} -> {reading.value!r} "
              f"({Sensor.STATUSES[reading.status]})")

printer = Printer()
temperature.attach(printer)
temperature.set_value(25.5)                              # status NOMINAL, timestamp now
temperature.set_value(75.0, status=Sensor.WARN)          # explicit status
temperature.set(1700000000.0, Sensor.ERROR, 85.0)        # explicit timestamp too
temperature.detach(printer)
temperature.set_value(30.0)                              # nobody is told now
print(temperature.value(), Sensor.STATUSES[temperature.status()])

# The wire form of a reading, as ?sensor-value and #sensor-status send it.
print(temperature.format_reading(temperature.read())[1:])   # (status, value) as bytes
print(mode.read_formatted()[1:])

# Parse values received from a device (e.g. in a client).
print(temperature.parse_value(b"12.5"), mode.parse_value(b"observe"))
try:
    mode.set_value("sleeping")                            # not one of the discrete values
except ValueError as exc:
    print("ValueError:", exc)
