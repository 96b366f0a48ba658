"""Tests for katcp.sensortree: derived sensors recomputed as real Sensor children change."""

from __future__ import annotations

import asyncio
import doctest

import aiokatcp
import pytest

from katcp._protocol import sensortree
from katcp.sensor import Sensor
from katcp.sensortree import AggregateSensorTree, BooleanSensorTree, GenericSensorTree
from katcp.server import DeviceServer

TIMEOUT = 5.0


def boolean(name, default=False):
    return Sensor(Sensor.BOOLEAN, name, f"Boolean {name}", "", default=default)


def integer(name, default=0):
    return Sensor(Sensor.INTEGER, name, f"Integer {name}", "", [-1000, 1000], default=default)


class RecordingTree(GenericSensorTree):
    """Generic tree whose recalculate records its calls and sets a count of children."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def recalculate(self, parent, updates):
        self.calls.append((parent, tuple(updates)))
        children = self._parent_to_children.get(parent, ())
        parent.set_value(len(children))


class Observer:
    def __init__(self):
        self.readings = []

    def update(self, sensor, reading):
        self.readings.append((sensor.name, reading.value))


def test_doctests():
    result = doctest.testmod(sensortree)
    assert result.attempted > 10 and result.failed == 0


# -- GenericSensorTree -----------------------------------------------------------------------

def test_generic_tree_is_abstract():
    tree = GenericSensorTree()
    parent, child = integer("parent"), integer("child")
    with pytest.raises(NotImplementedError, match="recalculate"):
        tree.add_links(parent, [child])


def test_generic_links_children_parents_and_updates():
    tree = RecordingTree()
    parent, a, b = integer("parent"), integer("a"), integer("b")
    assert parent not in tree and "not a sensor" not in tree and [] not in tree
    tree.add_links(parent, [a, b])
    assert tree.calls == [(parent, (a, b))]
    assert parent.value() == 2
    assert parent in tree and a in tree and b in tree
    assert tree.children(parent) == {a, b}
    assert tree.children(a) == set()
    assert tree.parents(a) == {parent} and tree.parents(parent) == set()
    tree.children(parent).clear()  # a copy
    assert tree.children(parent) == {a, b}
    tree.calls.clear()
    a.set_value(5)
    assert tree.calls == [(parent, (a,))]
    tree.calls.clear()
    parent.set_value(9)  # parent has no parents: nothing to recalculate
    assert tree.calls == []
    tree.add_links(parent, [a])  # existing link: ignored, parent recalculated
    assert tree.children(parent) == {a, b}
    tree.calls.clear()
    tree.remove_links(parent, [a])
    assert tree.calls == [(parent, (a,))] and parent.value() == 1
    assert a not in tree and tree.children(parent) == {b}
    tree.calls.clear()
    a.set_value(6)  # the tree detached from a
    assert tree.calls == []
    with pytest.raises(ValueError, match="not in tree"):
        tree.children(a)
    with pytest.raises(ValueError, match="not in tree"):
        tree.parents(a)
    tree.remove_links(parent, [a])  # missing link: ignored
    tree.remove_links(parent, [b])
    assert parent not in tree and b not in tree
    tree.calls.clear()
    b.set_value(1)
    parent.set_value(1)
    assert tree.calls == []


def test_generic_tree_attaches_once_and_detaches():
    tree = RecordingTree()
    p1, p2, child = integer("p1"), integer("p2"), integer("child")
    tree.add_links(p1, [child])
    tree.add_links(p2, [child])
    tree.calls.clear()
    child.set_value(3)
    assert sorted(parent.name for parent, _ in tree.calls) == ["p1", "p2"]  # one call each
    tree.remove_links(p1, [child])
    assert child in tree and tree.parents(child) == {p2}
    tree.calls.clear()
    child.set_value(4)
    assert tree.calls == [(p2, (child,))]


def test_cycles_are_refused():
    tree = RecordingTree()
    a, b, c = integer("a"), integer("b"), integer("c")
    tree.add_links(a, [b])
    tree.add_links(b, [c])
    with pytest.raises(ValueError, match="cycle"):
        tree.add_links(c, [a])
    with pytest.raises(ValueError, match="cycle"):
        tree.add_links(a, [a])
    assert tree.children(c) == set() and tree.parents(a) == set()
    c.set_value(1)  # still a tree: no endless recursion


# -- BooleanSensorTree -----------------------------------------------------------------------

def test_boolean_tree_and_of_children():
    tree = BooleanSensorTree()
    parent, a, b = boolean("parent", True), boolean("a", True), boolean("b", False)
    tree.add(parent, a)
    assert parent.value() is True
    tree.add(parent, b)
    assert parent.value() is False
    assert tree.children(parent) == {a, b}
    b.set_value(True)
    assert parent.value() is True
    assert parent.status() == Sensor.NOMINAL
    a.set_value(False)
    assert parent.value() is False
    a.set_value(True)
    assert parent.value() is True
    b.set_value(False)
    tree.remove(parent, b)  # the remaining child is True
    assert parent.value() is True and b not in tree
    b.set_value(False)  # no longer observed
    assert parent.value() is True
    a.set_value(False)
    assert parent.value() is False
    tree.remove(parent, a)  # no children left: True, and the parent leaves the tree
    assert parent.value() is True and parent not in tree and a not in tree
    tree.remove(parent, a)  # unknown link: ignored
    a.set_value(True)
    a.set_value(False)
    assert parent.value() is True


def test_boolean_tree_propagates_up_levels():
    tree = BooleanSensorTree()
    top, mid, leaf1, leaf2 = (boolean(n, True) for n in ("top", "mid", "leaf1", "leaf2"))
    other = boolean("other", True)
    tree.add(top, mid)
    tree.add(top, other)
    tree.add(mid, leaf1)
    tree.add(mid, leaf2)
    assert top.value() is True
    seen = Observer()
    top.attach(seen)
    leaf2.set_value(False)
    assert mid.value() is False and top.value() is False
    assert seen.readings == [("top", False)]
    leaf2.set_value(True)
    assert mid.value() is True and top.value() is True
    other.set_value(False)
    assert top.value() is False and mid.value() is True


def test_boolean_tree_rejects_non_boolean():
    tree = BooleanSensorTree()
    with pytest.raises(ValueError, match="Parent sensor .* is not boolean"):
        tree.add(integer("p"), boolean("c"))
    with pytest.raises(ValueError, match="Child sensor .* is not boolean"):
        tree.add(boolean("p"), integer("c"))
    assert not tree._parent_to_children


# -- AggregateSensorTree ---------------------------------------------------------------------

def sum_rule(parent, children):
    parent.set_value(sum(child.value() for child in children))


def test_aggregate_sum_and_fetch_and_remove():
    tree = AggregateSensorTree()
    a, b, total = integer("a", 1), integer("b", 2), integer("total")
    tree.add(total, sum_rule, (a, b))
    assert total.value() == 3
    a.set_value(10)
    assert total.value() == 12
    b.set_value(-5)
    assert total.value() == 5
    assert tree.fetch(total) == (sum_rule, (a, b))
    with pytest.raises(ValueError, match="already has an aggregate rule"):
        tree.add(total, sum_rule, (a,))
    tree.remove(total)
    assert total.value() == 5 and total not in tree and a not in tree
    a.set_value(100)
    assert total.value() == 5
    with pytest.raises(ValueError, match="does not have an aggregate rule"):
        tree.fetch(total)
    with pytest.raises(ValueError, match="does not have an aggregate rule"):
        tree.remove(total)
    tree.add(total, sum_rule, iter([a]))  # any iterable of children
    assert total.value() == 100


def test_aggregate_rule_sets_status_and_nests():
    def worst(parent, children):
        status = max(child.status() for child in children)
        parent.set_value(min(child.value() for child in children), status=status)

    tree = AggregateSensorTree()
    a, b, c = integer("a", 4), integer("b", 7), integer("c", 1)
    low, total = integer("low"), integer("total")
    tree.add(low, worst, [a, b])
    tree.add(total, sum_rule, [low, c])
    assert low.value() == 4 and total.value() == 5
    b.set_value(2, status=Sensor.WARN)
    assert low.read()[1:] == (Sensor.WARN, 2)
    assert total.value() == 3
    assert tree.parents(low) == {total} and tree.children(low) == {a, b}


def test_aggregate_delayed_rules():
    tree = AggregateSensorTree()
    total = integer("total", -1)
    tree.add_delayed(total, sum_rule, ["x", "y"])
    with pytest.raises(ValueError, match="already has an aggregate rule"):
        tree.add_delayed(total, sum_rule, ["x"])
    with pytest.raises(ValueError, match="already has an aggregate rule"):
        tree.add(total, sum_rule, [])
    with pytest.raises(ValueError, match="does not have an aggregate rule"):
        tree.fetch(total)
    x, y = integer("x", 3), integer("y", 4)
    tree.register_sensor(x)
    assert total.value() == -1 and total not in tree
    x.set_value(5)
    assert total.value() == -1
    tree.register_sensor(y)
    assert total.value() == 9
    rule, children = tree.fetch(total)
    assert rule is sum_rule and set(children) == {x, y}
    y.set_value(1)
    assert total.value() == 6
    with pytest.raises(ValueError, match="already registered"):
        tree.register_sensor(integer("x"))

    # A rule whose children are all registered already is active at once.
    other = integer("other")
    tree.add_delayed(other, sum_rule, ["x"])
    assert other.value() == 5

    # Deregistering a child deactivates the delayed rules that use it...
    # (each recomputed once from the children that remain, as katcp-python does)...
    tree.deregister_sensor(x)
    assert total not in tree and other not in tree and x not in tree
    assert total.value() == 1 and other.value() == 0
    x.set_value(50)
    assert total.value() == 1 and other.value() == 0
    y.set_value(2)
    assert total.value() == 1
    with pytest.raises(ValueError, match="not registered"):
        tree.deregister_sensor(x)
    # ... until a sensor of that name is registered again.
    new_x = integer("x", 20)
    tree.register_sensor(new_x)
    assert total.value() == 22 and other.value() == 20
    new_x.set_value(30)
    assert total.value() == 32 and other.value() == 30


def test_aggregate_deregister_while_incomplete_and_remove_incomplete():
    tree = AggregateSensorTree()
    total = integer("total", -1)
    a, b = integer("a", 1), integer("b", 2)
    tree.register_sensor(a)
    tree.add_delayed(total, sum_rule, ["a", "b"])
    tree.deregister_sensor(a)
    tree.register_sensor(b)
    assert total.value() == -1  # still waiting for "a"
    tree.register_sensor(a)
    assert total.value() == 3
    tree.remove(total)
    assert total not in tree
    tree.add_delayed(total, sum_rule, ["a", "missing"])
    tree.remove(total)  # drops the waiting rule
    tree.register_sensor(integer("missing", 7))
    assert total.value() == 3
    with pytest.raises(ValueError):
        tree.remove(total)


def test_aggregate_deregister_recomputes_once_from_remaining_children():
    """katcp-python 0.9.3 recomputes the parent from the remaining children (twice); we do once."""
    tree = AggregateSensorTree()
    calls = []

    def rule(parent, children):
        calls.append(sorted(c.name for c in children))
        sum_rule(parent, children)

    total = integer("total", -1)
    a, b = integer("a", 3), integer("b", 4)
    tree.add_delayed(total, rule, ["a", "b"])
    tree.register_sensor(a)
    tree.register_sensor(b)
    assert total.value() == 7 and calls == [["a", "b"]]
    del calls[:]
    tree.deregister_sensor(a)
    assert calls == [["b"]]
    assert total.value() == 4  # not the stale 7
    a.set_value(10)
    b.set_value(5)
    assert total.value() == 4 and calls == [["b"]]  # inactive until "a" is back
    tree.register_sensor(a)
    assert total.value() == 15


def test_link_queries_return_independent_sets():
    """children()/parents() give sets (copies), as katcp-python's do, in every tree kind."""
    for tree in (RecordingTree(), BooleanSensorTree(), AggregateSensorTree()):
        parent = boolean("p") if isinstance(tree, BooleanSensorTree) else integer("p")
        child = boolean("c") if isinstance(tree, BooleanSensorTree) else integer("c")
        if isinstance(tree, BooleanSensorTree):
            tree.add(parent, child)
        elif isinstance(tree, AggregateSensorTree):
            tree.add(parent, sum_rule, [child])
        else:
            tree.add_links(parent, [child])
        kids, dads = tree.children(parent), tree.parents(child)
        assert type(kids) is set and kids == {child}
        assert type(dads) is set and dads == {parent}
        assert type(tree.children(child)) is set and type(tree.parents(parent)) is set
        kids.clear()
        dads.clear()
        assert tree.children(parent) == {child} and tree.parents(child) == {parent}


