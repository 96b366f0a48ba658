"""Sensor updates through the manager: the device's bytes are parsed once and passed on.

Over real loopback sockets: a device sends ``#sensor-status`` lines formatted its own way;
the manager's clients get the same bytes under the manager's name (for every strategy, for
``?sensor-value`` and for new subscribers), while the proxy sensor holds the parsed reading
that the strategies compare.  Readings the manager makes itself (``unreachable``) and
readings from a device of another KATCP version are formatted anew.
"""

import pytest
from manager_support import (
    LineClient,
    Receiver,
    katcp_spec,
    run,
    running_manager,
    start_device,
    stop_device,
    until,
)

from katcp.core import Message, Sensor
from katcp.manager.katcp_device import _ProxySensor


class _Talker(Receiver):
    """The test device, with a string sensor too."""

    def setup_sensors(self):
        super().setup_sensors()
        self.words = Sensor.string("words", "Some words", "", default="",
                                   initial_status=Sensor.NOMINAL)
        self.add_sensor(self.words)


def _say(device, *args):
    """Send a ``#sensor-status`` of the device's own making to its clients (the manager)."""
    device.mass_inform(Message.inform("sensor-status", *args))


def test_device_bytes_reach_every_client_under_the_manager_name():
    async def main():
        rx1 = await start_device(_Talker)
        async with running_manager({"rx1": katcp_spec("rx1", rx1.bind_address[1])}) as mgr:
            await until(lambda: mgr.has_sensor("rx1.temp") and mgr.has_sensor("rx1.words"))
            event = await LineClient.connect(mgr.bind_address[1])
            diff = await LineClient.connect(mgr.bind_address[1])
            await event.request("sensor-sampling rx1.temp,rx1.words event")
            await diff.request("sensor-sampling rx1.temp differential 1")
            assert (await event.wait_for("#sensor-status")).endswith("rx1.temp nominal 20.0")
            assert (await event.wait_for("#sensor-status")).endswith("rx1.words nominal \\@")
            assert (await diff.wait_for("#sensor-status")).endswith("rx1.temp nominal 20.0")
            # Not as our servers format them (%.6f, shortest float): the device's own bytes.
            _say(rx1, "1234567890.5", "1", "temp", "warn", "77.250")
            expected = "#sensor-status 1234567890.5 1 rx1.temp warn 77.250"
            assert await event.wait_for("#sensor-status") == expected
            assert await diff.wait_for("#sensor-status") == expected
            temp = mgr.get_sensor("rx1.temp")
            assert temp.read() == (1234567890.5, Sensor.WARN, 77.25)
            assert (await event.request("sensor-value rx1.temp"))[1] == [
                "#sensor-value 1234567890.5 1 rx1.temp warn 77.250"]
            # A new subscriber's first report is the current reading: the same bytes.
            late = await LineClient.connect(mgr.bind_address[1])
            await late.request("sensor-sampling rx1.temp event")
            assert await late.wait_for("#sensor-status") == expected
            # Arguments are escaped again on the way out.
            _say(rx1, "1234567891.25", "1", "words", "nominal", "two words\\")
            assert await event.wait_for("#sensor-status") == (
                "#sensor-status 1234567891.25 1 rx1.words nominal two\\_words\\\\")
            assert mgr.get_sensor("rx1.words").value() == "two words\\"
            # The strategies compare parsed values: 0.5 is below the difference of 1.
            _say(rx1, "1234567892.0", "1", "temp", "warn", "77.75")
            assert await event.wait_for("#sensor-status") == (
                "#sensor-status 1234567892.0 1 rx1.temp warn 77.75")
            _say(rx1, "1234567893.0", "1", "temp", "warn", "79e0")
            assert await event.wait_for("#sensor-status") == (
                "#sensor-status 1234567893.0 1 rx1.temp warn 79e0")
            assert await diff.wait_for("#sensor-status") == (
                "#sensor-status 1234567893.0 1 rx1.temp warn 79e0")
            # An update the device formats as we do, through its sensor.
            rx1.temp.set(1234567894.0, Sensor.NOMINAL, 81.5)
            assert await diff.wait_for("#sensor-status") == (
                "#sensor-status 1234567894.000000 1 rx1.temp nominal 81.5")
            # A value that does not parse changes nothing and is passed on to nobody.
            _say(rx1, "1234567895.0", "1", "temp", "warn", "hot")
            _say(rx1, "1234567896.0", "1", "temp", "error", "90")
            assert await event.wait_for("#sensor-status") == (
                "#sensor-status 1234567894.000000 1 rx1.temp nominal 81.5")
            assert await event.wait_for("#sensor-status") == (
                "#sensor-status 1234567896.0 1 rx1.temp error 90")
            assert temp.read() == (1234567896.0, Sensor.ERROR, 90.0)
            # Bytes that int() and float() take but no one writes are not passed on.
            _say(rx1, " 1234567897.5", "1", "temp", "warn", "1_000")
            assert await event.wait_for("#sensor-status") == (
                "#sensor-status 1234567897.500000 1 rx1.temp warn 1000.0")
            _say(rx1, "1234567897.75", "1", "temp", "warn", "77.75 ")
            assert await event.wait_for("#sensor-status") == (
                "#sensor-status 1234567897.750000 1 rx1.temp warn 77.75")
            # The manager's own reading (the device went away) is formatted by the manager.
            await stop_device(rx1)
            line = await event.wait_for("#sensor-status")
            assert line.endswith(" 1 rx1.temp unreachable 77.75"), line
            assert line.split()[1] != "1234567896.0"
            for c in (event, diff, late):
                await c.close()

    run(main)


