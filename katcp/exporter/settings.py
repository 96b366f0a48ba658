"""The exporter's configuration file: the manager's devices plus an ``[exporter]`` table.

Devices use the manager's syntax and its one parser, :mod:`katcp.manager.config`
(``[devices.NAME]`` with ``katcp = "host:port"`` or ``ncp = "host:port"``, TLS, credentials,
``sensors`` globs and ``strategy``).  This module reads only the exporter's own table::

    [exporter]
    listen = "0.0.0.0:9700"          # --listen overrides it
    openmetrics = false              # true: OpenMetrics to clients that ask (slower)
    sensors = ["*"]                  # sensors of devices that list none of their own
    default_strategy = "event-rate 1 10"
    strategies = [                   # first match wins
        {pattern = "*.temp*", strategy = "event-rate 5 60"},
        {pattern = "time.*", strategy = "none"},
    ]

and turns both into :class:`~katcp.exporter.targets.Target`\\ s.  A device's own ``sensors``
replace the ``[exporter]`` globs for it, and its own ``strategy`` replaces the default
strategy for it (the ``strategies`` patterns still come first).  Any mistake raises
:class:`ConfigError` with a message naming it.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

from katcp.manager.config import DeviceSpec, load_devices, load_toml, parse_address

from .service import DEFAULT_PORT
from .targets import DEFAULT_STRATEGY, SensorRules, Target

__all__ = ["ConfigError", "ExporterSettings", "load_config", "parse_listen",
           "parse_strategy", "targets_from_config"]

#: Strategies and their number of (numeric) parameters.
_STRATEGY_PARAMS: Dict[str, Tuple[int, ...]] = {
    "none": (0,),
    "auto": (0,),
    "event": (0,),
    "period": (1,),
    "differential": (1,),
    "event-rate": (2,),
    "differential-rate": (3,),
}
_EXPORTER_KEYS = {"listen", "openmetrics", "sensors", "strategies", "default_strategy"}


class ConfigError(ValueError):
    """The configuration is wrong; the message says where and how."""


class ExporterSettings:
    """The ``[exporter]`` table.

    Parameters
    ----------
    listen : (str, int), optional
        Address of ``/metrics``, if the table gives one.
    rules : SensorRules
        Default sensor globs, strategy patterns and default strategy.
    openmetrics : bool
        Serve OpenMetrics to clients that ask for it (else always the text format).
    """

    def __init__(self, listen: Tuple[str, int] | None, rules: SensorRules,
                 openmetrics: bool = False) -> None:
        self.listen = listen
        self.rules = rules
        self.openmetrics = openmetrics


def parse_strategy(text: Any, where: str = "strategy") -> Tuple[str, ...]:
    """Parse a strategy such as ``"event-rate 1 10"`` into its words.

    Parameters
    ----------
    text : str or list of str
        Strategy name followed by its numeric parameters.
    where : str
        Where it was found, for the error message.

    Raises
    ------
    ConfigError
        For an unknown strategy, a wrong number of parameters or a parameter that is not a
        number.
    """
    if isinstance(text, str):
        words = tuple(text.split())
    elif isinstance(text, (list, tuple)) and all(isinstance(w, (str, int, float)) for w in text):
        words = tuple(str(w) for w in text)
    else:
        raise ConfigError(f"{where}: a strategy is a string such as 'event-rate 1 10'")
    if not words or words[0] not in _STRATEGY_PARAMS:
        raise ConfigError(f"{where}: unknown strategy {' '.join(words)!r} "
                          f"(one of {', '.join(sorted(_STRATEGY_PARAMS))})")
    if len(words) - 1 not in _STRATEGY_PARAMS[words[0]]:
        raise ConfigError(f"{where}: {words[0]} takes {_STRATEGY_PARAMS[words[0]][0]} "
                          f"parameter(s), not {len(words) - 1}")
    for word in words[1:]:
        try:
            float(word)
        except ValueError:
            raise ConfigError(f"{where}: strategy parameter {word!r} is not a number") from None
    return words


def parse_listen(text: str) -> Tuple[str, int]:
    """Parse ``HOST:PORT`` (or ``:PORT``, or ``HOST`` for port 9700) for ``/metrics``."""
    try:
        host, port = parse_address(text, default_port=DEFAULT_PORT)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"listen address {text!r}: {exc}") from None
    return host, int(port)


def _globs(value: Any, where: str) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of glob patterns")
    return tuple(value)


def load_exporter_settings(config: Mapping[str, Any]) -> ExporterSettings:
    """Read the ``[exporter]`` table of a parsed configuration (it may be absent)."""
    table = config.get("exporter", {})
    if not isinstance(table, Mapping):
        raise ConfigError("[exporter] must be a table")
    unknown = sorted(set(table) - _EXPORTER_KEYS)
    if unknown:
        raise ConfigError(f"[exporter]: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(_EXPORTER_KEYS))})")
    listen = None
    if "listen" in table:
        if not isinstance(table["listen"], str):
            raise ConfigError("[exporter] listen: expected a string 'HOST:PORT'")
        listen = parse_listen(table["listen"])
    openmetrics = table.get("openmetrics", False)
    if not isinstance(openmetrics, bool):
        raise ConfigError("[exporter] openmetrics: expected true or false")
    patterns = _globs(table.get("sensors", ["*"]), "[exporter] sensors")
    default = DEFAULT_STRATEGY
    if "default_strategy" in table:
        default = parse_strategy(table["default_strategy"], "[exporter] default_strategy")
    rules_in = table.get("strategies", [])
    if not isinstance(rules_in, (list, tuple)):
        raise ConfigError("[exporter] strategies: expected a list of "
                          "{pattern = ..., strategy = ...} tables")
    strategies = []
    for i, rule in enumerate(rules_in):
        where = f"[exporter] strategies[{i}]"
        if not isinstance(rule, Mapping) or set(rule) != {"pattern", "strategy"} or \
                not isinstance(rule["pattern"], str):
            raise ConfigError(f"{where}: expected {{pattern = \"glob\", "
                              f"strategy = \"event-rate 1 10\"}}")
        strategies.append((rule["pattern"], parse_strategy(rule["strategy"], where)))
    return ExporterSettings(listen, SensorRules(patterns, tuple(strategies), default),
                            openmetrics)


def _target(spec: DeviceSpec, rules: SensorRules) -> Target:
    where = f"[devices.{spec.name}]"
    patterns = tuple(spec.sensors) if spec.sensors else rules.patterns
    default = rules.default_strategy
    if spec.strategy:
        default = parse_strategy(list(spec.strategy), f"{where} strategy")
    ssl_context = None
    if spec.tls:
        try:
            ssl_context = spec.client_ssl_context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(f"{where}: TLS set-up failed: {exc}") from None
    if spec.kind == "katcp" and spec.username and not spec.password:
        raise ConfigError(f"{where}: 'user' needs 'password' or 'password_env' to log in")
    return Target(spec.name, spec.kind, spec.host, int(spec.port),
                  SensorRules(patterns, rules.strategies, default), ssl_context,
                  spec.username or "", spec.password or "")


def targets_from_config(config: Mapping[str, Any]) -> Tuple[Tuple[Target, ...],
                                                              ExporterSettings]:
    """Targets of every device of a parsed configuration, and the ``[exporter]`` settings.

    Raises
    ------
    ConfigError
        For any mistake in the devices or the ``[exporter]`` table.
    """
    settings = load_exporter_settings(config)
    try:
        specs = load_devices(config)
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(str(exc)) from None
    if not specs:
        raise ConfigError("no devices: add [devices.NAME] tables with katcp = or ncp = "
                          "\"host:port\"")
    return tuple(_target(spec, settings.rules) for spec in specs.values()), settings


def load_config(path: str) -> Tuple[Tuple[Target, ...], ExporterSettings]:
    """Read a configuration file: its targets and ``[exporter]`` settings.

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or any part of it is wrong.
    """
    try:
        config = load_toml(path)
    except ConfigError:
        raise
    except (OSError, ValueError, TypeError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{path}: {exc}") from None
    return targets_from_config(config)