def test_aggregate_deregister_leaves_plain_rules_alone():
    tree = AggregateSensorTree()
    a, total = integer("a", 1), integer("total")
    tree.register_sensor(a)
    tree.add(total, sum_rule, [a])
    tree.deregister_sensor(a)
    a.set_value(8)
    assert total.value() == 8


# -- End to end: a tree's parent sensor served to a real KATCP client --------------------------

class TreeServer(DeviceServer):
    VERSION_INFO = ("tree-server", 0, 1)
    BUILD_INFO = ("tree-server", 0, 1, "")

    def setup_sensors(self):
        self.a = integer("a", 1)
        self.b = integer("b", 2)
        self.total = integer("total")
        self.all_ok = boolean("all.ok")
        self.ok1, self.ok2 = boolean("ok1", True), boolean("ok2", True)
        for sensor in (self.a, self.b, self.total, self.all_ok, self.ok1, self.ok2):
            self.add_sensor(sensor)
        self.sum_tree = AggregateSensorTree()
        self.sum_tree.add(self.total, sum_rule, [self.a, self.b])
        self.ok_tree = BooleanSensorTree()
        self.ok_tree.add(self.all_ok, self.ok1)
        self.ok_tree.add(self.all_ok, self.ok2)


def test_tree_parents_are_reported_to_clients():
    server = TreeServer("127.0.0.1", 0)
    assert server.start(timeout=TIMEOUT)

    async def main():
        client = await asyncio.wait_for(aiokatcp.Client.connect(*server.bind_address[:2]),
                                        TIMEOUT)
        try:
            updates: asyncio.Queue = asyncio.Queue()
            client.add_inform_callback(
                "sensor-status",
                lambda *args: updates.put_nowait([bytes(a) for a in args[2:]]))
            reply, informs = await client.request("sensor-value", "total")
            assert [bytes(x) for x in informs[0].arguments[2:]] == [b"total", b"nominal", b"3"]
            await client.request("sensor-sampling", "total", "event")
            await client.request("sensor-sampling", "all.ok", "event")
            initial = {(await asyncio.wait_for(updates.get(), TIMEOUT))[0] for _ in range(2)}
            assert initial == {b"total", b"all.ok"}
            server.a.set_value(40)  # from this (non-loop) thread, as instruments do
            assert await asyncio.wait_for(updates.get(), TIMEOUT) == [b"total", b"nominal",
                                                                      b"42"]
            server.ok2.set_value(False)
            assert await asyncio.wait_for(updates.get(), TIMEOUT) == [b"all.ok", b"nominal",
                                                                      b"0"]
        finally:
            client.close()
            await asyncio.wait_for(client.wait_closed(), TIMEOUT)

    try:
        asyncio.run(asyncio.wait_for(main(), 4 * TIMEOUT))
    finally:
        server.stop(timeout=TIMEOUT)
        server.join(timeout=TIMEOUT)
