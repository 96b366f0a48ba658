"""`DeviceServer` (the standard KATCP requests) and `AsyncDeviceServer`."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Callable

from katcp._protocol.decorators import has_katcp_protocol_flags, request, return_reply
from katcp._protocol.kattypes import Int, Str
from katcp._protocol.message import AsyncReply, FailReply, Message, ProtocolFlags
from katcp._server.namefilter import construct_name_filter, match_names
from katcp._server.sensors import SensorServerBase, _native

__all__ = ["DeviceServer", "AsyncDeviceServer"]

#: ``?help login`` on a server with login (``?login`` has no handler method of its own).
_LOGIN_HELP = ("Log in: ?login USER PASSWORD. The reply is ok and the user's role (read, "
               "control or admin), or fail. Until then only ?login, ?help, ?watchdog and "
               "?version-list are answered.")


class DeviceServer(SensorServerBase):
    """Implements the standard KATCP requests, sensors and sampling on top of DeviceServerBase.

    Inform messages sent:

      * version-connect (on connect; ``version`` and ``build-state`` for KATCP v4)
      * log (via self.log.warn(...), etc)
      * disconnect
      * client-connected (to the other clients, multi-client devices)
      * interface-changed (sensors added or removed while running, KATCP v5)
      * sensor-status (as the sampling strategies dictate)

    Requests handled are:

      * halt
      * help
      * log-level
      * restart [#restartf1]_
      * client-list
      * sensor-list
      * sensor-sampling
      * sensor-value
      * watchdog
      * version-list (only standard in KATCP v5 or later)
      * request-timeout-hint (only if the protocol flags include timeout hints, KATCP v5.1)
      * sensor-sampling-clear (non-standard)

    .. [#restartf1] Restart relies on .set_restart_queue() being used to
      register a restart queue with the device. When the device needs to be
      restarted, it will be added to the restart queue. The queue should be a
      Python queue.Queue object without a maximum size.

    Subclasses can define the tuple VERSION_INFO to set the interface name,
    major and minor version numbers. The BUILD_INFO tuple can be defined to
    give a string describing a particular interface instance and may have a
    fourth element containing additional version information (e.g. rc1).

    Subclasses may manipulate the versions returned by the ?version-list
    command by editing .extra_versions which is a dictionary mapping role or
    component names to (version, build_state_or_serial_no) tuples. The
    build_state_or_serial_no may be None.

    Subclasses should override the .setup_sensors() method to add their sensors.

    """

    # VERSION_INFO, BUILD_INFO and SUPPORTED_PROTOCOL_MAJOR_VERSIONS: see SensorServerBase.

    UNSUPPORTED_REQUESTS_BY_MAJOR_VERSION = {4: {"version-list"}}

    #: A client's ``/regex/`` in ``?sensor-list`` and ``?sensor-value`` is matched
    #: against sensor names for at most this long (seconds) before the loop is given
    #: back to other clients; matching then goes on in the next slice.
    NAME_MATCH_SLICE_SECONDS = 0.002

    # ------------------------------------------------------------- requests

    def request_halt(self, req, msg):
        """Halt the device server.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether scheduling the halt succeeded.

        Examples
        --------
        ::

            ?halt
            !halt ok

        """
        req.reply("ok")
        self._call_in_loop(lambda: self.stop(timeout=None))
        raise AsyncReply()

    def request_help(self, req, msg):
        """Return help on the available requests.

        Return a description of the available requests using a sequence of
        #help informs.

        Parameters
        ----------
        request : str, optional
            The name of the request to return help for (the default is to
            return help for all requests).

        Informs
        -------
        request : str
            The name of a request.
        description : str
            Documentation for the named request.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the help succeeded.
        informs : int
            Number of #help inform messages sent.

        Examples
        --------
        ::

            ?help
            #help halt ...description...
            #help help ...description...
            ...
            !help ok 5

            ?help halt
            #help halt ...description...
            !help ok 1

        """
        docs = {name: method.__doc__ or "" for name, method in self._request_handlers.items()}
        if self.access_control is not None:
            # Answered by the access control, not by a handler method: listed all the same.
            docs.setdefault("login", _LOGIN_HELP)
        if not msg.arguments:
            for name, doc in sorted(docs.items()):
                req.inform(name, doc)
            return req.make_reply("ok", str(len(docs)))
        name = _native(msg.arguments[0])
        doc = docs.get(name)
        if doc is None:
            return req.make_reply("fail", "Unknown request method.")
        req.inform(name, doc.strip())
        return req.make_reply("ok", "1")

    @has_katcp_protocol_flags([ProtocolFlags.REQUEST_TIMEOUT_HINTS])
    @request(Str(optional=True))
    @return_reply(Int(min=0))
    def request_request_timeout_hint(self, req, request):
        """Return timeout hints for requests

        KATCP requests should generally take less than 5s to complete, but some
        requests are unavoidably slow. This results in spurious client timeout
        errors. This request provides timeout hints that clients can use to
        select suitable request timeouts.

        Parameters
        ----------
        request : str, optional
            The name of the request to return a timeout hint for (the default is
            to return hints for all requests that have timeout hints). Returns
            one inform per request. Must be an existing request if specified.

        Informs
        -------
        request : str
            The name of the request.
        suggested_timeout : float
            Suggested request timeout in seconds for the request. If
            `suggested_timeout` is zero (0), no timeout hint is available.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the help succeeded.
        informs : int
            Number of #request-timeout-hint inform messages sent.

        Examples
        --------
        ::

            ?request-timeout-hint
            #request-timeout-hint halt 5
            #request-timeout-hint very-slow-request 500
            ...
            !request-timeout-hint ok 5

            ?request-timeout-hint moderately-slow-request
            #request-timeout-hint moderately-slow-request 20
            !request-timeout-hint ok 1

        Notes
        -----
        ?request-timeout-hint without a parameter will only return informs for
        requests that have specific timeout hints, so it will most probably be a
        subset of all the requests, or even no informs at all.

        """
        handlers = self._request_handlers
        hints = {}
        if request is not None:
            if request not in handlers:
                raise FailReply("Unknown request method")
            hints[request] = getattr(handlers[request], "request_timeout_hint", None) or 0
        else:
            for name, handler in handlers.items():
                hint = getattr(handler, "request_timeout_hint", None)
                if hint:
                    hints[name] = hint
        for name, hint in sorted(hints.items()):
            req.inform(name, float(hint))
        return ("ok", len(hints))

    def request_log_level(self, req, msg):
        """Query or set the current logging level.

        Parameters
        ----------
        level : {'all', 'trace', 'debug', 'info', 'warn', 'error', 'fatal', 'off'}, optional
            Name of the logging level to set the device server to (the default
            is to leave the log level unchanged).

        Returns
        -------
        success : {'ok', 'fail'}
            Whether the request succeeded.
        level : {'all', 'trace', 'debug', 'info', 'warn', 'error', 'fatal', 'off'}
            The log level after processing the request.

        Examples
        --------
        ::

            ?log-level
            !log-level ok warn

            ?log-level info
            !log-level ok info

        """
        if msg.arguments:
            try:
                self.log.set_log_level_by_name(msg.arguments[0])
            except ValueError as exc:
                raise FailReply(str(exc)) from None
        return req.make_reply("ok", self.log.level_name())

    def request_restart(self, req, msg):
        """Restart the device server.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether scheduling the restart succeeded.

        Examples
        --------
        ::

            ?restart
            !restart ok

        """
        if self._restart_queue is None:
            raise FailReply("No restart queue registered -- cannot restart.")
        # .put_nowait never blocks: the queue should have no size limit
        self._restart_queue.put_nowait(self)
        return req.make_reply("ok")

    def request_client_list(self, req, msg):
        """Request the list of connected clients.

        The list of clients is sent as a sequence of #client-list informs.

        Informs
        -------
        addr : str
            The address of the client as host:port with host in dotted quad
            notation. If the address of the client could not be determined
            (because, for example, the client disconnected suddenly) then a
            unique string representing the client is sent instead.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the client list succeeded.
        informs : int
            Number of #client-list inform messages sent.

        Examples
        --------
        ::

            ?client-list
            #client-list 127.0.0.1:53600
            !client-list ok 1

        """
        clients = list(self._client_conns)
        for conn in clients:
            req.inform(conn.address)
        return req.make_reply("ok", str(len(clients)))

    def request_version_list(self, req, msg):
        """Request the list of versions of roles and subcomponents.

        Informs
        -------
        name : str
            Name of the role or component.
        version : str
            A string identifying the version of the component. Individual
            components may define the structure of this argument as they
            choose. In the absence of other information clients should treat
            it as an opaque string.
        build_state_or_serial_number : str
            A unique identifier for a particular instance of a component.
            This should change whenever the component is replaced or updated.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the version list succeeded.
        informs : int
            Number of #version-list inform messages sent.

        Examples
        --------
        ::

            ?version-list
            #version-list katcp-protocol 5.0-MI
            #version-list katcp-library katcp-python-0.4 katcp-python-0.4.1-py2
            #version-list katcp-device foodevice-1.0 foodevice-1.0.0rc1
            !version-list ok 3

        """
        versions = [
            ("katcp-protocol", (str(self.PROTOCOL_INFO), None)),
            ("katcp-library", self._library_version()),
            ("katcp-device", (self.version(), self.build_state())),
        ]
        extra = sorted(self.extra_versions.items())
        for name, (version, build_state) in versions + extra:
            if build_state is None:
                req.inform(name, version)
            else:
                req.inform(name, version, build_state)
        return req.make_reply("ok", str(len(versions) + len(extra)))

    request_version_list._minimum_katcp_version = (5, 0)  # type: ignore[attr-defined]

    def _with_filtered_sensors(self, msg: Message, then: Callable[[list], Message]):
        """Call ``then(sensors)`` with the ``(name, sensor)`` pairs the request names.

        An exact name or no name is looked up at once and ``then``'s reply returned.
        A client's ``/regex/`` is matched by `match_names` in slices of a couple of
        milliseconds: the reply is then a coroutine that gives the loop back to other
        clients between slices (only this client waits for it).
        """
        pattern = _native(msg.arguments[0]) if msg.arguments else None
        try:
            exact, name_filter = construct_name_filter(pattern)
        except re.error as exc:
            raise FailReply(f"Invalid sensor name pattern: {exc}") from None
        if pattern is None:
            return then(sorted(self._sensors.items()))
        if exact:
            sensor = self._sensors.get(pattern)
            if sensor is None:
                raise FailReply("Unknown sensor name.")
            return then([(pattern, sensor)])
        slices = match_names(name_filter, sorted(self._sensors.items()),
                             self.NAME_MATCH_SLICE_SECONDS)
        sensors, last = next(slices)
        if last:
            return then(sensors)

        async def rest() -> Message:
            for matched, _ in slices:
                await asyncio.sleep(0)
                sensors.extend(matched)
            return then(sensors)
        return rest()

    def request_sensor_list(self, req, msg):
        r"""Request the list of sensors.

        The list of sensors is sent as a sequence of #sensor-list informs.

        Parameters
        ----------
        name : str, optional
            Name of the sensor to list (the default is to list all sensors).
            If name starts and ends with '/' it is treated as a regular
            expression and all sensors whose names contain the regular
            expression are returned.

        Informs
        -------
        name : str
            The name of the sensor being described.
        description : str
            Description of the named sensor.
        units : str
            Units for the value of the named sensor.
        type : str
            Type of the named sensor.
        params : list of str, optional
            Additional sensor parameters (type dependent). For integer and
            float sensors the additional parameters are the minimum and maximum
            sensor value. For discrete sensors the additional parameters are
            the allowed values. For all other types no additional parameters
            are sent.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the sensor list succeeded.
        informs : int
            Number of #sensor-list inform messages sent.

        Examples
        --------
        ::

            ?sensor-list
            #sensor-list psu.voltage PSU\_voltage. V float 0.0 5.0
            #sensor-list cpu.status CPU\_status. \@ discrete on off error
            ...
            !sensor-list ok 5

            ?sensor-list /voltage/
            #sensor-list psu.voltage PSU\_voltage. V float 0.0 5.0
            #sensor-list cpu.voltage CPU\_voltage. V float 0.0 3.0
            !sensor-list ok 2

        """
        def reply(sensors: list) -> Message:
            for name, sensor in sensors:
                req.inform(name, sensor.description, sensor.units, sensor.stype,
                           *sensor.formatted_params)
            return req.make_reply("ok", str(len(sensors)))
        return self._with_filtered_sensors(msg, reply)

    def request_sensor_value(self, req, msg):
        """Request the value of a sensor or sensors.

        A list of sensor values as a sequence of #sensor-value informs.

        Parameters
        ----------
        name : str, optional
            Name of the sensor to poll (the default is to send values for all
            sensors). If name starts and ends with '/' it is treated as a
            regular expression and all sensors whose names contain the regular
            expression are returned.

        Informs
        -------
        timestamp : float
            Timestamp of the sensor reading in seconds since the Unix epoch,
            or milliseconds for katcp versions <= 4.
        count : {1}
            Number of sensors described in this #sensor-value inform. Will
            always be one. It exists to keep this inform compatible with
            #sensor-status.
        name : str
            Name of the sensor whose value is being reported.
        value : object
            Value of the named sensor. Type depends on the type of the sensor.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the list of values succeeded.
        informs : int
            Number of #sensor-value inform messages sent.

        Examples
        --------
        ::

            ?sensor-value
            #sensor-value 1244631611.415231 1 psu.voltage nominal 4.5
            #sensor-value 1244631611.415200 1 cpu.status nominal off
            ...
            !sensor-value ok 5

            ?sensor-value cpu.power.on
            #sensor-value 1244631611.415231 1 cpu.power.on nominal 0
            !sensor-value ok 1

        """
        major = self.PROTOCOL_INFO.major

        def reply(sensors: list) -> Message:
            for name, sensor in sensors:
                timestamp, status, value = sensor.read_formatted(major)
                req.inform(timestamp, "1", name, status, value)
            return req.make_reply("ok", str(len(sensors)))
        return self._with_filtered_sensors(msg, reply)

    def request_sensor_sampling(self, req, msg):
        r"""Configure or query the way a sensor is sampled.

        Sampled values are reported asynchronously using the #sensor-status
        message.

        Parameters
        ----------
        names : str
            One or more names of sensors whose sampling strategy will be
            queried or configured. If specifying multiple sensors, these must
            be provided as a comma-separated list. A query can only be done on
            a single sensor. However, configuration can be done on many sensors
            with a single request, as long as they all use the same strategy.
            Multiple sensors are only allowed if the device server sets the
            protocol version to KATCP v5.1 or higher and enables the
            BULK_SET_SENSOR_SAMPLING flag in its PROTOCOL_INFO class attribute.
            Setting several sensors is all-or-nothing.
        strategy : {'none', 'auto', 'event', 'differential', 'differential-rate', \
                    'period', 'event-rate'}, optional
            Type of strategy to use to report the sensor value. The
            differential strategy types may only be used with integer or float
            sensors. If this parameter is supplied, it sets the new strategy.
        params : list of str, optional
            Additional strategy parameters (dependent on the strategy type).
            For the differential strategy, the parameter is an integer or float
            giving the amount by which the sensor value may change before an
            updated value is sent. For the period strategy, the parameter is
            the sampling period in float seconds. The event strategy has no
            parameters. For the event-rate strategy, a minimum period between
            updates and a maximum period between updates (both in float
            seconds) must be given. For the differential-rate strategy there
            are 3 parameters: the difference, then the minimum and maximum
            periods.

        Informs
        -------
        timestamp : float
            Timestamp of the sensor reading in seconds since the Unix epoch,
            or milliseconds for katcp versions <= 4.
        count : {1}
            Number of sensors described in this #sensor-status inform.
        name : str
            Name of the sensor whose value is being reported.
        value : object
            Value of the named sensor. Type depends on the type of the sensor.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether the sensor-sampling request succeeded.
        names : str
            Name(s) of the sensor queried or configured.
        strategy : str
            Name of the new or current sampling strategy for the sensor(s).
        params : list of str
            Additional strategy parameters (see description under Parameters).

        Examples
        --------
        ::

            ?sensor-sampling cpu.power.on
            !sensor-sampling ok cpu.power.on none

            ?sensor-sampling cpu.power.on period 0.5
            #sensor-status 1244631611.415231 1 cpu.power.on nominal 1
            !sensor-sampling ok cpu.power.on period 0.5

            ?sensor-sampling cpu.power.on,fan.speed period 0.5
            #sensor-status 1244631611.415231 1 cpu.power.on nominal 1
            #sensor-status 1244631611.415200 1 fan.speed nominal 10.0
            !sensor-sampling ok cpu.power.on,fan.speed period 0.5

        """
        args = msg.arguments
        if not args:
            raise FailReply("No sensor name given.")
        names_arg = _native(args[0])
        client = req.client_connection
        bulk = self.PROTOCOL_INFO.bulk_set_sensor_sampling and "," in names_arg
        if len(args) == 1:
            if bulk:
                raise FailReply("Cannot query multiple sensors.")
            return self._run_in_loop(lambda: self._query_sampling(client, names_arg, msg))
        names = names_arg.split(",") if bulk else [names_arg]
        strategy, params = args[1], list(args[2:])
        return self._run_in_loop(lambda: self._set_sampling(
            client, names_arg, names, strategy, params, bulk, msg))

    @request()
    @return_reply()
    def request_sensor_sampling_clear(self, req):
        """Set all sampling strategies for this client to none.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether clearing the sampling strategies succeeded.

        Examples
        --------
        ::

            ?sensor-sampling-clear
            !sensor-sampling-clear ok

        """
        client = req.client_connection

        def clear() -> tuple:
            self.clear_strategies(client)
            return ("ok",)

        return self._run_in_loop(clear)

    def request_watchdog(self, req, msg):
        """Check that the server is still alive.

        Returns
        -------
            success : {'ok'}

        Examples
        --------
        ::

            ?watchdog
            !watchdog ok

        """
        return req.make_reply("ok")


class AsyncDeviceServer(DeviceServer):
    """`DeviceServer` that is automatically configured for async use.

    Same as instantiating a :class:`DeviceServer` instance and calling methods
    `set_concurrency_options(thread_safe=False, handler_thread=False)` and
    `set_ioloop(tornado.ioloop.IOLoop.current())` before starting. Handlers run
    in the ioloop: plain handlers inline, coroutines as tasks.

    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_concurrency_options(thread_safe=False, handler_thread=False)
        import tornado.ioloop
        self.set_ioloop(tornado.ioloop.IOLoop.current())
