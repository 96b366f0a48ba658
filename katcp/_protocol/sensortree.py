"""Sensor trees: sensors computed from other sensors; documented and public in
:mod:`katcp.sensortree`."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Set, Tuple

from katcp._protocol.sensor import Reading, Sensor

__all__ = ["AggregateSensorTree", "BooleanSensorTree", "GenericSensorTree"]

#: Signature of an aggregate rule: ``rule(parent, children)`` sets the parent's value.
RuleFunction = Callable[[Sensor, Any], None]


class GenericSensorTree:
    """A tree of sensors linked by dependencies.

    Sensors with no parent are at the top of the tree, sensors with no
    children at the bottom.  Subclasses override :meth:`recalculate` to set a
    parent's value from its children; :class:`BooleanSensorTree` and
    :class:`AggregateSensorTree` are the ready-made kinds.

    Notes
    -----
    ``sensor in tree`` tells whether a sensor is in the tree.
    """

    def __init__(self) -> None:
        # child sensor -> set of parent sensors, parent sensor -> set of child sensors;
        # every sensor in the tree is a key of both.
        self._child_to_parents: Dict[Sensor, Set[Sensor]] = {}
        self._parent_to_children: Dict[Sensor, Set[Sensor]] = {}

    def update(self, sensor: Sensor, reading: Reading) -> None:
        """Recalculate the parents of a sensor whose value changed.

        This is the observer callback the tree's sensors call on every set.

        Parameters
        ----------
        sensor : :class:`katcp.Sensor`
            The sensor whose value has changed.
        reading : :class:`katcp.core.Reading`
            Its new (timestamp, status, value) reading.
        """
        for parent in list(self._child_to_parents.get(sensor, ())):
            self.recalculate(parent, (sensor,))

    def _add_sensor(self, sensor: Sensor) -> None:
        """Add a sensor to the tree, without links."""
        self._parent_to_children[sensor] = set()
        self._child_to_parents[sensor] = set()

    def _remove_sensor(self, sensor: Sensor) -> None:
        """Remove a sensor from the tree."""
        del self._parent_to_children[sensor]
        del self._child_to_parents[sensor]

    def add_links(self, parent: Sensor, children: Iterable[Sensor]) -> None:
        """Create dependency links from a parent to children.

        Sensors not yet in the tree are added.  After all the links have been
        created the parent is recalculated, then the tree attaches to the
        sensors it was not yet attached to.  Links that already exist are
        ignored.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The sensor that depends on `children`.
        children : sequence of :class:`katcp.Sensor`
            The sensors `parent` depends on.

        Raises
        ------
        ValueError
            If a link would make a cycle (a sensor depending on itself, directly
            or not); the tree is then unchanged.
        """
        children = list(children)
        self._check_acyclic(parent, children)
        new_sensors: List[Sensor] = []
        if parent not in self:
            self._add_sensor(parent)
            new_sensors.append(parent)
        for child in children:
            if child not in self:
                self._add_sensor(child)
                new_sensors.append(child)
            self._parent_to_children[parent].add(child)
            self._child_to_parents[child].add(parent)
        self.recalculate(parent, children)
        for sensor in new_sensors:
            sensor.attach(self)

    def _check_acyclic(self, parent: Sensor, children: List[Sensor]) -> None:
        """Raise ValueError if linking `parent` to `children` would close a cycle."""
        ancestors = set()
        pending = [parent]
        while pending:
            sensor = pending.pop()
            if sensor in ancestors:
                continue
            ancestors.add(sensor)
            pending.extend(self._child_to_parents.get(sensor, ()))
        for child in children:
            if child in ancestors:
                raise ValueError(f"Linking parent {parent!r} to child {child!r} would make "
                                 "a cycle in the sensor tree")

    def remove_links(self, parent: Sensor, children: Iterable[Sensor]) -> None:
        """Remove dependency links from a parent to children.

        Sensors left without any link are removed from the tree, and the tree
        detaches from them.  After all the links have been removed the parent
        is recalculated.  Links that do not exist are ignored.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The sensor that used to depend on `children`.
        children : sequence of :class:`katcp.Sensor`
            The sensors `parent` used to depend on.
        """
        children = list(children)
        old_sensors: List[Sensor] = []
        if parent in self:
            for child in children:
                if child not in self:
                    continue
                self._parent_to_children[parent].discard(child)
                self._child_to_parents[child].discard(parent)
                if not self._child_to_parents[child] and not self._parent_to_children[child]:
                    self._remove_sensor(child)
                    old_sensors.append(child)
            if not self._child_to_parents[parent] and not self._parent_to_children[parent]:
                self._remove_sensor(parent)
                old_sensors.append(parent)
        for sensor in old_sensors:
            sensor.detach(self)
        self.recalculate(parent, children)

    def __contains__(self, sensor: object) -> bool:
        """Tell whether `sensor` is in the tree (objects that are not sensors never are)."""
        try:
            return sensor in self._parent_to_children
        except TypeError:  # unhashable: cannot be a sensor of the tree
            return False

    def children(self, parent: Sensor) -> Set[Sensor]:
        """Return the children of a parent sensor.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            Parent whose children to return.

        Returns
        -------
        set of :class:`katcp.Sensor`
            A copy of the set of `parent`'s children (empty for a leaf).

        Raises
        ------
        ValueError
            If `parent` is not in the tree.
        """
        if parent not in self:
            raise ValueError(f"Parent sensor {parent!r} not in tree.")
        return self._parent_to_children[parent].copy()

    def parents(self, child: Sensor) -> Set[Sensor]:
        """Return the parents of a child sensor.

        Parameters
        ----------
        child : :class:`katcp.Sensor`
            Child whose parents to return.

        Returns
        -------
        set of :class:`katcp.Sensor`
            A copy of the set of `child`'s parents (empty at the top of the tree).

        Raises
        ------
        ValueError
            If `child` is not in the tree.
        """
        if child not in self:
            raise ValueError(f"Child sensor {child!r} not in tree.")
        return self._child_to_parents[child].copy()

    def recalculate(self, parent: Sensor, updates: Iterable[Sensor]) -> None:
        """Recalculate the value of a parent sensor.

        This is the hook subclasses must override: set `parent`'s value to
        reflect the changes in the sensors listed in `updates`.  The base class
        has no rule to compute a parent from its children, so it raises.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The sensor to recalculate.
        updates : sequence of :class:`katcp.Sensor`
            The children that changed (or were linked or unlinked).  A sensor
            in `updates` may no longer be a child of `parent`.

        Raises
        ------
        NotImplementedError
            Always, in :class:`GenericSensorTree` itself: it is abstract.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must override recalculate(parent, updates): "
            "GenericSensorTree only keeps the links; use BooleanSensorTree, "
            "AggregateSensorTree or a subclass that sets the parent's value")


