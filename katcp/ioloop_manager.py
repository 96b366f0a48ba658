"""Managed ioloop threads and calling into an ioloop from other threads.

katcp objects (servers, clients, resources) all run on a tornado
:class:`~tornado.ioloop.IOLoop`, which under tornado 6 wraps an :mod:`asyncio` event loop.
:class:`IOLoopManager` owns that loop: either a *managed* loop, created here and run in a
thread of its own by :meth:`IOLoopManager.start`, or an *unmanaged* one supplied by the caller
(typically the loop the caller's own code already runs on).

Code in other threads must not touch objects that live on a loop directly; it hands work to
the loop instead.  :class:`IOLoopThreadWrapper` does that and blocks until the work is done,
resolving futures and coroutines returned by the work, and
:class:`ThreadSafeMethodAttrWrapper` turns every method of an object into such a blocking call.
"""

from __future__ import annotations

from katcp._aio.ioloop import (
    IOLoopManager,
    IOLoopThreadWrapper,
    StopFuture,
    ThreadSafeMethodAttrWrapper,
    with_relative_timeout,
)

__all__ = [
    "IOLoopManager",
    "IOLoopThreadWrapper",
    "StopFuture",
    "ThreadSafeMethodAttrWrapper",
    "with_relative_timeout",
]

# Names katcp-python 0.9.3 also exposed in this module (it imported them here), which
# code still imports from it; not part of __all__.  Pinned by tests/test_katcp093_names.py.
from katcp._aio.proxies import (  # noqa: E402, F401
    ObjectWrapper,
)
