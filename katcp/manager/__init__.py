"""The katcp manager: a fleet of KATCP devices and NCP nodes behind one KATCP endpoint.

The implementation is split by job:

* :mod:`katcp.manager.config` -- the fleet TOML file (shared with the exporter);
* :mod:`katcp.manager.server` -- :class:`ManagerServer`: routing ``<device>-<request>``,
  publishing ``<device>.<sensor>``, ``?help``, locks, and the server's TLS and login
  (:func:`~katcp.manager.server.security_options`);
* :mod:`katcp.manager.device` -- the contract between the server and its devices;
* :mod:`katcp.manager.katcp_device` -- KATCP devices, mirrored by an inspecting client;
* :mod:`katcp.manager.ncp_device` -- NCP nodes: the NCP-to-KATCP gateway;
* :mod:`katcp.manager.locks` -- the lock table and its ``katcp.audit`` lines;
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
from .locks import LockError, LockTable, audit_lock
from .ncp_device import NcpDevice
from .register import DeviceRegistration, RegisteredDevice, register_device
from .server import ManagerServer, security_options

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
    "audit_lock",
    "load_devices",
    "load_manager_config",
    "load_toml",
    "parse_address",
    "register_device",
    "security_options",
]
