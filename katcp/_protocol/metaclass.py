"""Attribute dictionaries and handler-collecting metaclasses of ``katcp.core``.

Everything here is re-exported by :mod:`katcp.core`, the public import path.
"""

from collections import defaultdict
from typing import Any, Callable, Dict

__all__ = [
    "AttrDict",
    "DefaultAttrDict",
    "convert_method_name",
    "DeviceMetaclass",
    "DeviceServerMetaclass",
]


# ---------------------------------------------------------------------------
# Attribute dictionaries
# ---------------------------------------------------------------------------


class AttrDict(dict):
    """Dictionary whose keys are also available as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class DefaultAttrDict(defaultdict):
    """``collections.defaultdict`` whose keys are also available as attributes."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


# ---------------------------------------------------------------------------
# Handler-collecting metaclasses
# ---------------------------------------------------------------------------


def convert_method_name(prefix: str, name: str) -> str:
    """Convert a method name to the corresponding KATCP message name.

    ``convert_method_name("request_", "request_foo_bar")`` gives ``"foo-bar"``.
    """
    return name[len(prefix):].replace("_", "-")


class DeviceMetaclass(type):
    """Metaclass for DeviceServer and DeviceClient classes.

    Collects up methods named ``request_*`` and adds them to a dictionary of
    supported methods on the class (``_request_handlers``, keyed by KATCP
    name: ``request_foo_bar`` handles ``?foo-bar``).  All ``request_*``
    methods must have a doc string so that help can be generated.  The same
    is done for ``inform_*`` (``_inform_handlers``) and ``reply_*``
    (``_reply_handlers``) methods.

    Raises
    ------
    TypeError
        At class creation, if a ``request_*`` handler has no docstring.
    """

    def __init__(mcs, name: str, bases: tuple, dct: Dict[str, Any]) -> None:
        super().__init__(name, bases, dct)
        # KATCP name -> unbound handler (``request_foo_bar`` under ``"foo-bar"``).
        mcs._request_handlers: Dict[str, Callable[..., Any]] = {}
        mcs._inform_handlers: Dict[str, Callable[..., Any]] = {}
        mcs._reply_handlers: Dict[str, Callable[..., Any]] = {}
        for attr in dir(mcs):
            if attr.startswith("request_"):
                table, prefix = mcs._request_handlers, "request_"
            elif attr.startswith("inform_"):
                table, prefix = mcs._inform_handlers, "inform_"
            elif attr.startswith("reply_"):
                table, prefix = mcs._reply_handlers, "reply_"
            else:
                continue
            try:
                handler = getattr(mcs, attr)
            except AttributeError:
                continue
            if not callable(handler):
                continue
            if not mcs.check_protocol(handler):
                continue
            if prefix == "request_" and not getattr(handler, "__doc__", None):
                raise TypeError(
                    f"Request handler {name}.{attr} has no docstring: every request_* "
                    "handler needs one (it is the ?help text)."
                )
            table[convert_method_name(prefix, attr)] = handler

    def check_protocol(mcs, handler: Any) -> bool:
        """Return False if ``handler`` should be filtered."""
        return True


class DeviceServerMetaclass(DeviceMetaclass):
    """Metaclass for device servers: filters handlers by ``PROTOCOL_INFO``.

    A handler decorated with :func:`katcp.kattypes.minimum_katcp_version`
    (``_minimum_katcp_version`` attribute) or
    :func:`katcp.kattypes.has_katcp_protocol_flags` (``_has_katcp_protocol_flags``)
    is only registered when the class's ``PROTOCOL_INFO`` satisfies it.
    """

    def check_protocol(mcs, handler: Any) -> bool:
        """Return True if the server's protocol flags satisfy the handler's requirements."""
        protocol_info = getattr(mcs, "PROTOCOL_INFO", None)
        if protocol_info is None:
            return True
        version = (protocol_info.major or 0, protocol_info.minor or 0)
        min_version = getattr(handler, "_minimum_katcp_version", None)
        if min_version is not None and version < tuple(min_version):
            return False
        required = getattr(handler, "_has_katcp_protocol_flags", None)
        if required:
            return all(protocol_info.supports(flag) for flag in required)
        return True


for _cls in (AttrDict, DefaultAttrDict, DeviceMetaclass, DeviceServerMetaclass):
    _cls.__module__ = "katcp.core"
convert_method_name.__module__ = "katcp.core"
