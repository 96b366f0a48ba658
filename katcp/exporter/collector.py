"""The ``prometheus_client`` collector: metric families built at scrape time from device state.

Nothing is done per sensor update on the prometheus_client side: a scrape walks the devices'
readings (see :mod:`katcp.exporter.state` for why that needs no lock) and yields

=====================================  ======================================================
``katcp_sensor_value``                 gauge: integer, float, boolean (0/1) and timestamp
                                       sensors
``katcp_sensor_state``                 state set: discrete and LRU sensors, one series per
                                       allowed value (1 for the current one, else 0)
``katcp_sensor_info``                  info: string and address sensors, the text in the
                                       ``value`` label
``katcp_sensor_status``                gauge: numeric KATCP status (0 unknown, 1 nominal,
                                       2 warn, 3 error, 4 failure, 5 unreachable, 6 inactive)
``katcp_sensor_timestamp_seconds``     gauge: the reading's own timestamp (Unix seconds)
``katcp_device_connected``             gauge per device: 1 while connected
``katcp_device_synced``                gauge per device: 1 once its sensors are subscribed
``katcp_device_sensors``               gauge per device: sensors exported
``katcp_sensor_updates_total``         counter per device: sensor updates received
=====================================  ======================================================

Sensor series carry the labels ``device`` and ``sensor``; metric names are fixed, and label
values may hold any text (prometheus_client escapes them), so no sensor name can make the
exposition invalid.
"""

from __future__ import annotations

import gc
import threading
from typing import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.samples import Sample

from .state import INFO, NUMBER, STATESET, DeviceState

__all__ = ["FleetCollector", "SENSOR_LABELS", "ScrapeRegistry"]

SENSOR_LABELS = ("device", "sensor")


class FleetCollector:
    """Collector of the sensors of a fixed set of devices (register it in a registry).

    Parameters
    ----------
    devices : sequence of DeviceState
        The devices to export, in the order their series appear.
    """

    def __init__(self, devices: Sequence[DeviceState]) -> None:
        self._devices = tuple(devices)

    @property
    def devices(self) -> Sequence[DeviceState]:
        """The exported devices."""
        return self._devices

    def collect(self) -> Iterator[Metric]:
        """Build and yield the metric families (called by prometheus_client per scrape)."""
        labels = list(SENSOR_LABELS)
        value = GaugeMetricFamily(
            "katcp_sensor_value", "Value of a numeric KATCP sensor (booleans as 0/1)",
            labels=labels)
        state = StateSetMetricFamily(
            "katcp_sensor_state", "Value of a discrete KATCP sensor", labels=labels)
        info = InfoMetricFamily("katcp_sensor", "Value of a string KATCP sensor", labels=labels)
        status = GaugeMetricFamily(
            "katcp_sensor_status",
            "KATCP sensor status: 0 unknown, 1 nominal, 2 warn, 3 error, 4 failure, "
            "5 unreachable, 6 inactive", labels=labels)
        stamp = GaugeMetricFamily(
            "katcp_sensor_timestamp_seconds", "Timestamp of the sensor reading (Unix time)",
            labels=labels)
        connected = GaugeMetricFamily(
            "katcp_device_connected", "1 while the exporter is connected to the device",
            labels=["device"])
        synced = GaugeMetricFamily(
            "katcp_device_synced", "1 once the device's sensors are listed and subscribed",
            labels=["device"])
        count = GaugeMetricFamily(
            "katcp_device_sensors", "Number of the device's sensors exported",
            labels=["device"])
        updates = CounterMetricFamily(
            "katcp_sensor_updates", "Sensor updates received from the device",
            labels=["device"])
        # Samples are appended directly: add_metric() would rebuild each label dict, and
        # the metas hold them ready-made.
        add_value = value.samples.append
        add_state = state.samples.append
        add_info = info.samples.append
        add_status = status.samples.append
        add_stamp = stamp.samples.append
        for dev in self._devices:
            dev_labels = dev.labels
            readings = list(dev.readings.values())  # one atomic copy: see katcp.exporter.state
            connected.samples.append(
                Sample("katcp_device_connected", dev_labels, 1.0 if dev.connected else 0.0))
            synced.samples.append(
                Sample("katcp_device_synced", dev_labels, 1.0 if dev.synced else 0.0))
            count.samples.append(Sample("katcp_device_sensors", dev_labels, len(readings)))
            updates.samples.append(Sample("katcp_sensor_updates_total", dev_labels, dev.updates))
            for meta, val, st, ts in readings:
                lab = meta.labels
                add_status(Sample("katcp_sensor_status", lab, st))
                if ts is not None:
                    add_stamp(Sample("katcp_sensor_timestamp_seconds", lab, ts))
                if val is None:
                    continue
                kind = meta.kind
                if kind is NUMBER:
                    add_value(Sample("katcp_sensor_value", lab, float(val)))
                elif kind is STATESET:
                    for allowed, state_labels in meta.states:
                        add_state(Sample("katcp_sensor_state", state_labels,
                                         1.0 if allowed == val else 0.0))
                elif kind is INFO:
                    add_info(Sample("katcp_sensor_info",
                                    {"device": lab["device"], "sensor": lab["sensor"],
                                     "value": str(val)}, 1.0))
        families: Iterable[Metric] = (
            connected, synced, count, updates, value, state, info, status, stamp)
        yield from families


class _GcPause:
    """Pauses the cyclic garbage collector while at least one scrape is being formatted.

    A scrape of 100,000 sensors allocates some 400,000 samples that all survive until the
    text is built, so the collector would run full collections over the whole heap during
    it: seconds of CPU, all holding the GIL, during which the event loop is frozen too.
    Samples hold no reference cycles and are freed by reference counting, so nothing is
    lost by pausing; cyclic garbage of the loop thread waits a few seconds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._was_enabled:
                gc.enable()


_GC_PAUSE = _GcPause()


class ScrapeRegistry(CollectorRegistry):
    """A :class:`prometheus_client.CollectorRegistry` that pauses the cyclic GC per scrape.

    prometheus_client formats each family as :meth:`collect` yields it, so the pause covers
    the whole scrape: it starts with the first family and ends when the last has been
    formatted (or the scrape fails).  Concurrent scrapes share one pause.
    """

    def __init__(self) -> None:
        super().__init__(auto_describe=False)

    def collect(self) -> Iterator[Metric]:
        """Yield every registered collector's metrics, with the cyclic GC paused."""
        with _GC_PAUSE:
            yield from super().collect()
