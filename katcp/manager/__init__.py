"""The katcp manager: a fleet of KATCP devices and NCP nodes behind one KATCP endpoint.

The implementation is split by job:

* :mod:`katcp.manager.config` -- the fleet TOML file (shared with the exporter);
* :mod:`katcp.manager.server` -- :class:`ManagerServer`: routing ``<device>-<request>``,
  publishing ``<device>.<sensor>``, ``?help``, locks and the authorization hook;
* :mod:`katcp.manager.device` -- the contract between the server and its devices;
* :mod:`katcp.manager.katcp_device` -- KATCP devices, mirrored by an inspecting client;
* :mod:`katcp.manager.ncp_device` -- NCP nodes: the NCP-to-KATCP gateway;
* :mod:`katcp.manager.locks` -- the lock table and the ``katcp.audit`` log lines;
* :mod:`katcp.manager.register` -- devices that dial in and register themselves;
* :mod:`katcp.manager.cli` -- the ``katcp-manager`` command.
"""

from .config import (
    DeviceSpec,
    ManagerConfig,
    load_devices,
    load_manager_config,
    load_toml,
    parse_address,
)
from .device import DeviceOwner, ProxiedDevice
from .katcp_device import KatcpDevice
from .locks import LockError, LockTable, audit
from .ncp_device import NcpDevice
from .register import DeviceRegistration, RegisteredDevice, register_device
from .server import ManagerServer, SecurityNotAvailable, install_security

__all__ = [
    "DeviceOwner",
    "DeviceRegistration",
    "DeviceSpec",
    "KatcpDevice",
    "LockError",
    "LockTable",
    "ManagerConfig",
    "ManagerServer",
    "NcpDevice",
    "ProxiedDevice",
    "RegisteredDevice",
    "SecurityNotAvailable",
    "audit",
    "install_security",
    "load_devices",
    "load_manager_config",
    "load_toml",
    "parse_address",
    "register_device",
]
