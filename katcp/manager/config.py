"""The fleet configuration file: one TOML parser shared by the manager and the exporter.

A fleet file has an optional ``[manager]`` table (the manager's own listen address, TLS,
user store and audit log) and a ``[devices]`` table with one sub-table per device::

    [manager]
    listen = "127.0.0.1:7147"

    [devices.rx1]
    katcp = "127.0.0.1:7150"
    sensors = ["temp*", "lo.*"]
    strategy = "event-rate 1 10"

    [devices.node1]
    ncp = "127.0.0.1:9999"
    user = "operator"
    password_env = "NODE1_PASSWORD"
    fields = ["DSPC.GPS", "NODE.STAT"]

A device name becomes the prefix of KATCP request names (``rx1-...``) and sensor names
(``rx1.``...), so it must be a valid KATCP name part: an ASCII letter followed by letters,
digits or ``-``.  Names with ``_`` or ``.`` are rejected (not silently mapped) so that the name
an operator types is the name in the config.

Passwords are never kept in a ``repr`` nor logged.  ``password_env`` names an environment
variable that is read when the file is loaded, so that the secret need not live in the file.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Tuple

from katcp.security import client_context, server_context

if sys.version_info >= (3, 11):
    import tomllib as _toml
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as _toml

__all__ = [
    "DEVICE_KINDS",
    "DEFAULT_LISTEN",
    "DeviceSpec",
    "ManagerConfig",
    "STRATEGY_NAMES",
    "load_devices",
    "load_manager_config",
    "load_toml",
    "manager_config_from_dict",
    "parse_address",
    "valid_device_name",
]

logger = logging.getLogger(__name__)

#: The kinds of device a fleet may hold, and the config key that gives each one's address.
DEVICE_KINDS = ("katcp", "ncp")

#: Sampling strategy names accepted in a device's ``strategy`` key.
STRATEGY_NAMES = frozenset(
    ["none", "auto", "period", "event", "differential", "event-rate", "differential-rate"]
)

#: Where the manager listens when the config does not say.
DEFAULT_LISTEN = "127.0.0.1:7147"

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*\Z")

_DEVICE_KEYS = frozenset(
    [
        "katcp",
        "ncp",
        "tls",
        "cafile",
        "certfile",
        "keyfile",
        "insecure",
        "user",
        "username",
        "password",
        "password_env",
        "sensors",
        "strategy",
        "fields",
    ]
)


def valid_device_name(name: str) -> bool:
    """Return whether `name` can prefix KATCP request and sensor names.

    Parameters
    ----------
    name : str
        Candidate device name.

    Returns
    -------
    bool
        True for an ASCII letter followed by letters, digits or ``-``.
    """
    return bool(_NAME_RE.match(name))


@dataclass(frozen=True)
class DeviceSpec:
    """One device of the fleet, as the config file describes it.

    Attributes
    ----------
    name : str
        The ``[devices.NAME]`` key.
    kind : str
        ``"katcp"`` or ``"ncp"``.
    host, port : str, int
        Where the device listens.
    tls, cafile, certfile, keyfile, insecure
        TLS towards the device (see :meth:`client_ssl_context`).
    username, password : str or None
        Credentials (``user``/``username``, ``password``/``password_env``); the password is
        left out of ``repr``.
    sensors : tuple of str
        Glob patterns of the sensors to use; empty means all.
    strategy : tuple of str or None
        Sampling strategy and parameters, e.g. ``("event-rate", "1", "10")``.
    fields : tuple of str
        NCP only: the ``PACKETTYPE.FIELD`` names the node accepts (e.g. ``"DSPC.GPS"``).
    """

    name: str
    kind: str
    host: str
    port: int
    tls: bool = False
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sensors: Tuple[str, ...] = ()
    strategy: Tuple[str, ...] | None = None
    fields: Tuple[str, ...] = ()

    def client_ssl_context(self) -> ssl.SSLContext | None:
        """Build the TLS context used to dial this device.

        Returns
        -------
        ssl.SSLContext or None
            None when ``tls`` is false.  Otherwise a client context
            (:func:`katcp.security.client_context`: TLS 1.2 or later) that verifies the
            device against ``cafile`` (or the system store), presents
            ``certfile``/``keyfile`` when given, and checks nothing when ``insecure`` is
            true (a warning is logged).
        """
        if not self.tls:
            return None
        if self.insecure:
            logger.warning("device %r: insecure = true: its certificate is not checked",
                           self.name)
        return client_context(cafile=self.cafile, certfile=self.certfile,
                              keyfile=self.keyfile, insecure=self.insecure)


@dataclass(frozen=True)
class ManagerConfig:
    """The manager's own settings plus the fleet.

    Attributes
    ----------
    listen : tuple of (str, int)
        Address the manager listens on (``""`` host means every interface).
    tls_cert, tls_key, tls_client_ca : str or None
        TLS on the listen socket: certificate chain, key, and the CA that client certificates
        must chain to (when given, clients must present one).
    users : str or None
        Path of the user store (``katcp-admin user add``); None means no login (everyone
        may do everything).
    login_timeout : float or None
        With ``users``: seconds a client may stay connected without logging in (default
        60; ``login_timeout = 0`` in the file means no limit).
    audit_log : str or None
        Path of the audit log file (the ``katcp.audit`` lines are appended to it).
    register : tuple of (str, int) or None
        Address where devices may dial in and register (``register = "host:port"``); None:
        no registration port.
    devices : dict of str to DeviceSpec
        The fleet.
    """

    listen: Tuple[str, int] = ("127.0.0.1", 7147)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    users: str | None = None
    login_timeout: float | None = 60.0
    audit_log: str | None = None
    register: Tuple[str, int] | None = None
    devices: Dict[str, DeviceSpec] = field(default_factory=dict)

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """Build the TLS context of the listen socket, or None without ``tls_cert``.

        With ``tls_client_ca`` every client must present a certificate signed by it
        (:func:`katcp.security.server_context`).
        """
        if not self.tls_cert:
            if self.tls_client_ca:
                raise ValueError("[manager]: 'tls_client_ca' needs 'tls_cert' and 'tls_key'")
            return None
        return server_context(self.tls_cert, self.tls_key, client_ca=self.tls_client_ca)


def parse_address(text: str, default_port: int | None = None) -> Tuple[str, int]:
    """Split ``"host:port"`` into its parts.

    Parameters
    ----------
    text : str
        ``"host:port"``, ``"[::1]:7147"``, ``":7147"`` (empty host: every interface) or, when
        `default_port` is given, a bare ``"host"``/``"[::1]"``.
    default_port : int, optional
        Port used when `text` has none.

    Returns
    -------
    tuple of (str, int)
        Host (without brackets) and port.

    Raises
    ------
    ValueError
        On a missing or invalid port, or a malformed IPv6 literal.
    """
    if not isinstance(text, str):
        raise ValueError(f"address must be a string, not {type(text).__name__}")
    text = text.strip()
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad address {text!r}: unclosed '['")
        host = text[1:end]
        rest = text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: expected ':' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError(f"bad address {text!r}: write IPv6 addresses as [addr]:port")
    else:
        host, port_text = text, None
    if port_text is None or port_text == "":
        if default_port is None:
            raise ValueError(f"bad address {text!r}: no port")
        return host, int(default_port)
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad address {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"bad address {text!r}: port {port} out of range")
    return host, port


def _string_tuple(device: str, key: str, value: Any) -> Tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"device {device!r}: {key!r} must be a string or a list of strings")


def _optional_str(device: str, entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"device {device!r}: {key!r} must be a string")


def _bool(device: str, entry: Mapping[str, Any], key: str) -> bool:
    value = entry.get(key, False)
    if isinstance(value, bool):
        return value
    raise ValueError(f"device {device!r}: {key!r} must be true or false")


def _load_device(name: str, entry: Any) -> DeviceSpec:
    if not isinstance(name, str) or not valid_device_name(name):
        raise ValueError(
            f"device {name!r}: a device name must be a letter followed by letters, digits "
            "or '-' (it prefixes KATCP request and sensor names)"
        )
    if not isinstance(entry, Mapping):
        raise ValueError(f"device {name!r}: expected a table, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _DEVICE_KEYS)
    if unknown:
        # Other tools (the exporter) may add their own keys, so this is not an error.
        logger.warning("device %r: ignoring unknown key(s) %s", name, ", ".join(unknown))
    kinds = [kind for kind in DEVICE_KINDS if kind in entry]
    if len(kinds) != 1:
        raise ValueError(
            f"device {name!r}: give exactly one of 'katcp = \"host:port\"' or "
            f"'ncp = \"host:port\"'"
        )
    kind = kinds[0]
    try:
        host, port = parse_address(entry[kind])
    except ValueError as error:
        raise ValueError(f"device {name!r}: {error}") from None
    if not host:
        raise ValueError(f"device {name!r}: address {entry[kind]!r} has no host")
    username = _optional_str(name, entry, "user") or _optional_str(name, entry, "username")
    password = _optional_str(name, entry, "password")
    password_env = _optional_str(name, entry, "password_env")
    if password is not None and password_env is not None:
        raise ValueError(f"device {name!r}: give 'password' or 'password_env', not both")
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise ValueError(
                f"device {name!r}: environment variable {password_env!r} (password_env) is not set"
            )
    sensors = _string_tuple(name, "sensors", entry.get("sensors", ()))
    strategy: Tuple[str, ...] | None = None
    if "strategy" in entry:
        strategy = _string_tuple(name, "strategy", entry["strategy"])
        if not strategy or strategy[0] not in STRATEGY_NAMES:
            raise ValueError(
                f"device {name!r}: unknown strategy {entry['strategy']!r} "
                f"(known: {', '.join(sorted(STRATEGY_NAMES))})"
            )
    fields = _string_tuple(name, "fields", entry.get("fields", ()))
    for field_name in fields:
        packet_type, _, field_id = field_name.partition(".")
        if not (len(packet_type) == 4 and 1 <= len(field_id) <= 4):
            raise ValueError(
                f"device {name!r}: NCP field {field_name!r} must be 'PACKETTYPE.FIELD' "
                "(four characters, a dot, one to four characters)"
            )
    if fields and kind != "ncp":
        raise ValueError(f"device {name!r}: 'fields' applies to NCP nodes only")
    return DeviceSpec(
        name=name,
        kind=kind,
        host=host,
        port=port,
        tls=_bool(name, entry, "tls"),
        cafile=_optional_str(name, entry, "cafile"),
        certfile=_optional_str(name, entry, "certfile"),
        keyfile=_optional_str(name, entry, "keyfile"),
        insecure=_bool(name, entry, "insecure"),
        username=username,
        password=password,
        sensors=sensors,
        strategy=strategy,
        fields=fields,
    )


def load_devices(config: Mapping[str, Any]) -> Dict[str, DeviceSpec]:
    """Read the ``devices`` table of a parsed fleet file.

    Parameters
    ----------
    config : mapping
        The whole parsed TOML document (see :func:`load_toml`).

    Returns
    -------
    dict of str to DeviceSpec
        One entry per ``[devices.NAME]`` table, in file order.

    Raises
    ------
    ValueError
        When an entry is malformed; the message names the device.
    """
    devices = config.get("devices", {})
    if not isinstance(devices, Mapping):
        raise ValueError("'devices' must be a table of [devices.NAME] tables")
    return {name: _load_device(name, entry) for name, entry in devices.items()}


def load_toml(path: str) -> Dict[str, Any]:
    """Parse the TOML file at `path` (tomllib on Python 3.11+, tomli before).

    Raises
    ------
    ValueError
        When the file is not valid TOML (the message names the file).
    OSError
        When it cannot be read.
    """
    with open(path, "rb") as handle:
        try:
            return _toml.load(handle)
        except _toml.TOMLDecodeError as error:
            raise ValueError(f"{path}: {error}") from None


def manager_config_from_dict(config: Mapping[str, Any]) -> ManagerConfig:
    """Build a :class:`ManagerConfig` from a parsed fleet document.

    Raises
    ------
    ValueError
        On a bad ``[manager]`` key or a bad device entry.
    """
    section = config.get("manager", {})
    if not isinstance(section, Mapping):
        raise ValueError("'manager' must be a table")
    known = {"listen", "tls_cert", "tls_key", "tls_client_ca", "users", "audit_log", "register"}
    unknown = sorted(set(section) - known - {"login_timeout"})
    if unknown:
        logger.warning("[manager]: ignoring unknown key(s) %s", ", ".join(unknown))
    values: Dict[str, str | None] = {}
    for key in known:
        value = section.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"[manager]: {key!r} must be a string")
        values[key] = value
    try:
        listen = parse_address(values["listen"] or DEFAULT_LISTEN)
    except ValueError as error:
        raise ValueError(f"[manager]: listen: {error}") from None
    register = None
    if values["register"]:
        try:
            register = parse_address(values["register"])
        except ValueError as error:
            raise ValueError(f"[manager]: register: {error}") from None
    if bool(values["tls_cert"]) != bool(values["tls_key"]) and not values["tls_cert"]:
        raise ValueError("[manager]: 'tls_key' given without 'tls_cert'")
    login_timeout = section.get("login_timeout", 60.0)
    if isinstance(login_timeout, bool) or not isinstance(login_timeout, (int, float)) \
            or not login_timeout >= 0:
        raise ValueError("[manager]: 'login_timeout' must be a number of seconds >= 0")
    return ManagerConfig(
        listen=listen,
        tls_cert=values["tls_cert"],
        tls_key=values["tls_key"],
        tls_client_ca=values["tls_client_ca"],
        users=values["users"],
        login_timeout=float(login_timeout) or None,
        audit_log=values["audit_log"],
        register=register,
        devices=load_devices(config),
    )


def load_manager_config(path: str) -> ManagerConfig:
    """Read the fleet file at `path` into a :class:`ManagerConfig`.

    Raises
    ------
    ValueError
        On invalid TOML or a bad entry (the message names the file or the device).
    OSError
        When the file cannot be read.
    """
    return manager_config_from_dict(load_toml(path))
