"""Proxy and wrapper classes (katcp-python's vendored ProxyTypes); documented and public in
:mod:`katcp.object_proxies`."""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Dict

__all__ = [
    "AbstractProxy",
    "AbstractWrapper",
    "CallbackProxy",
    "CallbackWrapper",
    "LazyProxy",
    "LazyWrapper",
    "ObjectProxy",
    "ObjectWrapper",
]

_oga = object.__getattribute__
_osa = object.__setattr__
_oda = object.__delattr__


class AbstractProxy:
    """Delegate all operations (except ``__subject__``) to another object.

    Subclasses say where the subject comes from by providing a
    ``__subject__`` attribute (a slot or a property); see
    :class:`ObjectProxy`, :class:`CallbackProxy` and :class:`LazyProxy`.

    Every attribute read, write and deletion other than ``__subject__`` acts on
    the subject, as do calls, item and slice access, ``in``, comparisons,
    hashing, truth value, ``len``, ``iter``, ``reversed``, ``repr``, ``str``,
    ``bytes``, ``format``, ``dir`` and the numeric operators (including the
    reflected and in-place forms).  In-place operators replace the subject
    with the result and return the proxy.
    """

    __slots__ = ()

    def __getattribute__(self, attr: str, oga: Callable[..., Any] = _oga) -> Any:
        subject = oga(self, "__subject__")
        if attr == "__subject__":
            return subject
        return getattr(subject, attr)

    def __setattr__(self, attr: str, val: Any, osa: Callable[..., Any] = _osa) -> None:
        if attr == "__subject__":
            osa(self, attr, val)
        else:
            setattr(self.__subject__, attr, val)

    def __delattr__(self, attr: str, oda: Callable[..., Any] = _oda) -> None:
        if attr == "__subject__":
            oda(self, attr)
        else:
            delattr(self.__subject__, attr)

    def __call__(self, *args: Any, **kw: Any) -> Any:
        return self.__subject__(*args, **kw)

    def __bool__(self) -> bool:
        return bool(self.__subject__)

    def __getitem__(self, arg: Any) -> Any:
        return self.__subject__[arg]

    def __setitem__(self, arg: Any, val: Any) -> None:
        self.__subject__[arg] = val

    def __delitem__(self, arg: Any) -> None:
        del self.__subject__[arg]

    def __contains__(self, ob: Any) -> bool:
        return ob in self.__subject__

    def __format__(self, format_spec: str) -> str:
        return format(self.__subject__, format_spec)

    def __dir__(self) -> list:
        return dir(self.__subject__)

    def __round__(self, *ndigits: Any) -> Any:
        return round(self.__subject__, *ndigits)

    def __pow__(self, ob: Any, *mod: Any) -> Any:
        return pow(self.__subject__, ob, *mod)

    def __rpow__(self, ob: Any) -> Any:
        return pow(ob, self.__subject__)

    def __ipow__(self, ob: Any, *mod: Any) -> Any:
        self.__subject__ **= ob
        return self

    def __divmod__(self, ob: Any) -> Any:
        return divmod(self.__subject__, ob)

    def __rdivmod__(self, ob: Any) -> Any:
        return divmod(ob, self.__subject__)


# --- generated forwarding methods ---------------------------------------------------
# ``self.__subject__`` ends in "__", so it is not name-mangled below.

