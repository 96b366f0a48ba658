"""Blocking, thread-safe proxies of resource objects that live in an ioloop thread.

Every method called through a wrapper runs in the ioloop's thread; if it
returns a future, the calling thread blocks until the future resolves and gets
its result (or exception).  Calling through a wrapper from the ioloop thread
itself would deadlock, so it raises :class:`RuntimeError` instead.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from katcp._resource_helpers import AttrMappingProxy

#: Extra seconds the calling thread waits beyond a call's own ``timeout``.
TIMEOUT_MARGIN = 1.0


def _loop_of(ioloop_wrapper):
    ioloop = getattr(ioloop_wrapper, "ioloop", None) or getattr(ioloop_wrapper, "_ioloop", None)
    return getattr(ioloop, "asyncio_loop", ioloop)


def _check_not_in_loop(ioloop_wrapper) -> None:
    loop = _loop_of(ioloop_wrapper)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return
    if loop is not None and running is loop:
        raise RuntimeError(
            "Cannot call a thread-safe wrapper from its own ioloop thread "
            "(it would deadlock); use the wrapped object directly there")


class ThreadSafeMethodAttrWrapper:
    """Proxy whose callable attributes run in the ioloop and block for the result.

    Parameters
    ----------
    subject : object
        The wrapped object (lives in the ioloop thread).
    ioloop_wrapper : :class:`katcp.ioloop_manager.IOLoopThreadWrapper`
        Runs callables in the ioloop and waits for them.

    Notes
    -----
    A ``timeout`` keyword passed to a wrapped method bounds the wait (and is
    also passed to the method).  Plain attributes are read in the ioloop thread.
    """

    def __init__(self, subject, ioloop_wrapper):
        object.__setattr__(self, "_subject", subject)
        object.__setattr__(self, "_ioloop_wrapper", ioloop_wrapper)

    @property
    def __subject__(self):
        return self._subject

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        val = self._getattr(attr)
        if callable(val):
            return self._decorate(val)
        return val

    def _getattr(self, attr):
        wrapper = self._ioloop_wrapper
        _check_not_in_loop(wrapper)
        return wrapper.call_in_ioloop(getattr, (self._subject, attr), {})

    def _decorate(self, fn):
        wrapper = self._ioloop_wrapper

        @functools.wraps(fn)
        def call(*args, **kwargs):
            _check_not_in_loop(wrapper)
            timeout = kwargs.get("timeout")
            if timeout:
                # Let the call's own timeout fire first, so its error surfaces.
                timeout = timeout + TIMEOUT_MARGIN
            return wrapper.call_in_ioloop(fn, args, kwargs, timeout)

        return call

    def __dir__(self):
        return sorted(set(dir(type(self))) | set(dir(self._subject)))

    def __repr__(self):
        return f"<{type(self).__name__} of {self._subject!r}>"


class ThreadSafeKATCPSensorWrapper(ThreadSafeMethodAttrWrapper):
    """Blocking proxy of a :class:`katcp.resource.KATCPSensor`."""

    @property
    def sampling_strategy(self):
        """Current sampling strategy (read in the ioloop thread)."""
        return self._getattr("sampling_strategy")


class ThreadSafeKATCPClientResourceRequestWrapper(ThreadSafeMethodAttrWrapper):
    """Blocking proxy of a request: calling it returns the :class:`KATCPReply`."""

    def __call__(self, *args, **kwargs):
        return self._decorate(self._subject)(*args, **kwargs)


class ThreadSafeKATCPClientGroupWrapper(ThreadSafeMethodAttrWrapper):
    """Blocking proxy of a :class:`katcp.resource_client.ClientGroup`."""

    def __init__(self, subject, ioloop_wrapper):
        super().__init__(subject, ioloop_wrapper)
        object.__setattr__(self, "RequestWrapper", functools.partial(
            ThreadSafeKATCPClientResourceRequestWrapper, ioloop_wrapper=ioloop_wrapper))
        object.__setattr__(self, "ResourceWrapper", functools.partial(
            ThreadSafeKATCPClientResourceWrapper, ioloop_wrapper=ioloop_wrapper))

    @property
    def req(self):
        """Group requests, each returning :class:`GroupResults` when called."""
        return AttrMappingProxy(self._subject.req, self.RequestWrapper)

    @property
    def clients(self):
        """Wrapped member resources."""
        return tuple(self.ResourceWrapper(c) for c in self._subject.clients)

    def __len__(self):
        return len(self._subject.clients)

    def __iter__(self):
        return iter(self.clients)


class ThreadSafeKATCPClientResourceWrapper(ThreadSafeMethodAttrWrapper):
    """Blocking proxy of a client resource or container.

    Example
    -------
    >>> ioloop_manager = IOLoopManager(); ioloop_manager.start()  # doctest: +SKIP
    >>> wrapper = IOLoopThreadWrapper(ioloop_manager.get_ioloop())  # doctest: +SKIP
    >>> res = ThreadSafeKATCPClientResourceWrapper(resource, wrapper)  # doctest: +SKIP
    >>> res.until_synced(timeout=5)  # doctest: +SKIP
    >>> res.req.watchdog()  # doctest: +SKIP
    """

    def __init__(self, subject, ioloop_wrapper):
        super().__init__(subject, ioloop_wrapper)
        for attr, cls in (("ResourceWrapper", ThreadSafeKATCPClientResourceWrapper),
                          ("SensorWrapper", ThreadSafeKATCPSensorWrapper),
                          ("RequestWrapper", ThreadSafeKATCPClientResourceRequestWrapper),
                          ("GroupWrapper", ThreadSafeKATCPClientGroupWrapper)):
            object.__setattr__(self, attr, functools.partial(cls, ioloop_wrapper=ioloop_wrapper))

    @property
    def sensor(self) -> Any:
        """Sensors, each wrapped in :class:`ThreadSafeKATCPSensorWrapper`."""
        return AttrMappingProxy(self._subject.sensor, self.SensorWrapper)

    sensors = sensor

    @property
    def req(self) -> Any:
        """Requests, each wrapped to block and return the :class:`KATCPReply`."""
        return AttrMappingProxy(self._subject.req, self.RequestWrapper)

    @property
    def groups(self) -> Any:
        """Groups (containers only), each wrapped."""
        return AttrMappingProxy(self._subject.groups, self.GroupWrapper)

    @property
    def parent(self):
        """Wrapped parent resource, or None."""
        parent = self._subject.parent
        return self.ResourceWrapper(parent) if parent is not None else None

    @property
    def children(self) -> Any:
        """Wrapped children."""
        return AttrMappingProxy(self._subject.children, self.ResourceWrapper)
