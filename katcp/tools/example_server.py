"""An example KATCP instrument: a simulated radio receiver.

Run it with ``katcp-exampleserver`` or ``python -m katcp.tools.example_server``
and talk to it with any KATCP client (or ``nc localhost 7147``)::

    katcp-exampleserver --host 127.0.0.1 --port 7147 --verbose

Port 7147 is the de-facto KATCP port (used by CASPER's tcpborphserver); KATCP
has no IANA-assigned port.  The server listens on 127.0.0.1 by default: pass
``--host 0.0.0.0`` (or ``--host ::``) to accept connections from other hosts.

The instrument shows the main features of :class:`katcp.DeviceServer`:

* sensors of every KATCP type (integer, float, boolean, discrete, lru,
  string, timestamp, address) that change over time on the event loop;
* requests with typed arguments and replies (:mod:`katcp.kattypes`
  decorators), a plain request handler, a ``FailReply``;
* a slow ``async def`` request that replies later and a request that replies
  later with :class:`katcp.AsyncReply`, both carrying timeout hints
  (``?request-timeout-hint``, KATCP 5.1 flag ``T``).

Every request's docstring is what ``?help <name>`` shows.

Secured (see the Security chapter)::

    katcp-exampleserver --tls-cert server.crt --tls-key server.key \\
        [--tls-client-ca ca.crt] --users users.db [--audit-log audit.log]

``?echo``, ``?add`` and ``?divide`` change nothing and are marked
``@requires_role("read")``; the other requests of the instrument need ``control``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import random
import signal
import ssl
import sys
from typing import Any, Callable, List, Sequence

import tornado.ioloop

from .. import sensor as _sensor_module
from .._security.audit import open_audit_log
from .._security.tls import server_context
from .._security.userstore import UserStore, UserStoreError
from ..core import AsyncReply, FailReply, ProtocolFlags
from ..kattypes import (
    Address,
    Discrete,
    Float,
    Int,
    concurrent_reply,
    request,
    request_timeout_hint,
    requires_role,
    return_reply,
)
from ..sensor import Sensor
from ..server import DeviceServer
from ..version import VERSION

log = logging.getLogger("katcp.example_server")

#: Default TCP port (the de-facto KATCP port; KATCP has no IANA port).
DEFAULT_PORT = 7147
#: Default listening address (loopback only; use 0.0.0.0 to listen everywhere).
DEFAULT_HOST = "127.0.0.1"
#: Seconds between simulated sensor updates.
DEFAULT_UPDATE_PERIOD = 0.5

MODES = ("idle", "observe", "calibrate")
DEVICE_STATES = ("ok", "degraded", "fail")

#: Longest ``?slow-command`` delay accepted, in seconds.
MAX_SLOW_SECONDS = 30.0
#: Largest ``?countdown`` start value.
MAX_COUNTDOWN = 20
#: Seconds between ``#countdown`` informs.
COUNTDOWN_STEP = 0.1


def _now() -> float:
    """Wall-clock time from the one function sensors use (replaceable in tests)."""
    return _sensor_module.now()


def _temperature_status(celsius: float) -> int:
    if 10.0 <= celsius <= 50.0:
        return Sensor.NOMINAL
    if 0.0 <= celsius <= 60.0:
        return Sensor.WARN
    return Sensor.ERROR


def _power_status(dbm: float) -> int:
    if dbm <= -30.0:
        return Sensor.NOMINAL
    if dbm <= -10.0:
        return Sensor.WARN
    return Sensor.ERROR


class ExampleServer(DeviceServer):
    """A simulated radio receiver with a dozen sensors and typed requests.

    Parameters
    ----------
    host : str
        Address to listen on.
    port : int
        TCP port to listen on (0 picks a free port; see ``bind_address``).
    update_period : float, optional
        Seconds between simulated sensor updates.
    seed : int or None, optional
        Seed of the simulation's random numbers (for repeatable runs).
    **kwargs
        Passed on to :class:`katcp.DeviceServer` (``tb_limit``, ``logger``).

    Notes
    -----
    Request handlers and the simulation run in the server's event loop
    (``set_concurrency_options(thread_safe=False, handler_thread=False)``), as
    in an asyncio program; sensors may still be set from other threads.
    """

    VERSION_INFO = ("example-receiver", 1, 0)
    BUILD_INFO = ("katcp-example-receiver", VERSION[0], VERSION[1], "")
    PROTOCOL_INFO = ProtocolFlags(5, 1, {
        ProtocolFlags.MULTI_CLIENT,
        ProtocolFlags.MESSAGE_IDS,
        ProtocolFlags.REQUEST_TIMEOUT_HINTS,
        ProtocolFlags.BULK_SET_SENSOR_SAMPLING,
    })

    def __init__(self, host: str, port: int, update_period: float = DEFAULT_UPDATE_PERIOD,
                 seed: int | None = None, **kwargs: Any) -> None:
        if not update_period > 0:
            raise ValueError(f"update_period must be positive, got {update_period!r}")
        self._update_period = float(update_period)
        self._rng = random.Random(seed)
        self._sim_loop: asyncio.AbstractEventLoop | None = None
        self._sim_handle: asyncio.TimerHandle | None = None
        self._halted: asyncio.Event | None = None
        self._echo_count = 0
        super().__init__(host, port, **kwargs)
        self.set_concurrency_options(thread_safe=False, handler_thread=False)

    # ------------------------------------------------------------------ sensors

    def setup_sensors(self) -> None:
        """Create the instrument's sensors (called by the constructor)."""
        t = _now()
        S = Sensor
        self._device_status = S.discrete(
            "device-status", "Overall health: ok, degraded or fail", "", list(DEVICE_STATES),
            default="ok", initial_status=S.NOMINAL)
        self._tick_count = S.integer(
            "tick-count", "Number of simulation steps since start", "", default=0,
            initial_status=S.NOMINAL)
        self._temperature = S.float(
            "temperature", "Receiver temperature (nominal 10..50, warn 0..60)", "degC",
            [-20.0, 80.0], default=35.0, initial_status=S.NOMINAL)
        self._frequency = S.float(
            "rf.frequency", "Centre frequency of the receiver", "Hz", [1e6, 10e9],
            default=1.4e9, initial_status=S.NOMINAL)
        self._gain = S.float(
            "rf.gain", "Receiver gain", "dB", [0.0, 60.0], default=30.0,
            initial_status=S.NOMINAL)
        self._power = S.float(
            "rf.power", "Total output power (nominal <= -30, warn <= -10)", "dBm",
            [-120.0, 20.0], default=-60.0, initial_status=S.NOMINAL)
        self._lo_locked = S.boolean(
            "lo.locked", "Local oscillator phase lock", "", default=True,
            initial_status=S.NOMINAL)
        self._psu = S.lru(
            "psu.state", "Power supply line-replaceable unit", "", default=S.LRU_NOMINAL,
            initial_status=S.NOMINAL)
        self._mode = S.discrete(
            "mode", "Operating mode", "", list(MODES), default="idle", initial_status=S.NOMINAL)
        self._last_request = S.string(
            "last-request", "Name of the last instrument request handled", "", default="",
            initial_status=S.NOMINAL)
        self._time_now = S.timestamp(
            "time.now", "Time of the last simulation step", "", default=t,
            initial_status=S.NOMINAL)
        self._time_started = S.timestamp(
            "time.started", "Time the simulation started", "", default=t,
            initial_status=S.NOMINAL)
        self._destination = S.address(
            "capture.destination", "Where captured data would be sent", "",
            default=("127.0.0.1", 7148), initial_status=S.NOMINAL)
        self._echo_counter = S.integer(
            "echo.count", "Number of ?echo requests handled", "", default=0,
            initial_status=S.NOMINAL)
        for s in (self._device_status, self._tick_count, self._temperature, self._frequency,
                  self._gain, self._power, self._lo_locked, self._psu, self._mode,
                  self._last_request, self._time_now, self._time_started, self._destination,
                  self._echo_counter):
            self.add_sensor(s)

    # --------------------------------------------------------------- simulation

    def start(self, timeout: float | None = None):
        """Start the server and the sensor simulation.

        Parameters
        ----------
        timeout : float or None, optional
            As for :meth:`katcp.DeviceServer.start`.

        Returns
        -------
        result : bool or Future
            As for :meth:`katcp.DeviceServer.start`.
        """
        result = super().start(timeout)
        ioloop = self.ioloop
        assert ioloop is not None, "DeviceServer.start sets the ioloop"
        ioloop.add_callback(self._start_simulation)
        return result

    def stop(self, timeout: float | None = 1.0):
        """Stop the sensor simulation and the server (from any thread).

        Parameters
        ----------
        timeout : float or None, optional
            As for :meth:`katcp.DeviceServer.stop`.

        Returns
        -------
        stopped : Future
            Resolves when the server has stopped.
        """
        loop = self._sim_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_simulation)
        return super().stop(timeout)

    async def wait_halted(self) -> None:
        """Wait (in the server's loop) until :meth:`stop` is called, e.g. by ``?halt``."""
        if self._halted is None:
            self._halted = asyncio.Event()
        await self._halted.wait()

    def _start_simulation(self) -> None:
        self._sim_loop = asyncio.get_running_loop()
        if self._halted is None:
            self._halted = asyncio.Event()
        if self._sim_handle is None:
            self._time_started.set_value(_now())
            self._sim_handle = self._sim_loop.call_later(self._update_period, self._step)

    def _stop_simulation(self) -> None:
        if self._sim_handle is not None:
            self._sim_handle.cancel()
            self._sim_handle = None
        if self._halted is not None:
            self._halted.set()

    def _step(self) -> None:
        """One simulation step: move every time-varying sensor."""
        loop = self._sim_loop
        assert loop is not None, "_start_simulation sets the loop before the first step"
        self._sim_handle = loop.call_later(self._update_period, self._step)
        try:
            self.simulate()
        except Exception:  # a bug in the simulation must not stop the updates
            log.exception("Sensor simulation step failed")

    def simulate(self) -> None:
        """Advance the simulated instrument by one step (called on the loop)."""
        rng = self._rng
        t = _now()
        self._tick_count.set_value(self._tick_count.value() + 1, timestamp=t)
        self._time_now.set_value(t, timestamp=t)

        temp = self._temperature.value() + rng.gauss(0.0, 0.5)
        temp += (35.0 - temp) * 0.05  # drift back towards 35 degC
        temp = min(max(temp, -20.0), 80.0)
        temp_status = _temperature_status(temp)
        self._temperature.set_value(round(temp, 3), temp_status, timestamp=t)

        if self._lo_locked.value():
            locked = rng.random() > 0.02
        else:
            locked = rng.random() > 0.3
        self._lo_locked.set_value(locked, Sensor.NOMINAL if locked else Sensor.WARN,
                                  timestamp=t)

        power = -90.0 + self._gain.value() + rng.gauss(0.0, 0.3)
        if not locked:
            power -= 20.0
        power = min(max(power, -120.0), 20.0)
        self._power.set_value(round(power, 3), _power_status(power), timestamp=t)

        psu_ok = temp_status != Sensor.ERROR
        self._psu.set_value(Sensor.LRU_NOMINAL if psu_ok else Sensor.LRU_ERROR,
                            Sensor.NOMINAL if psu_ok else Sensor.ERROR, timestamp=t)
        self._update_device_status(t)

    def _update_device_status(self, t: float) -> None:
        worst = max(s.status() for s in (self._temperature, self._power, self._lo_locked,
                                         self._psu))
        if worst >= Sensor.ERROR:
            state, status = "fail", Sensor.ERROR
        elif worst == Sensor.WARN:
            state, status = "degraded", Sensor.WARN
        else:
            state, status = "ok", Sensor.NOMINAL
        reading = self._device_status.read()
        if reading.value != state or reading.status != status:
            self._device_status.set_value(state, status, timestamp=t)

    def _handled(self, name: str) -> None:
        self._last_request.set_value(name)

    # ----------------------------------------------------------------- requests

    @requires_role("read")  # changes nothing: any logged-in user may call it
    def request_echo(self, req, msg):
        """Echo the arguments back.

        A plain request handler (no type decorators): it gets the raw
        :class:`katcp.Message` and builds its reply itself.

        Parameters
        ----------
        *args : str
            Any arguments.

        Returns
        -------
        success : {'ok'}
        *args : str
            The arguments, unchanged.

        Examples
        --------
        ::

            ?echo hello world
            !echo ok hello world
        """
        self._echo_count += 1
        self._echo_counter.set_value(self._echo_count)
        self._handled("echo")
        return req.make_reply("ok", *msg.arguments)

    @requires_role("read")
    @request(Int(), Int())
    @return_reply(Int())
    def request_add(self, req, a, b):
        """Add two integers.

        Parameters
        ----------
        a : int
            First term.
        b : int
            Second term.

        Returns
        -------
        success : {'ok', 'fail'}
        sum : int
            ``a + b``.

        Examples
        --------
        ::

            ?add 2 3
            !add ok 5
        """
        self._handled("add")
        return ("ok", a + b)

    @requires_role("read")
    @request(Float(), Float())
    @return_reply(Float())
    def request_divide(self, req, numerator, denominator):
        """Divide two numbers (fails on division by zero).

        Parameters
        ----------
        numerator : float
            Dividend.
        denominator : float
            Divisor (must not be zero).

        Returns
        -------
        success : {'ok', 'fail'}
        quotient : float
            ``numerator / denominator``.

        Examples
        --------
        ::

            ?divide 1 4
            !divide ok 0.25
            ?divide 1 0
            !divide fail Cannot\\_divide\\_by\\_zero.
        """
        self._handled("divide")
        if denominator == 0:
            raise FailReply("Cannot divide by zero.")
        return ("ok", numerator / denominator)

    @request(Float(min=0.0, max=60.0))
    @return_reply(Float())
    def request_set_gain(self, req, gain):
        """Set the receiver gain (sensor ``rf.gain``).

        Parameters
        ----------
        gain : float
            Gain in dB, 0 to 60.

        Returns
        -------
        success : {'ok', 'fail'}
        gain : float
            The gain now in force, in dB.

        Examples
        --------
        ::

            ?set-gain 20.5
            !set-gain ok 20.5
        """
        self._gain.set_value(gain)
        self._handled("set-gain")
        return ("ok", gain)

    @request(Float(min=1e6, max=10e9, optional=True))
    @return_reply(Float())
    def request_frequency(self, req, hz=None):
        """Query or set the centre frequency (sensor ``rf.frequency``).

        Parameters
        ----------
        hz : float, optional
            New centre frequency in Hz (1 MHz to 10 GHz).  Omit to query.

        Returns
        -------
        success : {'ok', 'fail'}
        hz : float
            The centre frequency now in force, in Hz.

        Examples
        --------
        ::

            ?frequency 1.42e9
            !frequency ok 1420000000.0
            ?frequency
            !frequency ok 1420000000.0
        """
        if hz is not None:
            self._frequency.set_value(hz)
        self._handled("frequency")
        return ("ok", self._frequency.value())

    @request(Discrete(MODES))
    @return_reply(Discrete(MODES))
    def request_set_mode(self, req, mode):
        """Change the operating mode (sensor ``mode``).

        Parameters
        ----------
        mode : {'idle', 'observe', 'calibrate'}
            The new mode.

        Returns
        -------
        success : {'ok', 'fail'}
        mode : str
            The mode now in force.

        Examples
        --------
        ::

            ?set-mode observe
            !set-mode ok observe
        """
        self._mode.set_value(mode)
        self._handled("set-mode")
        return ("ok", mode)

    @request(Address(optional=True))
    @return_reply(Address())
    def request_capture_destination(self, req, destination=None):
        """Query or set where captured data would go (sensor ``capture.destination``).

        Parameters
        ----------
        destination : address, optional
            ``host:port`` (IPv6 hosts in brackets, e.g. ``[::1]:7148``).  Omit to
            query.

        Returns
        -------
        success : {'ok', 'fail'}
        destination : address
            The destination now in force.

        Examples
        --------
        ::

            ?capture-destination 10.0.0.2:7148
            !capture-destination ok 10.0.0.2:7148
        """
        if destination is not None:
            if destination[1] is None:
                raise FailReply("The destination needs a port (host:port).")
            self._destination.set_value(destination)
        self._handled("capture-destination")
        return ("ok", self._destination.value())

    @request_timeout_hint(MAX_SLOW_SECONDS + 5.0)
    @concurrent_reply
    @request(Float(min=0.0, max=MAX_SLOW_SECONDS))
    @return_reply(Float())
    async def request_slow_command(self, req, seconds):
        """Wait, then reply: a slow request (``async def``) with a timeout hint.

        Other requests from the same client are handled while it waits.

        Parameters
        ----------
        seconds : float
            How long to take, 0 to 30 seconds.

        Returns
        -------
        success : {'ok', 'fail'}
        seconds : float
            The time actually taken (loop clock), in seconds.

        Examples
        --------
        ::

            ?slow-command 1.5
            !slow-command ok 1.50093
        """
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(seconds)
        self._handled("slow-command")
        return ("ok", loop.time() - t0)

    @request_timeout_hint(MAX_COUNTDOWN * COUNTDOWN_STEP + 5.0)
    @request(Int(min=0, max=MAX_COUNTDOWN))
    def request_countdown(self, req, start):
        """Count down, one ``#countdown`` inform per 0.1 s, then reply.

        Shows the :class:`katcp.AsyncReply` style: the handler returns at once
        and the reply is sent later with ``req.reply``.

        Parameters
        ----------
        start : int
            Number to count down from, 0 to 20.

        Informs
        -------
        count : int
            ``start``, ``start - 1``, ..., ``0``.

        Returns
        -------
        success : {'ok', 'fail'}
        informs : int
            Number of ``#countdown`` informs sent.

        Examples
        --------
        ::

            ?countdown 2
            #countdown 2
            #countdown 1
            #countdown 0
            !countdown ok 3
        """
        self.ioloop.add_callback(self._countdown_step, req, start, start + 1)
        raise AsyncReply()

    def _countdown_step(self, req, count: int, total: int) -> None:
        req.inform(count)
        if count <= 0:
            self._handled("countdown")
            req.reply("ok", total)
        else:
            ioloop = self.ioloop
            assert ioloop is not None, "handlers run once the server has its ioloop"
            ioloop.call_later(COUNTDOWN_STEP, self._countdown_step, req, count - 1, total)