def _unary(name: str, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def method(self: Any) -> Any:
        return func(self.__subject__)
    method.__name__ = method.__qualname__ = f"__{name}__"
    method.__doc__ = f"Return ``{getattr(func, '__name__', name)}(self.__subject__)``."
    return method


def _binary(name: str, func: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def method(self: Any, ob: Any) -> Any:
        return func(self.__subject__, ob)
    method.__name__ = method.__qualname__ = f"__{name}__"
    method.__doc__ = f"Apply ``__{name}__`` to ``(self.__subject__, ob)``."
    return method


def _reflected(name: str, func: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def method(self: Any, ob: Any) -> Any:
        return func(ob, self.__subject__)
    method.__name__ = method.__qualname__ = f"__r{name}__"
    method.__doc__ = f"Apply ``__{name}__`` to ``(ob, self.__subject__)``."
    return method


def _inplace(name: str, func: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def method(self: Any, ob: Any) -> Any:
        self.__subject__ = func(self.__subject__, ob)
        return self
    method.__name__ = method.__qualname__ = f"__i{name}__"
    method.__doc__ = f"Replace the subject with ``__i{name}__(self.__subject__, ob)``."
    return method


_UNARY: Dict[str, Callable[[Any], Any]] = {
    "repr": repr, "str": str, "hash": hash, "len": len, "iter": iter, "reversed": reversed,
    "abs": abs, "complex": complex, "int": int, "float": float, "bytes": bytes,
    "index": operator.index, "trunc": math.trunc, "floor": math.floor, "ceil": math.ceil,
    "neg": operator.neg, "pos": operator.pos, "invert": operator.invert,
}
_COMPARISONS: Dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt, "gt": operator.gt, "le": operator.le, "ge": operator.ge,
    "eq": operator.eq, "ne": operator.ne,
}
_NUMERIC = {
    "or": (operator.or_, operator.ior), "and": (operator.and_, operator.iand),
    "xor": (operator.xor, operator.ixor), "lshift": (operator.lshift, operator.ilshift),
    "rshift": (operator.rshift, operator.irshift), "add": (operator.add, operator.iadd),
    "sub": (operator.sub, operator.isub), "mul": (operator.mul, operator.imul),
    "matmul": (operator.matmul, operator.imatmul), "mod": (operator.mod, operator.imod),
    "truediv": (operator.truediv, operator.itruediv),
    "floordiv": (operator.floordiv, operator.ifloordiv),
}

for _name, _func1 in _UNARY.items():
    setattr(AbstractProxy, f"__{_name}__", _unary(_name, _func1))
for _name, _func2 in _COMPARISONS.items():
    setattr(AbstractProxy, f"__{_name}__", _binary(_name, _func2))
for _name, (_func2, _ifunc) in _NUMERIC.items():
    setattr(AbstractProxy, f"__{_name}__", _binary(_name, _func2))
    setattr(AbstractProxy, f"__r{_name}__", _reflected(_name, _func2))
    setattr(AbstractProxy, f"__i{_name}__", _inplace(_name, _ifunc))
del _name, _func1, _func2, _ifunc


class ObjectProxy(AbstractProxy):
    """Proxy for a specific object.

    Parameters
    ----------
    subject : object
        The object every operation is forwarded to.  It can be replaced later
        by assigning ``proxy.__subject__``.
    """

    __slots__ = ("__subject__",)

    def __init__(self, subject: Any) -> None:
        self.__subject__ = subject


class CallbackProxy(AbstractProxy):
    """Proxy for a dynamically chosen object.

    Parameters
    ----------
    func : callable
        Called without arguments on every operation; its result is the subject
        of that operation.  ``__subject__`` is read-only.
    """

    __slots__ = ("__callback__",)

    def __init__(self, func: Callable[[], Any]) -> None:
        set_callback(self, func)


#: Read the callback of a :class:`CallbackProxy` (or :class:`LazyProxy`).
get_callback = CallbackProxy.__callback__.__get__  # type: ignore[attr-defined]
#: Set the callback of a :class:`CallbackProxy` (or :class:`LazyProxy`).
set_callback = CallbackProxy.__callback__.__set__  # type: ignore[attr-defined]

CallbackProxy.__subject__ = property(  # type: ignore[attr-defined]
    lambda self: get_callback(self)(), doc="The callback's result (computed on each access).")


class LazyProxy(CallbackProxy):
    """Proxy for a lazily obtained object, cached on first use.

    Parameters
    ----------
    func : callable
        Called without arguments the first time the subject is needed; its
        result is cached and used from then on.  Assigning ``__subject__``
        replaces the cached value; deleting it drops the cache so that `func`
        is called again on next use.
    """

    __slots__ = ("__cache__",)


#: Read the cached subject of a :class:`LazyProxy` (AttributeError if not yet computed).
get_cache = LazyProxy.__cache__.__get__  # type: ignore[attr-defined]
#: Set the cached subject of a :class:`LazyProxy`.
set_cache = LazyProxy.__cache__.__set__  # type: ignore[attr-defined]
_del_cache = LazyProxy.__cache__.__delete__  # type: ignore[attr-defined]


def _lazy_subject(self: Any) -> Any:
    try:
        return get_cache(self)
    except AttributeError:
        set_cache(self, get_callback(self)())
        return get_cache(self)


LazyProxy.__subject__ = property(  # type: ignore[attr-defined]
    _lazy_subject, set_cache, _del_cache, doc="The subject, computed on first access.")


class AbstractWrapper(AbstractProxy):
    """Mixin that lets a proxy class add behaviour and attributes of its own.

    Attribute lookup tries the wrapper first (its class and instance) and
    falls back to the subject; names starting with ``__`` always go to the
    subject (``__subject__`` excepted).  Assigning or deleting an attribute
    acts on the wrapper if the wrapper's class defines that name (give
    per-instance attributes a class-level default for that reason), otherwise
    on the subject.
    """

    __slots__ = ()

    def __getattribute__(self, attr: str, oga: Callable[..., Any] = _oga) -> Any:
        if attr.startswith("__"):
            subject = oga(self, "__subject__")
            if attr == "__subject__":
                return subject
            return getattr(subject, attr)
        return oga(self, attr)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.__subject__, attr)

    def __setattr__(self, attr: str, val: Any, osa: Callable[..., Any] = _osa) -> None:
        if attr == "__subject__" or (hasattr(type(self), attr) and not attr.startswith("__")):
            osa(self, attr, val)
        else:
            setattr(self.__subject__, attr, val)

    def __delattr__(self, attr: str, oda: Callable[..., Any] = _oda) -> None:
        if attr == "__subject__" or (hasattr(type(self), attr) and not attr.startswith("__")):
            oda(self, attr)
        else:
            delattr(self.__subject__, attr)

    def __dir__(self) -> list:
        own = (name for name in dir(type(self)) if not name.startswith("__"))
        return sorted(set(dir(self.__subject__)).union(own))


class ObjectWrapper(ObjectProxy, AbstractWrapper):
    """:class:`ObjectProxy` that may have attributes and methods of its own.

    Parameters
    ----------
    subject : object
        The wrapped object.
    """

    __slots__ = ()


class CallbackWrapper(CallbackProxy, AbstractWrapper):
    """:class:`CallbackProxy` that may have attributes and methods of its own.

    Parameters
    ----------
    func : callable
        Called without arguments on every operation to get the subject.
    """

    __slots__ = ()


class LazyWrapper(LazyProxy, AbstractWrapper):
    """:class:`LazyProxy` that may have attributes and methods of its own.

    Parameters
    ----------
    func : callable
        Called without arguments on first use to get the (cached) subject.
    """

    __slots__ = ()
