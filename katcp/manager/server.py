"""The manager's KATCP server: the fleet behind one endpoint, with enforced locks.

:class:`ManagerServer` is an :class:`katcp.server.AsyncDeviceServer` running on the current
event loop.  Each device of the fleet is a :class:`~katcp.manager.device.ProxiedDevice`:

* its sensors are real sensors of this server named ``<device>.<sensor>``, so ``?sensor-list``,
  ``?sensor-value`` and ``?sensor-sampling`` (every strategy) are the server's own;
* its requests ``<device>-<request>`` are routed by :meth:`ManagerServer.handle_request` (the
  documented dispatch method, overridden here) to the device, and ``?help`` lists them.

Security is the server's own (:func:`security_options`): TLS on the listen socket (``ssl=``)
and, with a user store, login and roles through the server's
:class:`~katcp.security.AccessControl`, which the dispatcher consults for the manager's own
requests and :meth:`ManagerServer.handle_request` for proxied ones (they need ``control``).
On top of the roles come the locks (:meth:`ManagerServer.lock_refusal`): a holder's control
requests pass, everyone else's fail naming the holder.  Lock events and every proxied
request go to the ``katcp.audit`` log with the user and address.
"""

from __future__ import annotations

import asyncio
import logging
import concurrent.futures
from typing import Any, Callable, Dict, Hashable, List, Tuple

from katcp.core import FailReply, Message, ProtocolFlags, Sensor
from katcp.kattypes import Float, Str, request, return_reply
from katcp.security import (
    ADMIN,
    AUDIT_LOGGER_NAME,
    CONTROL,
    READ,
    AccessControl,
    audit_event,
    close_audit_log,
    open_audit_log,
    requires_role,
)
from katcp.server import AsyncDeviceServer, ClientRequestConnection

from .config import DeviceSpec, ManagerConfig, valid_device_name
from .device import ProxiedDevice
from .katcp_device import KatcpDevice
from .locks import LockError, LockTable
from .ncp_device import NcpDevice
from .register import RegistrationListener

__all__ = ["ManagerServer", "make_device", "security_options"]

log = logging.getLogger("katcp.manager")
#: Where audit lines go without a user store (with one, to its audit logger).
_audit_log = logging.getLogger(AUDIT_LOGGER_NAME)


def security_options(config: ManagerConfig) -> Dict[str, Any]:
    """The ``ssl=`` and ``users=`` arguments of the manager's server for `config`.

    Parameters
    ----------
    config : ManagerConfig
        ``tls_cert``/``tls_key`` (and ``tls_client_ca`` for mutual TLS) give the listen
        socket's TLS context; ``users`` the user store, whose login timeout is
        ``login_timeout``.

    Returns
    -------
    dict
        ``{"ssl": SSLContext or None, "users": AccessControl or None}``.

    Raises
    ------
    OSError, ssl.SSLError, ValueError
        When a certificate, key or the user store cannot be read, or when ``register`` is
        set together with TLS or users (the registration port has neither).
    """
    if config.register is not None and (config.users or config.tls_cert):
        # A device link is plaintext and unauthenticated: on a secured manager anyone who
        # reaches that port could put a device of their own in front of its users.
        raise ValueError("[manager] register: devices cannot register on a manager with TLS "
                         "or users yet (the registration port has neither); list the "
                         "devices in the file instead")
    users = None
    if config.users:
        users = AccessControl(config.users, login_timeout=config.login_timeout)
    else:
        log.warning("No user store configured: every client may do everything, and a lock "
                    "belongs to the connection that took it")
    return {"ssl": config.server_ssl_context(), "users": users}


@requires_role(CONTROL)
def _device_request(*args: Any) -> None:
    """Stands for every proxied ``<device>-<request>`` in role checks: they need control."""


class _AuditedForward(ClientRequestConnection):
    """The ``req`` handed to a device: its reply is audited once sent."""

    __slots__ = ("_audit",)

    def __init__(self, connection: Any, msg: Message, audit: Callable[[str], None]) -> None:
        super().__init__(connection, msg)
        self._audit = audit

    def reply_with_message(self, rep_msg: Message) -> None:
        super().reply_with_message(rep_msg)
        args = rep_msg.arguments
        self._audit(args[0].decode("utf-8", "replace") if args else "-")

    def reply(self, *args: Any) -> None:
        super().reply(*args)
        self._audit(str(args[0]) if args else "-")