# --------------------------------------------------------------------- running


async def run_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                     update_period: float = DEFAULT_UPDATE_PERIOD,
                     stop_event: asyncio.Event | None = None,
                     on_started: Callable[[ExampleServer], Any] | None = None,
                     **server_kwargs: Any) -> None:
    """Run an :class:`ExampleServer` in the running loop until stopped.

    Parameters
    ----------
    host, port : str, int
        Where to listen.
    update_period : float, optional
        Seconds between simulated sensor updates.
    stop_event : asyncio.Event, optional
        Stop when this is set (the server also stops on ``?halt``, SIGINT and
        SIGTERM).
    on_started : callable, optional
        Called with the server once it is listening (e.g. to learn the port
        chosen for ``port=0`` from ``server.bind_address``).
    **server_kwargs
        Passed on to :class:`ExampleServer` (e.g. ``ssl=``, ``users=``).
    """
    loop = asyncio.get_running_loop()
    server = ExampleServer(host, port, update_period=update_period, **server_kwargs)
    server.set_ioloop(tornado.ioloop.IOLoop.current())
    await server.start()
    bound = server.bind_address
    log.info("Example instrument listening on %s:%s%s%s", bound[0], bound[1],
             " (TLS)" if server_kwargs.get("ssl") else "",
             " (login required)" if server_kwargs.get("users") else "")
    if on_started is not None:
        on_started(server)
    if stop_event is None:
        stop_event = asyncio.Event()
    installed: List[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop_event.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # Windows, or not the main thread: Ctrl-C still raises
    waiters = [asyncio.ensure_future(stop_event.wait()),
               asyncio.ensure_future(server.wait_halted())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for signum in installed:
            loop.remove_signal_handler(signum)
        stopped = server.stop()
        if isinstance(stopped, (asyncio.Future, concurrent.futures.Future)):
            try:
                await asyncio.wait_for(asyncio.wrap_future(stopped), 5.0)
            except asyncio.TimeoutError:
                log.warning("Server did not stop cleanly within 5 s")
        log.info("Example instrument stopped")


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``katcp-exampleserver``."""
    parser = argparse.ArgumentParser(
        prog="katcp-exampleserver",
        description="Run an example KATCP instrument (a simulated radio receiver).")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; "
                             "0.0.0.0 for all interfaces)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port to listen on (default {DEFAULT_PORT}; 0 picks one)")
    parser.add_argument("--update-period", type=float, default=DEFAULT_UPDATE_PERIOD,
                        help="seconds between simulated sensor updates "
                             f"(default {DEFAULT_UPDATE_PERIOD})")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug messages")
    sec = parser.add_argument_group("security")
    sec.add_argument("--tls-cert", metavar="CERT",
                     help="serve TLS with this certificate (PEM; needs --tls-key unless "
                          "the key is in it)")
    sec.add_argument("--tls-key", metavar="KEY", help="private key of --tls-cert")
    sec.add_argument("--tls-client-ca", metavar="CA",
                     help="require client certificates signed by this CA (mutual TLS)")
    sec.add_argument("--users", metavar="DB",
                     help="require login against this user store (made with katcp-admin)")
    sec.add_argument("--login-timeout", type=float, default=60.0, metavar="S",
                     help="close connections not logged in after S seconds (default 60)")
    sec.add_argument("--audit-log", metavar="FILE",
                     help="append the audit log (logins, control and admin requests) "
                          "to FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``katcp-exampleserver``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
        Process exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"port must be 0..65535, got {args.port}")
    if not args.update_period > 0:
        parser.error("--update-period must be positive")
    if (args.tls_key or args.tls_client_ca) and not args.tls_cert:
        parser.error("--tls-key and --tls-client-ca need --tls-cert")
    if not args.login_timeout > 0:
        parser.error("--login-timeout must be positive")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kwargs: dict = {}
    try:
        if args.tls_cert:
            kwargs["ssl"] = server_context(args.tls_cert, args.tls_key,
                                           client_ca=args.tls_client_ca)
        if args.users:
            if not os.path.exists(args.users):
                raise UserStoreError(f"no user store {args.users} (make one with "
                                     "katcp-admin user add)")
            kwargs["users"] = UserStore(args.users)
            kwargs["login_timeout"] = args.login_timeout
        if args.audit_log:
            open_audit_log(args.audit_log)
    except (OSError, ssl.SSLError, UserStoreError) as exc:
        log.error("Cannot set up security: %s", exc)
        return 1
    try:
        asyncio.run(run_server(args.host, args.port, args.update_period, **kwargs))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        log.error("Cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
