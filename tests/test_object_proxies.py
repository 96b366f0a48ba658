"""Tests for katcp.object_proxies (vendored ProxyTypes)."""

import math
import operator
import threading

import pytest

from katcp import object_proxies
from katcp.ioloop_manager import IOLoopManager, IOLoopThreadWrapper, ThreadSafeMethodAttrWrapper
from katcp.object_proxies import (
    AbstractProxy,
    AbstractWrapper,
    CallbackProxy,
    CallbackWrapper,
    LazyProxy,
    LazyWrapper,
    ObjectProxy,
    ObjectWrapper,
)


class Thing:
    """Plain subject with attributes, a method and a call operator."""

    def __init__(self):
        self.x = 1

    def method(self, a, b=2):
        return ("method", a, b)

    def __call__(self, *args, **kw):
        return ("called", args, kw)


class Vec:
    """Subject supporting matrix multiplication."""

    def __init__(self, v):
        self.v = v

    def __matmul__(self, other):
        return sum(a * b for a, b in zip(self.v, other.v))

    def __rmatmul__(self, other):
        return -1

    def __imatmul__(self, other):
        return Vec([a * b for a, b in zip(self.v, other.v)])


ALL_PROXIES = [ObjectProxy, ObjectWrapper,
               lambda s: CallbackProxy(lambda: s), lambda s: CallbackWrapper(lambda: s),
               lambda s: LazyProxy(lambda: s), lambda s: LazyWrapper(lambda: s)]
IDS = ["ObjectProxy", "ObjectWrapper", "CallbackProxy", "CallbackWrapper", "LazyProxy",
       "LazyWrapper"]


@pytest.mark.parametrize("make", ALL_PROXIES, ids=IDS)
def test_attribute_forwarding(make):
    subject = Thing()
    p = make(subject)
    assert p.x == 1
    p.x = 5
    assert subject.x == 5
    p.y = "new"
    assert subject.y == "new"
    del p.y
    assert not hasattr(subject, "y")
    with pytest.raises(AttributeError):
        _ = p.missing
    assert p.method(1) == ("method", 1, 2)
    assert p(1, k=2) == ("called", (1,), {"k": 2})
    assert p.__subject__ is subject
    assert p.__class__ is Thing
    assert isinstance(p, Thing)
    assert p.__dict__ is subject.__dict__
    assert "method" in dir(p)


@pytest.mark.parametrize("make", ALL_PROXIES, ids=IDS)
def test_item_and_container_forwarding(make):
    subject = [3, 1, 2]
    p = make(subject)
    assert p[0] == 3
    assert p[1:] == [1, 2]
    p[0] = 7
    p[1:2] = [8, 9]
    assert subject == [7, 8, 9, 2]
    del p[-1]
    del p[0:1]
    assert subject == [8, 9]
    assert 9 in p and 1 not in p
    assert len(p) == 2
    assert list(p) == [8, 9]
    assert list(reversed(p)) == [9, 8]
    assert bool(p) is True
    subject.clear()
    assert bool(p) is False
    d = {"a": 1, "b": 2}
    pd = make(d)
    assert pd["a"] == 1 and list(reversed(pd)) == ["b", "a"]
    pd["c"] = 3
    assert d["c"] == 3


@pytest.mark.parametrize("make", ALL_PROXIES, ids=IDS)
def test_conversions_and_formatting(make):
    p = make(7)
    assert repr(p) == "7" and str(p) == "7"
    assert format(p, "03d") == "007" and f"{p:>3}" == "  7"
    assert int(p) == 7 and float(p) == 7.0 and complex(p) == 7 + 0j
    assert operator.index(p) == 7 and hex(p) == "0x7"
    assert "abcdefgh"[p] == "h"
    assert bytes(p) == bytes(7)
    assert hash(p) == hash(7)
    assert {p: "x"}[7] == "x"
    f = make(2.5)
    assert round(f) == 2 and round(f, 0) == 2.0
    assert math.trunc(f) == 2 and math.floor(f) == 2 and math.ceil(f) == 3
    assert abs(make(-3)) == 3 and -make(3) == -3 and +make(-3) == -3 and ~make(0) == -1
    assert bytes(make(b"ab")) == b"ab"
    with pytest.raises(TypeError):
        operator.index(make(2.5))
    with pytest.raises(TypeError):
        hash(make([]))


