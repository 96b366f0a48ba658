"""Blocking, thread-safe proxies of resource objects that live in an ioloop thread.

All build on :class:`katcp.ioloop_manager.ThreadSafeMethodAttrWrapper`: attributes are read
and methods run in the ioloop's thread; a method returning a future blocks the calling
thread until it resolves and gives its result (or raises its exception).  Calling through a
wrapper from the ioloop thread itself would deadlock, so it raises :class:`RuntimeError`.
The wrappers here add recursive wrapping: ``req``, ``sensor``, ``children``, ``groups``,
``parent`` and a group's ``clients`` come back wrapped as well.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator, Tuple

from katcp._aio.ioloop import ThreadSafeMethodAttrWrapper
from katcp._resource.helpers import AttrMappingProxy

__all__ = [
    "ThreadSafeKATCPClientGroupWrapper",
    "ThreadSafeKATCPClientResourceRequestWrapper",
    "ThreadSafeKATCPClientResourceWrapper",
    "ThreadSafeKATCPSensorWrapper",
    "ThreadSafeMethodAttrWrapper",
]


class ThreadSafeKATCPSensorWrapper(ThreadSafeMethodAttrWrapper):
    """Blocking proxy of a :class:`katcp.resource.KATCPSensor`.

    Parameters
    ----------
    subject : KATCPSensor
        The sensor (lives in the ioloop thread).
    ioloop_wrapper : :class:`katcp.ioloop_manager.IOLoopThreadWrapper`
        Runs callables in the ioloop and waits for them.
    """

    @property
    def sampling_strategy(self) -> Any:
        """Current sampling strategy (read in the ioloop thread)."""
        return self._getattr("sampling_strategy")


class ThreadSafeKATCPClientResourceRequestWrapper(ThreadSafeMethodAttrWrapper):
    """Blocking proxy of a request: calling it returns the :class:`KATCPReply`.

    Parameters
    ----------
    subject : KATCPRequest
        The request (lives in the ioloop thread).
    ioloop_wrapper : :class:`katcp.ioloop_manager.IOLoopThreadWrapper`
        Runs callables in the ioloop and waits for them.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._decorate(self.__subject__)(*args, **kwargs)


class ThreadSafeKATCPClientGroupWrapper(ThreadSafeMethodAttrWrapper):
    """Blocking proxy of a :class:`katcp.resource_client.ClientGroup`.

    Parameters
    ----------
    subject : ClientGroup
        The group (lives in the ioloop thread).
    ioloop_wrapper : :class:`katcp.ioloop_manager.IOLoopThreadWrapper`
        Runs callables in the ioloop and waits for them.
    """

    #: Wraps each group request (calling it returns :class:`GroupResults`).
    RequestWrapper: Any = None
    #: Wraps each member resource.
    ResourceWrapper: Any = None

    def __init__(self, subject: Any, ioloop_wrapper: Any) -> None:
        super().__init__(subject, ioloop_wrapper)
        self.RequestWrapper = functools.partial(
            ThreadSafeKATCPClientResourceRequestWrapper, ioloop_wrapper=ioloop_wrapper)
        self.ResourceWrapper = functools.partial(
            ThreadSafeKATCPClientResourceWrapper, ioloop_wrapper=ioloop_wrapper)

    @property
    def req(self) -> Any:
        """Group requests, each returning :class:`GroupResults` when called."""
        return AttrMappingProxy(self.__subject__.req, self.RequestWrapper)

    @property
    def clients(self) -> Tuple[Any, ...]:
        """Wrapped member resources."""
        return tuple(self.ResourceWrapper(c) for c in self.__subject__.clients)

    def __len__(self) -> int:
        return len(self.__subject__.clients)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.clients)


class ThreadSafeKATCPClientResourceWrapper(ThreadSafeMethodAttrWrapper):
    """Blocking proxy of a client resource or container.

    Parameters
    ----------
    subject : KATCPClientResource or KATCPClientResourceContainer
        The resource (lives in the ioloop thread).
    ioloop_wrapper : :class:`katcp.ioloop_manager.IOLoopThreadWrapper`
        Runs callables in the ioloop and waits for them.

    Examples
    --------
    >>> ioloop_manager = IOLoopManager(); ioloop_manager.start()  # doctest: +SKIP
    >>> wrapper = IOLoopThreadWrapper(ioloop_manager.get_ioloop())  # doctest: +SKIP
    >>> res = ThreadSafeKATCPClientResourceWrapper(resource, wrapper)  # doctest: +SKIP
    >>> res.until_synced(timeout=5)  # doctest: +SKIP
    >>> res.req.watchdog()  # doctest: +SKIP
    """

    #: Wraps children (and the parent).
    ResourceWrapper: Any = None
    #: Wraps sensors.
    SensorWrapper: Any = None
    #: Wraps requests.
    RequestWrapper: Any = None
    #: Wraps groups (containers).
    GroupWrapper: Any = None

    def __init__(self, subject: Any, ioloop_wrapper: Any) -> None:
        super().__init__(subject, ioloop_wrapper)
        self.ResourceWrapper = functools.partial(
            ThreadSafeKATCPClientResourceWrapper, ioloop_wrapper=ioloop_wrapper)
        self.SensorWrapper = functools.partial(
            ThreadSafeKATCPSensorWrapper, ioloop_wrapper=ioloop_wrapper)
        self.RequestWrapper = functools.partial(
            ThreadSafeKATCPClientResourceRequestWrapper, ioloop_wrapper=ioloop_wrapper)
        self.GroupWrapper = functools.partial(
            ThreadSafeKATCPClientGroupWrapper, ioloop_wrapper=ioloop_wrapper)

    @property
    def sensor(self) -> Any:
        """Sensors, each wrapped in :class:`ThreadSafeKATCPSensorWrapper`."""
        return AttrMappingProxy(self.__subject__.sensor, self.SensorWrapper)

    sensors = sensor

    @property
    def req(self) -> Any:
        """Requests, each wrapped to block and return the :class:`KATCPReply`."""
        return AttrMappingProxy(self.__subject__.req, self.RequestWrapper)

    @property
    def groups(self) -> Any:
        """Groups (containers only), each wrapped."""
        return AttrMappingProxy(self.__subject__.groups, self.GroupWrapper)

    @property
    def parent(self) -> Any:
        """Wrapped parent resource, or None."""
        parent = self.__subject__.parent
        return self.ResourceWrapper(parent) if parent is not None else None

    @property
    def children(self) -> Any:
        """Wrapped children."""
        return AttrMappingProxy(self.__subject__.children, self.ResourceWrapper)
