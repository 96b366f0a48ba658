"""Sensor trees: sensors whose values are computed from other sensors.

A sensor tree links *parent* sensors to the *child* sensors they depend on.
The tree attaches itself as an observer (:meth:`katcp.Sensor.attach`) to every
sensor in it, so that whenever a child's value is set the tree recalculates
each of its parents.  A parent may itself be the child of another parent:
setting the parent's value notifies the tree again, and the change propagates
up the tree.

:class:`GenericSensorTree`
    The link bookkeeping and observation; subclasses decide how a parent is
    recalculated (:meth:`GenericSensorTree.recalculate`).
:class:`BooleanSensorTree`
    Boolean sensors; a parent is True exactly when all its children are True.
:class:`AggregateSensorTree`
    A parent is computed by a rule function of the parent and its children,
    optionally naming children that will only be registered later.

Notes
-----
Recalculation runs synchronously in whichever thread sets the child sensor,
as sensor observers do.  The trees hold no locks: update the sensors of one
tree from one thread (typically the ioloop's).
"""

from __future__ import annotations

from katcp._protocol.sensortree import (
    AggregateSensorTree,
    BooleanSensorTree,
    GenericSensorTree,
)

__all__ = [
    "AggregateSensorTree",
    "BooleanSensorTree",
    "GenericSensorTree",
]