@pytest.mark.parametrize("make", ALL_PROXIES, ids=IDS)
def test_comparisons(make):
    p = make(5)
    assert p == 5 and p != 6 and p < 6 and p <= 5 and p > 4 and p >= 5
    assert 5 == p and 6 > p  # reflected through the proxy's methods
    assert not (p == 6)
    assert make(5) == make(5)


@pytest.mark.parametrize("make", ALL_PROXIES, ids=IDS)
def test_binary_operators(make):
    p = make(12)
    cases = [
        (operator.add, 5), (operator.sub, 5), (operator.mul, 5), (operator.truediv, 5),
        (operator.floordiv, 5), (operator.mod, 5), (operator.pow, 2), (operator.lshift, 2),
        (operator.rshift, 2), (operator.and_, 10), (operator.or_, 3), (operator.xor, 6),
        (divmod, 5),
    ]
    for op, other in cases:
        assert op(p, other) == op(12, other), op
        assert op(other, p) == op(other, 12), op
    assert pow(p, 2, 5) == pow(12, 2, 5)
    assert make("ab") * 2 == "abab" and "x" + make("y") == "xy"
    v = make(Vec([1, 2]))
    assert v @ Vec([3, 4]) == 11
    assert Vec([3, 4]) @ v == 11
    assert 3 @ v == -1  # int has no __matmul__: the proxy's __rmatmul__ forwards


@pytest.mark.parametrize("ctor", [ObjectProxy, ObjectWrapper,
                                  lambda s: LazyProxy(lambda: s),
                                  lambda s: LazyWrapper(lambda: s)],
                         ids=["ObjectProxy", "ObjectWrapper", "LazyProxy", "LazyWrapper"])
def test_inplace_operators_replace_subject(ctor):
    iops = [
        (operator.iadd, 3, 15), (operator.isub, 3, 9), (operator.imul, 3, 36),
        (operator.itruediv, 3, 4.0), (operator.ifloordiv, 5, 2), (operator.imod, 5, 2),
        (operator.ipow, 2, 144), (operator.ilshift, 1, 24), (operator.irshift, 1, 6),
        (operator.iand, 10, 8), (operator.ior, 3, 15), (operator.ixor, 6, 10),
    ]
    for iop, other, expected in iops:
        p = ctor(12)
        result = iop(p, other)
        assert result is p
        assert p.__subject__ == expected, iop
    items = [1]
    p = ctor(items)
    p += [2]
    assert p.__subject__ is items and items == [1, 2]
    v = ctor(Vec([2, 3]))
    v @= Vec([4, 5])
    assert v.__subject__.v == [8, 15]


def test_callback_proxy_calls_every_time():
    calls = []

    def func():
        calls.append(1)
        return len(calls)

    p = CallbackProxy(func)
    assert p == 1
    assert p == 2
    assert p.__subject__ == 3
    assert object_proxies.get_callback(p) is func
    object_proxies.set_callback(p, lambda: "other")
    assert p.upper() == "OTHER"
    with pytest.raises(AttributeError):
        p.__subject__ = 5
    with pytest.raises(AttributeError):  # in-place operators cannot replace a callback's result
        p += "x"