class BooleanSensorTree(GenericSensorTree):
    """A tree of boolean sensors: each parent is the logical AND of its children.

    A parent with no children is True.

    Examples
    --------
    >>> from katcp.sensor import Sensor
    >>> from katcp.sensortree import BooleanSensorTree
    >>> tree = BooleanSensorTree()
    >>> sensor1 = Sensor(Sensor.BOOLEAN, "sensor1", "First sensor", "")
    >>> sensor2 = Sensor(Sensor.BOOLEAN, "sensor2", "Second sensor", "")
    >>> tree.add(sensor1, sensor2)
    >>> sensor2.set_value(True)
    >>> sensor1.value()
    True
    >>> sensor2.set_value(False)
    >>> sensor1.value()
    False
    """

    def __init__(self) -> None:
        super().__init__()
        # sensor -> the children of it that are currently False
        self._parent_to_not_ok: Dict[Sensor, Set[Sensor]] = {}

    def add(self, parent: Sensor, child: Sensor) -> None:
        """Make a boolean parent sensor depend on a boolean child sensor.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The boolean sensor that depends on `child`.
        child : :class:`katcp.Sensor`
            A boolean sensor.

        Raises
        ------
        ValueError
            If a sensor new to the tree is not boolean.
        """
        for role, sensor in (("Parent", parent), ("Child", child)):
            if sensor not in self and sensor.stype != "boolean":
                raise ValueError(f"{role} sensor {sensor!r} is not boolean")
        for sensor in (parent, child):
            if sensor not in self:
                self._parent_to_not_ok[sensor] = set()
        self.add_links(parent, (child,))

    def remove(self, parent: Sensor, child: Sensor) -> None:
        """Remove the dependency of a parent on a child.

        The parent is recalculated from its remaining children; sensors left
        without links leave the tree.  A link that does not exist is ignored.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The sensor that depended on `child`.
        child : :class:`katcp.Sensor`
            The sensor to unlink.
        """
        if parent not in self:
            return
        self.remove_links(parent, (child,))
        for sensor in (parent, child):
            if sensor not in self:
                self._parent_to_not_ok.pop(sensor, None)

    def recalculate(self, parent: Sensor, updates: Iterable[Sensor]) -> None:
        """Set a parent to the logical AND of its children.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The sensor to recalculate.
        updates : sequence of :class:`katcp.Sensor`
            Children that changed, were added or were removed.
        """
        not_ok = self._parent_to_not_ok.setdefault(parent, set())
        children = self._parent_to_children.get(parent, ())
        for sensor in updates:
            if sensor not in children or sensor.value():
                not_ok.discard(sensor)
            else:
                not_ok.add(sensor)
        parent.set_value(not not_ok)


