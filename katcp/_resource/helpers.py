"""Helpers shared by the resource clients: mapping proxies, list_sensors, futures."""

from __future__ import annotations

import asyncio
import collections.abc
import logging
import re
from typing import Any, Callable

import tornado.gen
from tornado.concurrent import Future, future_add_done_callback

from katcp._resource.resource import SensorResultTuple

log = logging.getLogger("katcp.resource_client")


class MappingProxy(collections.abc.Mapping):
    """Read-only view of a mapping whose values are passed through `wrapper`."""

    def __init__(self, mapping, wrapper: Callable[[Any], Any]):
        self._mapping = mapping
        self._wrapper = wrapper

    def __iter__(self):
        return iter(self._mapping)

    def __len__(self):
        return len(self._mapping)

    def __contains__(self, key):
        return key in self._mapping

    def __getitem__(self, key):
        return self._wrapper(self._mapping[key])


class AttrMappingProxy(MappingProxy):
    """:class:`MappingProxy` whose items are also attributes (``proxy.name``)."""

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        try:
            return self[attr]
        except KeyError:
            raise AttributeError(attr) from None

    def __dir__(self):
        return list(self.keys())


def transform_future(transformation: Callable[[Any], Any], future) -> Future:
    """Return a future resolving with ``transformation(future.result())``.

    Exceptions of `future` (or of the transformation) are passed on.
    """
    future = tornado.gen.convert_yielded(future)
    new_future: Future = Future()

    def _transform(f):
        if new_future.done():
            return
        if f.cancelled():
            new_future.cancel()
            return
        exc = f.exception()
        if exc is not None:
            new_future.set_exception(exc)
            return
        try:
            new_future.set_result(transformation(f.result()))
        except Exception as e:
            new_future.set_exception(e)

    future_add_done_callback(future, _transform)
    return new_future


@tornado.gen.coroutine
def list_sensors(parent_class, sensor_items, filter, strategy, status,
                 use_python_identifiers, tuple, refresh):
    """Shared implementation of ``list_sensors`` for resources and containers.

    Parameters
    ----------
    parent_class : :class:`katcp.resource.KATCPResource`
        The resource being listed (containers prefix names with the child name).
    sensor_items : iterable of (python_identifier, KATCPSensor)
    filter, strategy, status, use_python_identifiers, tuple, refresh
        As for :meth:`katcp.resource.KATCPResource.list_sensors`.

    Returns
    -------
    tornado Future
        Resolves with a list of :class:`SensorResultTuple` (or plain tuples).
    """
    filter_re = re.compile(filter)
    status_re = re.compile(status) if status else None
    none_strat = ("none",)
    sensor_dict = dict(sensor_items)
    is_container = parent_class._names_sensors_by_child
    matches = []
    for sensor_identifier in sorted(sensor_dict):
        sensor_obj = sensor_dict[sensor_identifier]
        search_name = sensor_identifier if use_python_identifiers else sensor_obj.name
        if not filter_re.search(search_name):
            continue
        if strategy and tuple_(sensor_obj.sampling_strategy) == none_strat:
            continue
        matches.append((sensor_identifier, sensor_obj))
    if refresh:
        yield [sensor_obj.get_value() for _, sensor_obj in matches]
    found = []
    for sensor_identifier, sensor_obj in matches:
        reading = sensor_obj.reading
        if status_re is not None and not status_re.search(reading.status):
            continue
        prefix = ""
        if is_container and not sensor_obj.name.startswith("agg_"):
            prefix = sensor_obj.parent_name + "."
        if tuple:
            found.append((prefix + sensor_obj.name, reading.value, reading.timestamp,
                          sensor_obj.type, sensor_obj.units, reading.received_timestamp,
                          reading.status, sensor_obj.sampling_strategy))
        else:
            found.append(SensorResultTuple(
                object=sensor_obj, name=prefix + sensor_obj.name,
                python_identifier=sensor_identifier, description=sensor_obj.description,
                units=sensor_obj.units, type=sensor_obj.type, reading=reading))
    return found


tuple_ = tuple


def monitor_resource_sync_state(resource, callback, exit_event=None):
    """Coroutine that calls ``callback(synced)`` on every sync state change.

    Always starts with ``callback(False)`` (assume not synced), then calls
    ``callback(True)`` whenever the resource becomes synced and
    ``callback(False)`` whenever it stops being synced.

    Parameters
    ----------
    resource : :class:`KATCPClientResource` or container
        Resource to watch.
    callback : callable
        Called with True or False.
    exit_event : :class:`katcp.core.AsyncEvent`, :class:`asyncio.Event` or tornado Event, optional
        Stop monitoring (without a further callback) when set.

    Returns
    -------
    tornado Future
        Resolves when monitoring stops.
    """
    _call_sync_callback(callback, False)
    done: Future = Future()
    task = asyncio.ensure_future(_monitor_sync_state(resource, callback))

    def task_done(t):
        if done.done():
            return
        if t.cancelled():
            done.cancel()
        elif t.exception() is not None:
            done.set_exception(t.exception())
        else:
            done.set_result(None)

    task.add_done_callback(task_done)
    if exit_event is not None:
        waiter = exit_event.until_set() if hasattr(exit_event, "until_set") else exit_event.wait()
        exit_future = tornado.gen.convert_yielded(waiter)

        def exit_now(_):
            # Ends in the loop iteration the event is set (as katcp-python's tornado 4 did);
            # the monitor task is cancelled before it can call the callback again.
            task.cancel()
            if not done.done():
                done.set_result(None)

        future_add_done_callback(exit_future, exit_now)
        done.add_done_callback(lambda _: exit_future.cancel())
    return done


def _call_sync_callback(callback, value):
    try:
        callback(value)
    except Exception:
        log.exception("Unhandled exception in sync state callback")


async def _monitor_sync_state(resource, callback):
    while True:
        await resource.until_synced()
        _call_sync_callback(callback, True)
        await resource.until_not_synced()
        _call_sync_callback(callback, False)
