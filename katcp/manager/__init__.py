"""The katcp manager: a fleet of KATCP devices and NCP nodes behind one KATCP endpoint.

* :mod:`katcp.manager.config` -- the fleet TOML file (shared with the exporter).
"""

from .config import (
    DeviceSpec,
    ManagerConfig,
    load_devices,
    load_manager_config,
    load_toml,
    parse_address,
)

__all__ = [
    "DeviceSpec",
    "ManagerConfig",
    "load_devices",
    "load_manager_config",
    "load_toml",
    "parse_address",
]