def make_device(spec: DeviceSpec, owner: Any, request_timeout: float) -> ProxiedDevice:
    """Create the proxied device for a config entry."""
    if spec.kind == "katcp":
        return KatcpDevice(spec, owner, request_timeout=request_timeout)
    if spec.kind == "ncp":
        return NcpDevice(spec, owner, request_timeout=min(request_timeout, 30.0))
    raise ValueError(f"device {spec.name!r}: unknown kind {spec.kind!r}")


class ManagerServer(AsyncDeviceServer):
    """KATCP server in front of a fleet of devices.

    Create it inside a running event loop; then ``await start_manager()`` and, at the end,
    ``await stop_manager()``.

    Parameters
    ----------
    config : ManagerConfig
        Listen address, security settings and the devices.
    request_timeout : float, optional
        Seconds a proxied request may take (the device's timeout hint may allow more).
    """

    VERSION_INFO = ("katcp-manager", 1, 0)
    BUILD_INFO = ("katcp-manager", 1, 0, "")
    #: KATCP 5.1 with message ids and bulk ``?sensor-sampling`` (clients of a fleet subscribe
    #: to many sensors at once).
    PROTOCOL_INFO = ProtocolFlags(5, 1, {ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
                                         ProtocolFlags.BULK_SET_SENSOR_SAMPLING})

    def __init__(self, config: ManagerConfig, request_timeout: float = 60.0) -> None:
        host, port = config.listen
        super().__init__(host, port, logger=log, **security_options(config))
        self.config = config
        self.request_timeout = request_timeout
        access = self.access_control
        #: Where audit lines go: the user store's audit logger, else ``katcp.audit``.
        self._audit_logger: logging.Logger = (
            _audit_log if access is None or access.audit_logger is None
            else access.audit_logger)
        self._devices: Dict[str, ProxiedDevice] = {}
        # route() of the names of known requests (emptied when the devices change).
        self._routes: Dict[str, Tuple[ProxiedDevice, str]] = {}
        self._published_sensors: Dict[str, Dict[str, Sensor]] = {}
        self._published_requests: Dict[str, Dict[str, str]] = {}
        self._quiet_interface_changes = False
        self._locks: LockTable | None = None
        self._registration: RegistrationListener | None = None
        self._audit_handler: logging.Handler | None = None
        self._audit_level = logging.NOTSET
        # Made once: a bound method per proxied request would be an allocation each time.
        self._forwarded_done = self._forwarded
        if config.register is not None:
            self._registration = RegistrationListener(self, *config.register)
        for spec in config.devices.values():
            self._devices[spec.name] = make_device(spec, self, request_timeout)

    # -- life cycle ------------------------------------------------------------------
    async def start_manager(self) -> None:
        """Start listening and connecting to the devices (and open the audit log file)."""
        if self.config.audit_log and self._audit_handler is None:
            # open_audit_log may raise the logger's level to INFO; put it back at the end.
            self._audit_level = _audit_log.level
            self._audit_handler = open_audit_log(self.config.audit_log)
        started = self.start()
        if started is not None:
            await started
        self._locks = LockTable(asyncio.get_running_loop(), audit_logger=self._audit_logger)
        for device in list(self._devices.values()):
            await device.start()
        log.info("katcp-manager listening on %s:%d with %d device(s)", *self.bind_address,
                 len(self._devices))
        if self._registration is not None:
            await self._registration.start()
            log.info("Devices may register at %s:%d", *self._registration.bind_address)

    async def stop_manager(self) -> None:
        """Disconnect from the devices and stop the server."""
        if self._registration is not None:
            await self._registration.stop()
        await asyncio.gather(*(device.stop() for device in self._devices.values()),
                             return_exceptions=True)
        if self._locks is not None:
            self._locks.close()
        stopped = self.stop()
        if isinstance(stopped, concurrent.futures.Future):
            stopped = asyncio.wrap_future(stopped)
        if stopped is not None:
            await asyncio.wait_for(stopped, 5)
        if self._audit_handler is not None:
            close_audit_log(self._audit_handler)
            self._audit_handler = None
            _audit_log.setLevel(self._audit_level)

    @property
    def registration_address(self) -> Tuple[str, int] | None:
        """Where devices may dial in (the real port once started), or None."""
        return None if self._registration is None else self._registration.bind_address

    @property
    def devices(self) -> Dict[str, ProxiedDevice]:
        """The devices by name (do not modify)."""
        return self._devices

    async def add_device(self, device: ProxiedDevice) -> None:
        """Put another device behind the manager (clients see ``#interface-changed``).

        Raises
        ------
        ValueError
            If the name is invalid or taken.
        """
        if not valid_device_name(device.name):
            raise ValueError(f"invalid device name {device.name!r}")
        if device.name in self._devices:
            raise ValueError(f"device {device.name!r} exists already")
        self._devices[device.name] = device
        self._routes.clear()
        await device.start()
        self.device_changed(device, sensors=True, requests=True)

    async def remove_device(self, name: str) -> None:
        """Take a device away (its sensors and requests disappear, its lock ends)."""
        device = self._devices.pop(name)
        self._routes.clear()
        await device.stop()
        device.sensors = {}
        device.requests = {}
        self._publish(device)
        self._published_sensors.pop(name, None)
        self._published_requests.pop(name, None)
        if self._locks is not None and self._locks.holder_of(name) is not None:
            self._locks.break_lock(name, by="manager (device removed)")

    # -- DeviceOwner: keep the server's sensors and requests in step ------------------
    def device_changed(self, device: ProxiedDevice, sensors: bool, requests: bool) -> None:
        """Publish the device's current sensors and requests (see :class:`DeviceOwner`)."""
        if self._devices.get(device.name) is device:
            self._publish(device)

    def device_log(self, device: ProxiedDevice, level: str, text: str) -> None:
        """Send ``#log LEVEL ... <device> text`` to every client."""
        self.mass_inform(self.create_log_inform(level, text, device.name))

    def _publish(self, device: ProxiedDevice) -> None:
        old = self._published_sensors.get(device.name, {})
        new = dict(device.sensors)
        sensors_changed = False
        self._quiet_interface_changes = True
        try:
            for name, sensor in old.items():
                if new.get(name) is not sensor and self.has_sensor(name):
                    if new.get(name) is None:
                        self.remove_sensor(name)
                    sensors_changed = True
            for name, sensor in new.items():
                if old.get(name) is not sensor:
                    self.add_sensor(sensor)
                    sensors_changed = True
        finally:
            self._quiet_interface_changes = False
        self._published_sensors[device.name] = new
        requests_changed = self._published_requests.get(device.name, {}) != device.requests
        self._published_requests[device.name] = dict(device.requests)
        if self.running():
            if sensors_changed:
                self.mass_inform(Message.inform("interface-changed", "sensor-list"))
            if requests_changed:
                self.mass_inform(Message.inform("interface-changed", "request-list"))

    def mass_inform(self, msg: Message) -> None:
        """Send `msg` to every client; while a device is being published, the server's
        per-sensor ``#interface-changed`` informs are held back (one is sent at the end)."""
        if self._quiet_interface_changes and msg.name == "interface-changed":
            return
        super().mass_inform(msg)

    # -- dispatch --------------------------------------------------------------------
    def route(self, name: str) -> Tuple[ProxiedDevice, str] | None:
        """Find the device and request suffix of ``<device>-<request>`` (longest device
        name first), or None."""
        found = self._routes.get(name)
        if found is not None:
            return found
        index = name.find("-")
        while index > 0:
            device = self._devices.get(name[:index])
            if device is not None:
                found = (device, name[index + 1:])
            index = name.find("-", index + 1)
        if found is not None and found[1] in found[0].requests:
            # Kept for the next request of that name: only names of requests the devices
            # have, so that clients sending made-up names cannot grow it.
            self._routes[name] = found
        return found

    def handle_request(self, connection: Any, msg: Message):
        """Route ``<device>-<request>`` to its device; other requests are the server's own.

        A request name the server itself handles always wins over a device's.
        """
        if self.has_own_request(msg.name):
            return super().handle_request(connection, msg)
        routed = self.route(msg.name)
        if routed is None:
            return super().handle_request(connection, msg)
        device, suffix = routed
        access = self.access_control
        if access is not None:
            # The one role check, the dispatcher's: login first, then control.
            denied = access.check(connection.session, msg.name, msg.arguments,
                                  _device_request)
            if denied is not None:
                connection.reply(Message.reply(msg.name, "fail", denied.message), msg)
                return None
        if not suffix or (device.kind != "ncp" and suffix not in device.requests
                          and device.up):
            ClientRequestConnection(connection, msg).reply("invalid", "Unknown request.")
            return None
        refusal = self.lock_refusal(connection, device.name)
        if refusal is not None:
            self._audit("refused", connection, msg.name, "fail",
                        f"device={device.name},{refusal}", logging.WARNING)
            ClientRequestConnection(connection, msg).reply("fail", refusal)
            return None
        if device.forward_message(connection, msg, suffix, self._forwarded_done):
            return None
        req = _AuditedForward(connection, msg, lambda status: self._audit(
            "request", connection, msg.name, status, f"device={device.name}"))
        try:
            device.forward(req, suffix, msg.arguments)
        except Exception:
            # A bug in one device's proxy must not take the manager down.
            log.exception("Device %s: forwarding %s failed", device.name, msg.name)
            try:
                req.reply("fail", f"manager error forwarding to device {device.name}")
            except RuntimeError:
                pass
        return None

    def _forwarded(self, connection: Any, msg: Message, reply: Message) -> None:
        """Audit a proxied request answered by a device's fast path."""
        # (isEnabledFor answers from the logger's own cache, which logging clears when a
        # level changes: no audit line is formatted, and nothing is cached here.)
        if self._audit_logger.isEnabledFor(logging.INFO):
            routed = self.route(msg.name)
            device = "-" if routed is None else routed[0].name
            args = reply.arguments
            status = args[0].decode("utf-8", "replace") if args else "-"
            self._audit("request", connection, msg.name, status, f"device={device}")

    def has_own_request(self, name: str) -> bool:
        """Whether the manager itself (not a device) handles request `name`."""
        return name in self._request_handlers

    # -- identity, locks and audit ------------------------------------------------------
    def _who(self, connection: Any) -> Tuple[Hashable, str, str | None]:
        """``(lock owner, holder shown to people, user name)`` of the client on `connection`.

        With a user store a lock belongs to the logged-in user, so that it survives the
        user's reconnection; without one, to the connection (shown as ``host:port``).
        """
        session = getattr(connection, "session", None)
        user = None if session is None else session.user_name
        if self.access_control is not None and user is not None:
            return ("user", user), user, user
        return connection, connection.address, user

    def _audit(self, event: str, connection: Any, request: str, status: str,
               detail: str | None = None, level: int = logging.INFO) -> None:
        if not self._audit_logger.isEnabledFor(level):
            return  # (a line nobody reads is not even formatted)
        audit_event(event, user=self._who(connection)[2], addr=connection.address,
                    request=request, status=status, detail=detail, level=level,
                    logger=self._audit_logger)

    def lock_refusal(self, connection: Any, device: str) -> str | None:
        """Why the client on `connection` may not send control requests to `device` now.

        Roles are checked before, by the server's access control; this is the lock.

        Returns
        -------
        str or None
            None when the device is free or the client holds its lock; otherwise the
            reason, naming the holder, for the ``fail`` reply.
        """
        if self._locks is None:
            return None
        lock = self._locks.holder_of(device)
        if lock is not None and lock.owner != self._who(connection)[0]:
            return f"device {device} is locked by {lock.holder}"
        return None

    def on_client_disconnect(self, conn: Any, msg: str, connection_valid: bool):
        if self._locks is not None and self.access_control is None:
            # A user's locks outlive the connection (until unlock, lease or break).
            self._locks.release_owner(conn, reason="disconnect")
        return super().on_client_disconnect(conn, msg, connection_valid)

    # -- help ------------------------------------------------------------------------
    def request_help(self, req, msg):
        """Return help on the available requests, the devices' included.

        Parameters
        ----------
        request : str, optional
            The name of the request to return help for (default: all of them).

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
        """
        proxied = self._proxied_help()
        if msg.arguments:
            name = msg.arguments[0].decode("utf-8", "replace")
            if not self.has_own_request(name) and name in proxied:
                req.inform(name, proxied[name])
                return req.make_reply("ok", "1")
            return super().request_help(req, msg)
        own = super().request_help(req, msg)
        count = int(own.arguments[1])
        for name in sorted(proxied):
            if not self.has_own_request(name):
                req.inform(name, proxied[name])
                count += 1
        return req.make_reply("ok", str(count))

    def _proxied_help(self) -> Dict[str, str]:
        return {device.request_name(suffix): text
                for device in self._devices.values()
                for suffix, text in device.requests.items()}

    # -- the manager's own requests ---------------------------------------------------
    def _device_or_fail(self, device: str) -> str:
        if device not in self._devices:
            raise FailReply(f"unknown device {device}")
        return device

    def _lock_table(self) -> LockTable:
        if self._locks is None:
            raise FailReply("manager not started")
        return self._locks

    @request(Str(), Float(optional=True))
    @return_reply(Str())
    def request_lock(self, req, device, lease):
        """Take the lock of a device: only you may send it control requests.

        With a user store the lock is the logged-in user's (it survives a reconnection);
        without one it is this connection's and ends when the connection closes.

        Parameters
        ----------
        device : str
            Device name.
        lease : float, optional
            Seconds after which the lock ends by itself (default: never).

        Returns
        -------
        success : {'ok', 'fail'}
            'fail' names the current holder.
        holder : str
            Who holds the lock now (you).
        """
        self._device_or_fail(device)
        conn = req.client_connection
        owner, holder, user = self._who(conn)
        try:
            lock = self._lock_table().acquire(device, owner, holder, lease, user=user,
                                              addr=conn.address)
        except LockError as exc:
            raise FailReply(str(exc)) from None
        return "ok", lock.holder

    @request(Str())
    @return_reply()
    def request_unlock(self, req, device):
        """Release the lock of a device that you hold.

        Parameters
        ----------
        device : str
            Device name.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether the lock was released.
        """
        self._device_or_fail(device)
        conn = req.client_connection
        owner, _holder, user = self._who(conn)
        try:
            self._lock_table().release(device, owner, user=user, addr=conn.address)
        except LockError as exc:
            raise FailReply(str(exc)) from None
        return ("ok",)

    @requires_role(ADMIN)
    @request(Str())
    @return_reply(Str())
    def request_lock_break(self, req, device):
        """Break the lock of a device, whoever holds it (needs the admin role).

        Parameters
        ----------
        device : str
            Device name.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether a lock was broken.
        holder : str
            Who held it.
        """
        self._device_or_fail(device)
        conn = req.client_connection
        user = self._who(conn)[2]
        try:
            lock = self._lock_table().break_lock(device, by=user or conn.address, user=user,
                                                 addr=conn.address)
        except LockError as exc:
            raise FailReply(str(exc)) from None
        return "ok", lock.holder

    @requires_role(READ)
    def request_lock_list(self, req, msg):
        """List the held locks.

        Informs
        -------
        device : str
            Locked device.
        holder : str
            Who holds it.
        lease : str
            Seconds left on the lease, or 'none'.

        Returns
        -------
        success : {'ok'}
        informs : int
            Number of locks.
        """
        table = self._lock_table()
        locks = table.locks()
        for lock in locks:
            remaining = table.remaining(lock)
            req.inform(lock.device, lock.holder,
                       "none" if remaining is None else f"{remaining:.1f}")
        return req.make_reply("ok", str(len(locks)))

    @requires_role(READ)
    def request_device_list(self, req, msg):
        """List the devices behind the manager.

        Informs
        -------
        name : str
            Device name (prefix of its requests and sensors).
        kind : str
            'katcp' or 'ncp'.
        address : str
            Where the device is.
        state : str
            'up' or 'unreachable'.
        sensors : int
            Number of proxied sensors.

        Returns
        -------
        success : {'ok'}
        informs : int
            Number of devices.
        """
        for device in self._devices.values():
            req.inform(device.name, device.kind, device.address,
                       "up" if device.up else "unreachable", str(len(device.sensors)))
        return req.make_reply("ok", str(len(self._devices)))

    def locks_held(self) -> List[Tuple[str, str]]:
        """``(device, holder)`` of every held lock."""
        return [] if self._locks is None else [(lk.device, lk.holder)
                                               for lk in self._locks.locks()]