@pytest.mark.parametrize("sensor_type,params,raw", [
    (Sensor.INTEGER, [0, 10], b"7"), (Sensor.FLOAT, [], b"2.50"), (Sensor.BOOLEAN, [], b"1"),
    (Sensor.DISCRETE, ["on", "off"], b"off"), (Sensor.STRING, [], b"a b"),
    (Sensor.TIMESTAMP, [], b"12.5"), (Sensor.LRU, [], b"error"),
    (Sensor.ADDRESS, [], b"127.0.0.1:7147"),
])
def test_proxy_sensor_formats_from_the_device_bytes_only_for_their_reading(
        sensor_type, params, raw):
    sensor = _ProxySensor(sensor_type, "dev.x", "", "", params)
    plain = Sensor(sensor_type, "dev.x", "", "", params)
    sensor.set_formatted(b"1234567890.5", b"warn", raw, 5)
    plain.set_formatted(b"1234567890.5", b"warn", raw, 5)
    assert sensor.read() == plain.read()
    formatted = sensor.format_reading(sensor.read(), 5)
    if sensor_type == Sensor.ADDRESS:
        # The validator copies the value: formatted anew, and correctly.
        assert formatted == plain.format_reading(plain.read(), 5)
    else:
        assert formatted == (b"1234567890.5", b"warn", raw)
    # Another major version, an equal reading that is not the one parsed, a later reading:
    # formatted anew.
    assert sensor.format_reading(sensor.read(), 4) == plain.format_reading(plain.read(), 4)
    timestamp, status, value = sensor.read()
    equal = type(sensor.read())(float(b"1234567890.5"), status, value)
    assert equal == sensor.read()
    assert sensor.format_reading(equal, 5)[0] == b"1234567890.500000"
    sensor.set(1234567891.0, Sensor.NOMINAL, sensor.value())
    assert sensor.read_formatted(5)[:2] == (b"1234567891.000000", b"nominal")


@pytest.mark.parametrize("raw_timestamp,raw_value", [
    (b" 12.5", b"7"), (b"12.5\t", b"7"), (b"1_2.5", b"7"), (b"12.5", b"7 "), (b"12.5", b"1_0"),
])
def test_proxy_sensor_formats_odd_device_bytes_anew(raw_timestamp, raw_value):
    sensor = _ProxySensor(Sensor.INTEGER, "dev.x", "", "", [])
    sensor.set_formatted(raw_timestamp, b"nominal", raw_value, 5)
    timestamp, _, value = sensor.read()
    assert sensor.read_formatted(5) == (b"%.6f" % timestamp, b"nominal", b"%d" % value)


def test_proxy_sensor_of_a_v4_device_formats_v5_timestamps():
    sensor = _ProxySensor(Sensor.INTEGER, "dev.x", "", "", [])
    sensor.set_formatted(b"1234567890500", b"nominal", b"3", 4)
    assert sensor.read() == (1234567890.5, Sensor.NOMINAL, 3)
    assert sensor.read_formatted(5) == (b"1234567890.500000", b"nominal", b"3")
    assert sensor.read_formatted(4) == (b"1234567890500", b"nominal", b"3")
    with pytest.raises(ValueError):
        sensor.set_formatted(b"1.0", b"fine", b"1", 5)
    with pytest.raises(ValueError):
        sensor.set_formatted(b"1.0", b"nominal", b"one", 5)
    assert sensor.read_formatted(4) == (b"1234567890500", b"nominal", b"3")
