"""Transparent proxy and wrapper classes (katcp-python's vendored ProxyTypes).

A *proxy* stands in for another object, its *subject*: attribute access,
item access, calls, comparisons, hashing, ``len``, ``iter``, ``repr``/``str``
and the arithmetic, bitwise and conversion operators are all forwarded to the
subject, which the proxy exposes as ``__subject__``.  Three flavours differ in
where the subject comes from:

:class:`ObjectProxy`
    A fixed subject given to the constructor.
:class:`CallbackProxy`
    A callable is called (without arguments) on *every* operation and its
    result is the subject.
:class:`LazyProxy`
    The callable is called once, on first use, and its result is cached.

Each has a *wrapper* variant (:class:`ObjectWrapper`, :class:`CallbackWrapper`,
:class:`LazyWrapper`, built on the :class:`AbstractWrapper` mixin) meant for
subclassing: attributes and methods defined on the wrapper's class take
precedence over the subject's, and attributes named on the class are stored on
the wrapper itself instead of the subject.  Names starting with ``__`` always
go to the subject.

Examples
--------
>>> from katcp.object_proxies import ObjectProxy, ObjectWrapper
>>> p = ObjectProxy([1, 2])
>>> p.append(3); p[0] = 10
>>> p, len(p), p + [4], p.__subject__
([10, 2, 3], 3, [10, 2, 3, 4], [10, 2, 3])
>>> class Loud(ObjectWrapper):
...     def append(self, item):
...         print("appending", item)
...         self.__subject__.append(item)
>>> w = Loud(p.__subject__)
>>> w.append(5)
appending 5
>>> w.count(5)
1

Notes
-----
``type(proxy)`` is the proxy class, but ``proxy.__class__`` is the subject's
class, so ``isinstance(proxy, type(subject))`` is true.  Python looks special
methods up on the type, so only the special methods defined here are
forwarded: besides those of the original ProxyTypes (with their Python 3
names: ``__bool__``, ``__truediv__``, ...), ``__index__``, ``__round__``,
``__trunc__``, ``__floor__``, ``__ceil__``, ``__matmul__``, ``__bytes__``,
``__format__``, ``__reversed__`` and ``__dir__``.  The iterator,
context-manager and awaitable protocols (``__next__``, ``__enter__``,
``__await__``...) are deliberately not forwarded, so that a proxy is not
mistaken for an iterator, context manager or awaitable when its subject is
not one; ``next(iter(proxy))`` and ``with proxy.__subject__:`` work.

The module-level ``get_callback``/``set_callback`` and
``get_cache``/``set_cache`` read and write the callback and cache slots of
callback and lazy proxies without going through the proxy's forwarding.
"""

from __future__ import annotations

from katcp._aio.proxies import (
    AbstractProxy,
    AbstractWrapper,
    CallbackProxy,
    CallbackWrapper,
    LazyProxy,
    LazyWrapper,
    ObjectProxy,
    ObjectWrapper,
    get_cache,
    get_callback,
    set_cache,
    set_callback,
)

__all__ = [
    "AbstractProxy",
    "AbstractWrapper",
    "CallbackProxy",
    "CallbackWrapper",
    "LazyProxy",
    "LazyWrapper",
    "ObjectProxy",
    "ObjectWrapper",
    "get_cache",
    "get_callback",
    "set_cache",
    "set_callback",
]
