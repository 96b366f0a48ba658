"""`DeviceLogger`: KATCP ``#log`` informs from a device server, mirrored to Python logging."""

from __future__ import annotations

import logging
from typing import Any, Union

__all__ = ["DeviceLogger"]


def _native_str(value: Union[str, bytes]) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class DeviceLogger:
    """Object for logging messages from a DeviceServer.

    Log messages are logged at a particular level and under a particular name.
    Names use dotted notation to form a virtual hierarchy of loggers with the
    device. Messages at or above the current level are sent to every client as
    ``#log`` informs; every message is also passed to the Python logger (if
    one was given), which applies its own level.

    Parameters
    ----------
    device_server : DeviceServerBase object
        The device server this logger should use for sending out logs.
    root_logger : str
        The name of the root logger.
    python_logger : logging.Logger object, optional
        Python logger that also receives every message.

    """

    # level values are used as indexes into the LEVELS list
    ALL, TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF = range(8)

    #: List of logging level names, indexed by level constant.
    LEVELS = ["all", "trace", "debug", "info", "warn", "error", "fatal", "off"]

    #: Map of KATCP levels to the corresponding Python logging levels.
    PYTHON_LEVEL = {
        TRACE: 0,
        DEBUG: logging.DEBUG,
        INFO: logging.INFO,
        WARN: logging.WARN,
        ERROR: logging.ERROR,
        FATAL: logging.FATAL,
        OFF: logging.FATAL + 10,  # OFF is the highest possible logging level
    }

    def __init__(self, device_server: Any, root_logger: str = "root",
                 python_logger: logging.Logger | None = None) -> None:
        self._device_server = device_server
        self._python_logger = python_logger
        self._log_level = self.WARN
        self._root_logger_name = root_logger

    def level_name(self, level: int | None = None) -> str:
        """Return the name of the given level value.

        If level is None, return the name of the current level.

        Parameters
        ----------
        level : logging level constant
            The logging level constant whose name to retrieve.

        Returns
        -------
        level_name : str
            The name of the logging level.

        """
        if level is None:
            level = self._log_level
        return self.LEVELS[level]

    def level_from_name(self, level_name: Union[str, bytes]) -> int:
        """Return the level constant for a given name.

        If the *level_name* is not known, raise a ValueError.

        Parameters
        ----------
        level_name : str or bytes
            The logging level name whose logging level constant to retrieve.

        Returns
        -------
        level : logging level constant
            The logging level constant associated with the name.

        """
        name = _native_str(level_name)
        try:
            return self.LEVELS.index(name)
        except ValueError:
            raise ValueError(f"Unknown logging level name '{name}'") from None

    def set_log_level(self, level: int) -> None:
        """Set the logging level.

        Parameters
        ----------
        level : logging level constant
            The value to set the logging level to.

        """
        if level not in range(len(self.LEVELS)):
            raise ValueError(f"Unknown logging level {level!r}")
        self._log_level = level
        if self._python_logger is not None:
            self._python_logger.setLevel(self.PYTHON_LEVEL.get(level, 0))

    def set_log_level_by_name(self, level_name: Union[str, bytes]) -> None:
        """Set the logging level using a level name.

        Parameters
        ----------
        level_name : str or bytes
            The name of the logging level.

        """
        self.set_log_level(self.level_from_name(level_name))

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log a message and inform all clients.

        Parameters
        ----------
        level : logging level constant
            The level to log the message at.
        msg : str
            The text format for the log message.
        args : list of objects
            Arguments to pass to log format string. Final message text is
            created using: msg % args.
        kwargs : additional keyword parameters
            Allowed keywords are 'name' and 'timestamp'. The name is the name
            of the logger to log the message to. If not given the name defaults
            to the root logger. The timestamp is a float in seconds. If not
            given the timestamp defaults to the current time.

        """
        timestamp = kwargs.get("timestamp")
        python_logger = self._python_logger
        if python_logger is not None:
            python_msg = msg
            if timestamp is not None:
                python_msg = f"katcp timestamp: {timestamp!r} {msg}"
            # Python logging formats lazily, only if the level is enabled
            python_logger.log(self.PYTHON_LEVEL[level], python_msg, *args)
        if level >= self._log_level and level < self.OFF:
            name = kwargs.get("name")
            if name is None:
                name = self._root_logger_name
            try:
                inform_msg = msg % args if args else msg
            except (TypeError, ValueError):
                # e.g. "not enough arguments for format string"
                inform_msg = ("{} {}".format(msg, args if args else "")).strip()
            server = self._device_server
            server.mass_inform(server.create_log_inform(
                self.level_name(level), inform_msg, name, timestamp=timestamp))

    def trace(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log a trace message."""
        self.log(self.TRACE, msg, *args, **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log a debug message."""
        self.log(self.DEBUG, msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log an info message."""
        self.log(self.INFO, msg, *args, **kwargs)

    def warn(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log a warning message."""
        self.log(self.WARN, msg, *args, **kwargs)

    warning = warn

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log an error message."""
        self.log(self.ERROR, msg, *args, **kwargs)

    def fatal(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log a fatal error message."""
        self.log(self.FATAL, msg, *args, **kwargs)

    @classmethod
    def log_to_python(cls, logger: logging.Logger, msg: Any) -> None:
        """Log a KATCP logging message to a Python logger.

        Parameters
        ----------
        logger : logging.Logger object
            The Python logger to log the given message to.
        msg : Message object
            The #log message to create a log entry from.

        """
        (level, timestamp, name, message) = tuple(msg.arguments)
        log_string = f"{_native_str(timestamp)} {_native_str(name)}: {_native_str(message)}"
        python_level = {
            b"trace": 0,
            b"debug": logging.DEBUG,
            b"info": logging.INFO,
            b"warn": logging.WARN,
            b"error": logging.ERROR,
            b"fatal": logging.FATAL,
        }.get(level if isinstance(level, bytes) else level.encode(), logging.WARN)
        logger.log(python_level, log_string)