def test_lazy_proxy_caches_and_can_be_reset():
    calls = []

    def func():
        calls.append(1)
        return [len(calls)]

    p = LazyProxy(func)
    assert calls == []
    with pytest.raises(AttributeError):
        object_proxies.get_cache(p)
    assert p == [1]
    p.append(9)
    assert p == [1, 9] and calls == [1]
    assert object_proxies.get_cache(p) == [1, 9]
    p.__subject__ = ["set"]
    assert p == ["set"] and calls == [1]
    del p.__subject__
    assert p == [2] and calls == [1, 1]
    object_proxies.set_cache(p, "cached")
    assert p == "cached"


def test_object_proxy_subject_replacement_and_deletion():
    p = ObjectProxy(1)
    p.__subject__ = "two"
    assert p == "two" and p.upper() == "TWO"
    del p.__subject__
    with pytest.raises(AttributeError):
        _ = p.__subject__
    with pytest.raises(AttributeError):
        len(p)


def test_abstract_proxy_has_no_subject():
    p = AbstractProxy()
    with pytest.raises(AttributeError):
        _ = p.anything
    assert issubclass(ObjectWrapper, AbstractWrapper)
    assert issubclass(CallbackWrapper, CallbackProxy)
    assert issubclass(LazyWrapper, LazyProxy)


def test_plain_proxy_cannot_hold_own_attributes():
    subject = Thing()
    p = ObjectProxy(subject)
    p.extra = 1  # goes to the subject: a proxy has no attributes of its own
    assert subject.extra == 1
    with pytest.raises(AttributeError):
        object.__getattribute__(p, "extra")


class Counting(ObjectWrapper):
    """Wrapper with own state and an overriding method."""

    calls = 0

    def method(self, a, b=2):
        self.calls += 1
        return ("wrapped",) + self.__subject__.method(a, b)

    def own(self):
        return "own"


def test_wrapper_own_attributes_take_precedence():
    subject = Thing()
    w = Counting(subject)
    assert w.method(5) == ("wrapped", "method", 5, 2)
    assert w.calls == 1 and not hasattr(subject, "calls")
    w.calls = 10  # named on the class: stored on the wrapper
    assert w.calls == 10 and "calls" not in subject.__dict__
    del w.calls
    assert w.calls == 0
    w.x = 3  # not named on the class: stored on the subject
    assert subject.x == 3 and w.x == 3
    assert w.own() == "own"
    with pytest.raises(AttributeError):
        _ = w.missing
    assert w.__class__ is Thing  # dunders go to the subject
    names = dir(w)
    assert "own" in names and "method" in names and "x" in names
    assert w(1) == ("called", (1,), {})


def test_wrapper_variants_with_callbacks():
    class Named(CallbackWrapper):
        label = "callback"

    box = {"subject": [1]}
    w = Named(lambda: box["subject"])
    assert w.label == "callback" and w == [1]
    box["subject"] = [2, 3]
    assert len(w) == 2 and w.count(3) == 1

    class LazyNamed(LazyWrapper):
        label = "lazy"

    calls = []
    lw = LazyNamed(lambda: calls.append(1) or "value")
    assert lw.label == "lazy" and calls == []
    assert lw.upper() == "VALUE" and lw == "value" and calls == [1]


def test_thread_safe_method_attr_wrapper_builds_on_object_wrapper():
    """ioloop_manager's ThreadSafeMethodAttrWrapper runs methods in the ioloop thread."""
    manager = IOLoopManager(managed_default=True)
    ioloop = manager.get_ioloop()
    manager.start(timeout=5)
    try:
        threads = []

        class Subject:
            value = 42

            def where(self):
                threads.append(threading.current_thread())
                return "ok"

        subject = Subject()
        wrapper = ThreadSafeMethodAttrWrapper(subject, IOLoopThreadWrapper(ioloop))
        assert isinstance(wrapper, ObjectWrapper)
        assert wrapper.__subject__ is subject
        assert wrapper.value == 42
        assert wrapper.where() == "ok"
        assert threads and threads[0] is not threading.current_thread()
    finally:
        manager.stop(timeout=5)
        manager.join(timeout=5)
