"""Containers of client resources and groups of clients (see katcp.resource_client)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Dict

import tornado.gen
import tornado.ioloop

from katcp._resource import resource
from katcp._resource.client import KATCPClientResource, _NameAttrDict
from katcp._aio.futures import until_any, until_some_settled
from katcp._aio.loopcalls import in_loop_thread
from katcp._resource.helpers import list_sensors
from katcp._resource.inspecting_state import with_optional_timeout
from katcp._resource.resource import escape_name

log = logging.getLogger("katcp.resource_client")

# Log sync progress for containers with at least this many children.
PROGRESS_LOG_MIN_CHILDREN = 10
PROGRESS_LOG_INTERVAL = 1.0


class _FutureDict(dict):
    """``{name: future}`` that can also be awaited (or yielded) as a whole."""

    def __await__(self):
        return tornado.gen.multi(dict(self)).__await__()


class GroupResults(dict):
    """Results of a group request: ``{client_name: KATCPReply}``.

    Truthy if and only if every request succeeded.
    """

    def __bool__(self) -> bool:
        return self.succeeded

    @property
    def succeeded(self) -> bool:
        """True if all requests in the group succeeded."""
        return all(bool(r) for r in self.values())


class _QuorumResults(dict):
    """Results of :meth:`ClientGroup.wait`, truthy when a quorum was reached."""

    def __init__(self, results, quorum):
        super().__init__(results)
        self._quorum = quorum

    def __bool__(self):
        return sum(1 for v in self.values() if v) >= self._quorum


class GroupRequest:
    """Callable that issues one request on every client of a group.

    Parameters
    ----------
    group : :class:`ClientGroup`
        The group.
    name : str
        Python identifier of the request.
    description : str
        Request description (used as the docstring).
    """

    def __init__(self, group, name, description):
        self.group = group
        self.name = name
        self.description = description
        self.__doc__ = "\n".join(("Group request to multiple clients.", "", description or ""))

    def __call__(self, *args, **kwargs):
        """Issue the request on every client of the group that has it.

        Returns
        -------
        tornado Future
            Resolves with a :class:`GroupResults` ``{client_name: KATCPReply}``.
        """
        return tornado.gen.convert_yielded(self._call(args, kwargs))

    async def _call(self, args, kwargs):
        names, futures = [], []
        for client in self.group.clients:
            request = dict.get(client.req, self.name)
            if request is None:
                continue
            names.append(client.name)
            futures.append(request(*args, **kwargs))
        replies = await asyncio.gather(*futures)
        return GroupResults(zip(names, replies))


class ClientGroup:
    """A named group of client resources; group requests go to every member.

    Parameters
    ----------
    name : str
        Name of the group.
    clients : sequence of :class:`KATCPClientResource`
        Member resources.
    """

    def __init__(self, name, clients):
        self.name = name
        self.clients = tuple(clients)
        self._req = _NameAttrDict()
        #: Request keys each member (by id) had at its last update, and how many members
        #: have each key: an update then costs its own requests, not the whole group's.
        self._keys_of: Dict[int, frozenset] = {}
        self._holders: Dict[str, int] = {}
        for client in self.clients:
            self.client_updated(client)

    def __iter__(self):
        return iter(self.clients)

    def __getitem__(self, index):
        return self.clients[index]

    def __len__(self):
        return len(self.clients)

    @property
    def req(self):
        """AttrDict of :class:`GroupRequest` keyed by request identifier."""
        return self._req

    def has_member(self, client) -> bool:
        """Whether `client` is a member of this group."""
        return id(client) in self._keys_of

    def client_updated(self, client):
        """Refresh the group requests after `client` (a member) gained or lost requests."""
        old = self._keys_of.get(id(client), frozenset())
        new = frozenset(dict.keys(client.req))
        self._keys_of[id(client)] = new
        holders = self._holders
        for key in old - new:
            left = holders[key] - 1
            if left:
                holders[key] = left
            else:
                del holders[key]
                self._req.pop(key, None)
        for key in new - old:
            holders[key] = holders.get(key, 0) + 1
            if key not in self._req:
                self._req[key] = GroupRequest(self, key, dict.__getitem__(client.req, key)
                                              .description)

    def is_connected(self) -> bool:
        """True if all clients are connected."""
        return all(c.is_connected() for c in self.clients)

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name, strategy_and_params):
        """Set a strategy on the named sensor of every client.

        Returns
        -------
        tornado Future
            Resolves with ``{client_name: result}``.
        """
        futures = {c.name: c.set_sampling_strategy(sensor_name, strategy_and_params)
                   for c in self.clients}
        results = yield futures
        return results

    @tornado.gen.coroutine
    def set_sampling_strategies(self, filter, strategy_and_params):
        """Set a strategy on the matching sensors of every client.

        Returns
        -------
        tornado Future
            Resolves with ``{client_name: result}``.
        """
        futures = {c.name: c.set_sampling_strategies(filter, strategy_and_params)
                   for c in self.clients}
        results = yield futures
        return results

    @tornado.gen.coroutine
    def wait(self, sensor_name, condition_or_value, timeout=5.0, quorum=None,
             max_grace_period=1.0):
        """Wait for a sensor present on all clients to satisfy a condition.

        Parameters
        ----------
        sensor_name : str
            Sensor name (identifier on each client).
        condition_or_value : obj or callable
            As for :meth:`katcp.resource.KATCPResource.wait`.
        timeout : float or None
            Total time to wait (including the grace period).
        quorum : None, int or float
            Number of clients required (int), or fraction of clients in [0, 1]
            rounded up (float); None means all.  Note 1.0 means all and 1 one.
        max_grace_period : float or None
            After the quorum (or the initial timeout), wait up to this long for
            the remaining clients.

        Returns
        -------
        tornado Future
            Resolves with ``{client_name: bool}``, truthy if the quorum was reached.
        """
        n = len(self.clients)
        if quorum is None:
            quorum = n
        elif quorum > 1:
            if not isinstance(quorum, int):
                raise TypeError(f"Quorum parameter {quorum!r} must be an integer "
                                "if outside range [0, 1]")
        elif isinstance(quorum, float):
            quorum = int(math.ceil(quorum * n))
        if timeout and max_grace_period:
            grace_period = min(max_grace_period, timeout / 2.0)
            initial_timeout = timeout - grace_period
        else:
            grace_period = max_grace_period
            initial_timeout = timeout
        futures = {c.name: c.wait(sensor_name, condition_or_value, initial_timeout)
                   for c in self.clients}
        initial = yield until_some_settled(done_at_least=quorum, **futures)
        results = {name: False for name in futures}
        results.update(dict(initial))
        stragglers = {c.name: c.wait(sensor_name, condition_or_value, grace_period)
                      for c in self.clients if not results.get(c.name)}
        if stragglers:
            rest = yield until_some_settled(**stragglers)
            results.update(dict(rest))
        for f in futures.values():
            f = tornado.gen.convert_yielded(f)
            if not f.done():
                f.cancel()
        return _QuorumResults(results, quorum)


class KATCPClientResourceContainer(resource.KATCPResource):
    """Container of several :class:`KATCPClientResource` children.

    ``.sensor`` and ``.req`` hold the union of the children's sensors and
    requests, prefixed with ``<child>_`` (except identifiers that start with
    ``agg_``, which are kept as they are).

    Parameters
    ----------
    resources_spec : dict
        ``name`` : str; ``description`` : str (optional);
        ``clients`` : ``{child_name: resource_spec}`` (as for KATCPClientResource);
        ``groups`` : ``{group_name: [child_name, ...]}`` (optional);
        ``ssl``, ``user``, ``password`` (optional): defaults for every child that does
        not set its own (TLS context and login; see KATCPClientResource).
    logger : logging.Logger
    """

    _names_sensors_by_child = True

    #: True if the class keeps :meth:`set_sampling_strategy`, so that
    #: ``set_sampling_strategies`` may hand each child its sensors in bulk (set per class).
    _bulk_strategies = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._bulk_strategies = (cls.set_sampling_strategy
                                is KATCPClientResourceContainer.set_sampling_strategy)

    def __init__(self, resources_spec, logger=log):
        super().__init__()
        self._resources_spec = resources_spec
        self._logger = logger
        self._name = resources_spec["name"]
        self._description = resources_spec.get("description", "")
        self._children = _NameAttrDict()
        self._sensor = _NameAttrDict()
        self._req = _NameAttrDict()
        self._groups = _NameAttrDict()
        self.ioloop = None
        self._progress_handle = None
        self._init_resources()
        self._init_groups()

    def _init_resources(self):
        for res_name, res_spec in self._resources_spec.get("clients", {}).items():
            res_spec = self._child_spec(res_name, res_spec)
            res = self.client_resource_factory(res_spec, parent=self, logger=self._logger)
            self._children[escape_name(res_name)] = res

    def _init_groups(self):
        for group_name, client_names in self._resources_spec.get("groups", {}).items():
            clients = tuple(self._children[escape_name(n)] for n in client_names)
            self._groups[escape_name(group_name)] = ClientGroup(group_name, clients)

    def _child_spec(self, res_name, res_spec):
        """A child's resource spec: its own, with its name and the container's defaults."""
        spec = dict(res_spec)
        spec["name"] = res_name
        for key in ("ssl", "user", "password"):
            if key in self._resources_spec and key not in spec:
                spec[key] = self._resources_spec[key]
        return spec

    def client_resource_factory(self, res_spec, parent, logger):
        """Return a :class:`KATCPClientResource` (override for testing)."""
        return KATCPClientResource(res_spec, parent=parent, logger=logger)

    # -- properties --------------------------------------------------------
    @property
    def name(self):
        """Name of the container."""
        return self._name

    @property
    def address(self):
        """Containers have no single address (None)."""
        return None

    @property
    def children(self):
        """AttrDict of child resources keyed by escaped name."""
        return self._children

    @property
    def groups(self):
        """AttrDict of :class:`ClientGroup` keyed by escaped name."""
        return self._groups

    @property
    def req(self):
        """Union of the children's requests, keys prefixed ``<child>_``."""
        return self._req

    @property
    def sensor(self):
        """Union of the children's sensors, keys prefixed ``<child>_``."""
        return self._sensor

    @property
    def sensors(self):
        """Alias of :attr:`sensor`."""
        return self._sensor

    @property
    def parent(self):
        """Containers are at the top (None)."""
        return None

    def is_connected(self):
        """True if all children are connected."""
        return all(c.is_connected() for c in dict.values(self._children))

    # -- child notifications -----------------------------------------------
    @staticmethod
    def _keyer(child):
        """Map a child's keys to the container's: ``<child>_<key>``, except aggregate
        sensors/requests (``agg_...``), which keep their names unprefixed."""
        prefix = escape_name(child.name) + "_"
        return lambda key: key if key.startswith("agg_") else prefix + key

    def _child_add_sensors(self, child, keys):
        to_key = self._keyer(child)
        sensors = child.sensor
        for key in keys:
            self._sensor[to_key(key)] = dict.__getitem__(sensors, key)

    def _child_remove_sensors(self, child, keys):
        to_key = self._keyer(child)
        for key in keys:
            self._sensor.pop(to_key(key), None)

    def _child_add_requests(self, child, keys):
        to_key = self._keyer(child)
        for key in keys:
            self._req[to_key(key)] = dict.__getitem__(child.req, key)
        self._update_groups(child)

    def _child_remove_requests(self, child, keys):
        to_key = self._keyer(child)
        for key in keys:
            self._req.pop(to_key(key), None)
        self._update_groups(child)

    def _update_groups(self, child):
        for group in self._groups.values():
            if group.has_member(child):
                group.client_updated(child)

    # -- life cycle --------------------------------------------------------
    def set_ioloop(self, ioloop=None):
        """Set the tornado IOLoop for all children (call before :meth:`start`)."""
        self.ioloop = ioloop
        for res in dict.values(self._children):
            res.set_ioloop(ioloop)

    def start(self):
        """Start and connect all the children."""
        if self.ioloop is None:
            self.set_ioloop(tornado.ioloop.IOLoop.current())
        if not in_loop_thread(self.ioloop, idle_is_here=True):
            self.ioloop.add_callback(self.start)
            return
        for res in dict.values(self._children):
            res.start()
        if len(self._children) >= PROGRESS_LOG_MIN_CHILDREN:
            self._schedule_progress_log(asyncio.get_event_loop().time())

    def _schedule_progress_log(self, t0):
        loop = asyncio.get_event_loop()

        def report():
            children = list(dict.values(self._children))
            synced = sum(1 for c in children if c.state == "synced")
            connected = sum(1 for c in children if c.state != "disconnected")
            self._logger.info("%s: %d/%d children synced (%d connected, %d sensors) after %.1f s",
                              self._name, synced, len(children), connected, len(self._sensor),
                              loop.time() - t0)
            if synced < len(children):
                self._progress_handle = loop.call_later(PROGRESS_LOG_INTERVAL, report)
            else:
                self._progress_handle = None

        self._progress_handle = loop.call_later(PROGRESS_LOG_INTERVAL, report)

    def stop(self):
        """Stop all child resources."""
        if self._progress_handle is not None:
            self._progress_handle.cancel()
            self._progress_handle = None
        for res in dict.values(self._children):
            res.stop()

    def until_stopped(self, timeout=None):
        """Return ``{child_name: future}`` of futures resolving when each child stops.

        As in katcp-python the result is a dict; it can also be awaited (or yielded) as a
        whole, which waits for every child.
        """
        return _FutureDict(
            (name, res.until_stopped(timeout)) for name, res in dict.items(self._children))

    def set_active(self, active):
        """Mark the container and every child active or inactive (as katcp-python)."""
        super().set_active(active)
        for child in dict.values(self._children):
            child.set_active(active)

    def add_child_resource_client(self, res_name, res_spec):
        """Add a child resource client and start its connection.

        Returns
        -------
        :class:`KATCPClientResource`
            The new child.
        """
        res_spec = self._child_spec(res_name, res_spec)
        res = self.client_resource_factory(res_spec, parent=self, logger=self._logger)
        self._children[escape_name(res_name)] = res
        if self.ioloop is not None:
            res.set_ioloop(self.ioloop)
        res.start()
        return res

    def add_group(self, group_name, group_client_names):
        """Add a :class:`ClientGroup` of the named children to :attr:`groups`."""
        groups = self._resources_spec.setdefault("groups", {})
        groups[group_name] = list(group_client_names)
        clients = tuple(self._children[escape_name(n)] for n in group_client_names)
        self._groups[escape_name(group_name)] = ClientGroup(group_name, clients)

    # -- state futures -----------------------------------------------------
    def until_all_children_in_state(self, state, timeout=None):
        """Future resolving when all children are in `state`."""
        futures = [c.until_state(state) for c in dict.values(self._children)]
        return with_optional_timeout(tornado.gen.multi(futures), timeout)

    def until_any_child_in_state(self, state, timeout=None):
        """Future resolving when any child is in `state`."""
        futures = [c.until_state(state) for c in dict.values(self._children)]
        return with_optional_timeout(until_any(*futures), timeout)

    def until_synced(self, timeout=None):
        """Future resolving when all children are synced.

        Uses each child's public :meth:`until_synced`, so subclasses of the child class are
        honoured; already resolved if every child is synced.
        """
        futures = [c.until_synced() for c in dict.values(self._children)]
        return with_optional_timeout(tornado.gen.multi(futures), timeout)

    def until_not_synced(self, timeout=None):
        """Future resolving when any child is not synced.

        Uses each child's public :meth:`until_not_synced`; already resolved if a child is
        not synced.
        """
        futures = [c.until_not_synced() for c in dict.values(self._children)]
        return with_optional_timeout(until_any(*futures), timeout)

    # -- sensors -----------------------------------------------------------
    def list_sensors(self, filter="", strategy=False, status="",
                     use_python_identifiers=True, tuple=False, refresh=False):
        """List the children's sensors matching certain criteria.

        See :meth:`katcp.resource.KATCPResource.list_sensors`; names are
        prefixed with the child's name and a dot.
        """
        return list_sensors(self, dict.items(self._sensor), filter, strategy, status,
                            use_python_identifiers, tuple, refresh)

    def _sensor_child(self, sensor_name):
        key = escape_name(sensor_name)
        sensor_obj = self._sensor.get(key)
        if sensor_obj is None:
            raise resource.KATCPSensorError(f"Unknown sensor {sensor_name!r} in {self._name!r}")
        return sensor_obj, self._children[escape_name(sensor_obj.parent_name)]

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name, strategy_and_parms):
        """Set the strategy of one existing sensor (``<child>_<sensor>``).

        Returns
        -------
        tornado Future
            Resolves with ``{child_name: {sensor_identifier: strategy or error}}``.
        """
        sensor_obj, child = self._sensor_child(sensor_name)
        result = yield child.set_sampling_strategy(sensor_obj.normalised_name,
                                                   strategy_and_parms)
        return {child.name: result}

    @tornado.gen.coroutine
    def set_sampling_strategies(self, filter, strategy_and_parms):
        """Set the strategy of all existing sensors matching `filter`.

        Goes through :meth:`set_sampling_strategy` for each sensor when the class
        overrides it; otherwise each child sets its sensors in bulk (through its
        own ``set_sampling_strategy`` if the child's class overrides that),
        children in parallel.

        Returns
        -------
        tornado Future
            Resolves with ``{child_name: {sensor_identifier: strategy or error}}``.
        """
        results = yield self.list_sensors(filter=filter)
        if not self._bulk_strategies:
            replies = yield [self.set_sampling_strategy(r.python_identifier, strategy_and_parms)
                             for r in results]
            merged: Dict[str, Any] = {}
            for reply in replies:
                for child_name, child_result in reply.items():
                    merged.setdefault(child_name, {}).update(child_result)
            return merged
        per_child: Dict[str, Any] = {}
        for r in results:
            per_child.setdefault(r.object.parent_name, []).append(r.object.normalised_name)
        futures = {}
        for child_name, keys in per_child.items():
            child = self._children[escape_name(child_name)]
            futures[child_name] = child._set_strategies_of(keys, strategy_and_parms)
        out = yield futures
        return out

    @tornado.gen.coroutine
    def set_sensor_listener(self, sensor_name, listener):
        """Set a listener on an existing sensor (``<child>_<sensor>``).

        Returns
        -------
        tornado Future
            Resolves with ``{child_name: {sensor_identifier: listener}}``.
        """
        sensor_obj, child = self._sensor_child(sensor_name)
        result = yield child.set_sensor_listener(sensor_obj.normalised_name, listener)
        return {child.name: result}

    def __repr__(self):
        return f"<{type(self).__name__} {self._name!r} children={list(self._children)}>"