class AggregateSensorTree(GenericSensorTree):
    """A collection of aggregate sensors, each computed by a rule from its children.

    A rule is a function ``rule(parent, children)`` that sets the parent
    sensor's value (and status, if it likes) from the children.  It is called
    when the rule is added and whenever a child's value is set.

    Examples
    --------
    >>> from katcp.sensor import Sensor
    >>> from katcp.sensortree import AggregateSensorTree
    >>> tree = AggregateSensorTree()
    >>> def add_rule(parent, children):
    ...     parent.set_value(sum(child.value() for child in children))
    >>> sensor1 = Sensor(Sensor.INTEGER, "sensor1", "First sensor", "", [-1000, 1000])
    >>> sensor2 = Sensor(Sensor.INTEGER, "sensor2", "Second sensor", "", [-1000, 1000])
    >>> agg = Sensor(Sensor.INTEGER, "sum", "The total", "", [-2000, 2000])
    >>> tree.add(agg, add_rule, (sensor1, sensor2))
    >>> agg.value()
    0
    >>> sensor1.set_value(1)
    >>> agg.value()
    1
    >>> sensor2.set_value(2)
    >>> agg.value()
    3
    """

    def __init__(self) -> None:
        super().__init__()
        # parent -> (rule, children) for active rules
        self._aggregates: Dict[Sensor, Tuple[RuleFunction, Any]] = {}
        # parent -> (rule, names still missing, sensors already registered)
        self._incomplete_aggregates: Dict[Sensor, Tuple[RuleFunction, Set[str], Set[Sensor]]] = {}
        # parent -> (rule, all child names) for rules added with add_delayed
        self._delayed: Dict[Sensor, Tuple[RuleFunction, Tuple[str, ...]]] = {}
        # name -> sensor registered with register_sensor
        self._registered_sensors: Dict[str, Sensor] = {}

    def _check_no_rule(self, parent: Sensor) -> None:
        if parent in self._aggregates or parent in self._incomplete_aggregates:
            raise ValueError(f"Sensor {parent!r} already has an aggregate rule associated")

    def add(self, parent: Sensor, rule_function: RuleFunction, children: Iterable[Sensor]) -> None:
        """Create an aggregation rule.

        The rule is applied at once and then whenever a child's value is set.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The aggregate sensor.
        rule_function : callable
            ``rule_function(parent, children)`` updates the parent's value.
        children : sequence of :class:`katcp.Sensor`
            The sensors the aggregate depends on (passed to the rule as given).

        Raises
        ------
        ValueError
            If `parent` already has a rule.
        """
        self._check_no_rule(parent)
        if not isinstance(children, (list, tuple, set, frozenset)):
            children = tuple(children)
        self._aggregates[parent] = (rule_function, children)
        self.add_links(parent, children)

    def add_delayed(self, parent: Sensor, rule_function: RuleFunction,
                    child_names: Iterable[str]) -> None:
        """Create an aggregation rule before its child sensors exist.

        The rule becomes active (as with :meth:`add`) once a sensor of each
        name has been registered with :meth:`register_sensor`; at once if all
        are registered already.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The aggregate sensor.
        rule_function : callable
            ``rule_function(parent, children)`` updates the parent's value.
        child_names : sequence of str
            Names of the sensors the aggregate depends on.

        Raises
        ------
        ValueError
            If `parent` already has a rule.
        """
        self._check_no_rule(parent)
        names = tuple(child_names)
        reg = self._registered_sensors
        missing = {name for name in names if name not in reg}
        sensors = {reg[name] for name in names if name in reg}
        self._delayed[parent] = (rule_function, names)
        if missing:
            self._incomplete_aggregates[parent] = (rule_function, missing, sensors)
        else:
            self.add(parent, rule_function, sensors)

    def _get_sensor_reference(self, sensor: Sensor) -> str:
        """Return the reference under which a sensor is registered (its name)."""
        return sensor.name

    def register_sensor(self, child: Sensor) -> None:
        """Register a sensor that delayed aggregates (:meth:`add_delayed`) may need.

        Every delayed rule waiting for this sensor's name, and now complete,
        becomes active.

        Parameters
        ----------
        child : :class:`katcp.Sensor`
            A child sensor required by one or more delayed aggregate sensors.

        Raises
        ------
        ValueError
            If a sensor of that name is already registered.
        """
        child_name = self._get_sensor_reference(child)
        if child_name in self._registered_sensors:
            raise ValueError(f"Sensor {child!r} already registered with aggregate tree")
        self._registered_sensors[child_name] = child
        completed = []
        for parent, (_rule, names, sensors) in self._incomplete_aggregates.items():
            if child_name in names:
                names.remove(child_name)
                sensors.add(child)
                if not names:
                    completed.append(parent)
        for parent in completed:
            rule_function, _names, sensors = self._incomplete_aggregates.pop(parent)
            self.add(parent, rule_function, sensors)

    def deregister_sensor(self, child: Sensor) -> None:
        """Deregister a sensor registered with :meth:`register_sensor` (it went away).

        Delayed rules (:meth:`add_delayed`) that depended on it become
        inactive again, their parents unlinked from their children, until a
        sensor of that name is registered anew.  Each such parent is
        recomputed once, by its rule, from the children that remain.  Rules
        added with :meth:`add` are not affected.

        Parameters
        ----------
        child : :class:`katcp.Sensor`
            The sensor (or a sensor of the same name) to deregister.

        Raises
        ------
        ValueError
            If no sensor of that name is registered.
        """
        child_name = self._get_sensor_reference(child)
        if child_name not in self._registered_sensors:
            raise ValueError(f"Sensor {child!r} not registered with aggregate tree")
        registered = self._registered_sensors.pop(child_name)
        for parent, (rule_function, names) in self._delayed.items():
            if child_name not in names:
                continue
            if parent in self._incomplete_aggregates:
                _rule, missing, sensors = self._incomplete_aggregates[parent]
                sensors.discard(registered)
                missing.add(child_name)
            elif parent in self._aggregates:
                _rule, children = self._aggregates.pop(parent)
                self.remove_links(parent, self._linked_children(parent))
                sensors = set(children)
                sensors.discard(registered)
                self._incomplete_aggregates[parent] = (rule_function, {child_name}, sensors)
                # As katcp-python: the parent's value comes from the children that
                # remain, computed once (katcp-python computes it twice).
                rule_function(parent, set(sensors))

    def fetch(self, parent: Sensor) -> Tuple[RuleFunction, Any]:
        """Return the active rule of an aggregate sensor.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The aggregate sensor.

        Returns
        -------
        rule_function : callable
            The rule.
        children : sequence of :class:`katcp.Sensor`
            The children it is applied to.

        Raises
        ------
        ValueError
            If `parent` has no active rule.
        """
        if parent not in self._aggregates:
            raise ValueError(f"Sensor {parent!r} does not have an aggregate rule associated")
        return self._aggregates[parent]

    def remove(self, parent: Sensor) -> None:
        """Remove the aggregation rule of a parent sensor.

        The parent keeps its last value; sensors left without links leave the
        tree.  A delayed rule that is still waiting for children is dropped too.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The aggregate sensor.

        Raises
        ------
        ValueError
            If `parent` has no rule.
        """
        self._delayed.pop(parent, None)
        if self._incomplete_aggregates.pop(parent, None) is not None:
            return
        if parent not in self._aggregates:
            raise ValueError(f"Sensor {parent!r} does not have an aggregate rule associated")
        del self._aggregates[parent]
        self.remove_links(parent, self._linked_children(parent))

    def _linked_children(self, parent: Sensor) -> Set[Sensor]:
        return set(self._parent_to_children.get(parent, ()))

    def recalculate(self, parent: Sensor, updates: Iterable[Sensor]) -> None:
        """Apply a parent's rule to its children.

        Parameters
        ----------
        parent : :class:`katcp.Sensor`
            The aggregate sensor.  Nothing happens if it has no active rule
            (its rule is being removed).
        updates : sequence of :class:`katcp.Sensor`
            Children that changed (unused: the rule sees all the children).
        """
        aggregate = self._aggregates.get(parent)
        if aggregate is not None:
            rule_function, children = aggregate
            rule_function(parent, children)
