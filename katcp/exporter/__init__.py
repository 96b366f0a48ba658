"""Fleet monitoring: a Prometheus / OpenMetrics exporter of KATCP and NCP sensors.

The exporter watches many devices from one event loop and serves their sensors at
``/metrics`` with ``prometheus_client`` (``katcp-exporter``, :mod:`katcp.tools.exporter`).
One module per job:

* :mod:`katcp.exporter.targets` -- what to watch: devices, sensor globs, strategies;
* :mod:`katcp.exporter.settings` -- the configuration file (the manager's device syntax,
  parsed by :mod:`katcp.manager.config`, plus the ``[exporter]`` table);
* :mod:`katcp.exporter.shard` -- rendezvous hashing of devices over N exporters;
* :mod:`katcp.exporter.state` -- per-device state shared by the loop and the HTTP thread,
  with each series' line of the exposition kept ready;
* :mod:`katcp.exporter.exposition` -- the text of those lines, as prometheus_client writes it;
* :mod:`katcp.exporter.katcp_watcher` / :mod:`katcp.exporter.ncp_watcher` -- one device;
* :mod:`katcp.exporter.collector` -- the metric families, and the fast render of them all;
* :mod:`katcp.exporter.endpoint` -- the HTTP endpoint (prometheus_client's WSGI app);
* :mod:`katcp.exporter.progress` -- the sync progress line on a terminal;
* :mod:`katcp.exporter.service` -- the :class:`Exporter` tying them together.
"""

from .collector import FleetCollector
from .service import DEFAULT_PORT, Exporter
from .shard import ShardError, parse_shard, select, shard_of
from .state import DeviceState
from .targets import DEFAULT_STRATEGY, SensorRules, Target, targets_for_ports

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_STRATEGY",
    "DeviceState",
    "Exporter",
    "FleetCollector",
    "SensorRules",
    "ShardError",
    "Target",
    "parse_shard",
    "select",
    "shard_of",
    "targets_for_ports",
]
