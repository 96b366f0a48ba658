"""Request/inform/reply decorators of :mod:`katcp.kattypes`.

They turn a handler's typed signature (:mod:`katcp._protocol.kattypes`) into message
unpacking and reply packing.  Users import them from :mod:`katcp.kattypes`.

KATCP major version
-------------------
Types such as :class:`~katcp.kattypes.Timestamp` format differently for
KATCP v4 and v5.  A decorator given ``major=N`` always uses N (as in
katcp-python).  Without it the version is looked up when the handler runs:
the server's ``PROTOCOL_INFO`` (``handler(server, req, msg)``), a client's
``protocol_flags``, or the protocol flags reachable from
``req.client_connection``; failing all of these, KATCP v5.
"""

import asyncio
import concurrent.futures
import inspect
from functools import update_wrapper, wraps
from typing import Any, Callable, List, Optional, Protocol, Sequence, TypeVar, Union


from katcp._protocol.kattypes import KatcpType, Str, _check_multiple, pack_types, unpack_types
from katcp._protocol.message import DEFAULT_KATCP_MAJOR, Message
from katcp._protocol.metaclass import convert_method_name

__all__ = [
    "request", "inform", "unpack_message", "return_reply", "send_reply", "make_reply",
    "async_make_reply", "concurrent_reply", "minimum_katcp_version",
    "has_katcp_protocol_flags", "request_timeout_hint",
]

_FUTURE_TYPES = (asyncio.Future, concurrent.futures.Future)
_F = TypeVar("_F", bound=Callable[..., Any])


class _ReplyTarget(Protocol):
    """What :func:`send_reply` needs of the request its callback returns.

    Satisfied by the server's ``ClientRequestConnection``: the request message (for the
    reply's name) and the method that sends a ready reply.
    """

    msg: Message

    def reply_with_message(self, rep_msg: Message) -> Any:
        ...


def _mark(handler: _F, **markers: Any) -> _F:
    """Attach `markers` as attributes of `handler` and return it unchanged.

    The markers (``_request_decorated``, ``_orig_argnames``, ``_concurrent_reply``,
    ``_minimum_katcp_version``, ``_has_katcp_protocol_flags``, ``request_timeout_hint``) are
    read back with ``getattr`` by the other decorators, the metaclass and the server's
    dispatcher: function attributes are the interface katcp-python defined for them.
    """
    for name, value in markers.items():
        setattr(handler, name, value)
    return handler
_STR = Str()
_FAIL_TYPES = (_STR, _STR)


def _flags_major(flags: Any) -> Optional[int]:
    major = getattr(flags, "major", None)
    return major if isinstance(major, int) else None


def _lookup_major(obj: object, req: object = None) -> int:
    """KATCP major version in force for a handler bound to `obj` serving `req`."""
    major = _flags_major(getattr(obj, "PROTOCOL_INFO", None))
    if major is not None:
        return major
    major = _flags_major(getattr(obj, "protocol_flags", None))
    if major is not None:
        return major
    conn = getattr(req, "client_connection", None)
    if conn is not None:
        for attr in ("protocol_flags", "PROTOCOL_INFO"):
            major = _flags_major(getattr(conn, attr, None))
            if major is not None:
                return major
        for attr in ("_device", "server", "_server"):
            owner = getattr(conn, attr, None)
            if owner is not None:
                major = _flags_major(getattr(owner, "PROTOCOL_INFO", None))
                if major is not None:
                    return major
    return DEFAULT_KATCP_MAJOR


def _positional_names(handler: Callable) -> List[str]:
    """Positional parameter names of `handler` (following ``__wrapped__``)."""
    names = getattr(handler, "_orig_argnames", None)
    if names is not None:
        return list(names)
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _pop_options(options: dict, decorator: str, **defaults: Any) -> tuple:
    values = tuple(options.pop(key, default) for key, default in defaults.items())
    if options:
        raise TypeError(f"{decorator} does not take keyword argument(s) {list(options)!r}.")
    return values


def request(*types: KatcpType, **options: Any) -> Callable:
    """Decorator for request handler methods: unpack arguments by type.

    The decorated method takes ``self``, ``req`` (and ``msg`` if
    `include_msg`), followed by one parameter per type.  Arguments that do
    not unpack produce ``FailReply("Error in parameter N (name): ...")``
    and the handler is not called.

    Parameters
    ----------
    *types : KatcpType
        Types of the request arguments, in order; only the last may be
        ``multiple=True``.
    include_msg : bool, optional
        Also pass the request message after ``req`` (default False).
    major : int, optional
        KATCP major version for interpreting arguments; by default the one
        the server (or client) speaks.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @request(Int(), Float(), Bool())
    ...     @return_reply(Int(), Float())
    ...     def request_myreq(self, req, my_int, my_float, my_bool):
    ...         '''?myreq my_int my_float my_bool'''
    ...         return ("ok", my_int + 1, my_float / 2.0)
    """
    include_msg, has_req, major, _ = _pop_options(
        options, "request", include_msg=False, has_req=True, major=None, _check_req=True)
    _check_multiple(types)

    def decorator(handler: Callable) -> Callable:
        skip = 1 + bool(has_req) + bool(include_msg)
        argnames = _positional_names(handler)[skip:]
        fixed_major = major

        def unpack(self: object, req: object, msg: Message) -> list:
            m = fixed_major if fixed_major is not None else _lookup_major(self, req)
            return unpack_types(types, msg.arguments, argnames, m)

        # Arguments are unpacked before the handler runs, also for coroutine
        # handlers (whose coroutine is returned as is): a bad argument raises
        # FailReply at once, as katcp-python's tornado coroutines did.
        # ``self`` is the user's server or client: any object (a true dynamic boundary).
        raw_handler: Callable[..., Any]
        if has_req:
            if include_msg:
                def req_msg_handler(self: Any, req: Any, msg: Message) -> Any:
                    return handler(self, req, msg, *unpack(self, req, msg))
                raw_handler = req_msg_handler
            else:
                def req_handler(self: Any, req: Any, msg: Message) -> Any:
                    return handler(self, req, *unpack(self, req, msg))
                raw_handler = req_handler
        else:
            if include_msg:
                def msg_handler(self: Any, msg: Message) -> Any:
                    return handler(self, msg, *unpack(self, None, msg))
                raw_handler = msg_handler
            else:
                def plain_handler(self: Any, msg: Message) -> Any:
                    return handler(self, *unpack(self, None, msg))
                raw_handler = plain_handler

        update_wrapper(raw_handler, handler)
        # Tell an outer return_reply that it is on the outside.
        return _mark(raw_handler, _request_decorated=True)

    return decorator


def inform(*types: KatcpType, **options: Any) -> Callable:
    """Decorator for inform handler methods: unpack arguments by type.

    Like :func:`request` but the handler has no ``req`` parameter:
    ``def inform_x(self, [msg,] *values)``.

    Parameters
    ----------
    *types : KatcpType
        Types of the inform arguments, in order.
    include_msg : bool, optional
        Also pass the message after ``self``.
    major : int, optional
        KATCP major version (default: the client's peer protocol, else 5).

    Examples
    --------
    >>> class MyDeviceClient(katcp.client.AsyncClient):
    ...     @inform(Int(), Float())
    ...     def inform_myinf(self, my_int, my_float):
    ...         '''Handle #myinf <my_int> <my_float>'''
    """
    options.setdefault("has_req", False)
    return request(*types, **options)


def unpack_message(*types: KatcpType, **options: Any) -> Callable:
    """Decorator that unpacks a :class:`katcp.Message` into function arguments.

    Same as :func:`inform`; handy for ``reply_*`` and ``inform_*`` handlers.

    Parameters
    ----------
    *types : KatcpType
        Types of the message arguments, in order.
    include_msg : bool, optional
        Also pass the message after ``self``.
    major : int, optional
        KATCP major version.

    Examples
    --------
    >>> class MyClient(DeviceClient):
    ...     @unpack_message(Str(), Int(), Float(), Bool())
    ...     def reply_myreq(self, status, my_int, my_float, my_bool):
    ...         print('myreq replied with', status, my_int, my_float, my_bool)
    """
    options.setdefault("has_req", False)
    return request(*types, **options)


def make_reply(msgname: str, types: Sequence[KatcpType], arguments: Sequence[Any],
               major: int) -> Message:
    """Build a reply message from ``("ok", *values)`` or ``("fail", reason)``.

    Parameters
    ----------
    msgname : str
        Name of the reply.
    types : sequence of KatcpType
        Types of the values after ``"ok"``.
    arguments : sequence
        ``("ok", value, ...)`` or ``("fail", reason)``.
    major : int
        KATCP major version to pack for.

    Returns
    -------
    reply : Message
        The reply (without message id; the server adds the request's).

    Raises
    ------
    ValueError
        If the status is neither ``ok`` nor ``fail`` or a value does not pack.
    """
    try:
        status = arguments[0]
    except (TypeError, IndexError, KeyError):
        raise ValueError(f"Reply for {msgname!r} must be a sequence starting with "
                         f"'ok' or 'fail', not {arguments!r}.") from None
    if isinstance(status, bytes):
        status = status.decode("ascii", "replace")
    if status == "fail":
        return Message.reply(msgname, *pack_types(_FAIL_TYPES, arguments, major))
    if status == "ok":
        return Message.reply(msgname, *pack_types((_STR,) + tuple(types), arguments, major))
    raise ValueError("First returned value must be 'ok' or 'fail'.")


def _chain(source: Any, transform: Callable[[Any], Any]) -> Any:
    """A future of the same family as `source` resolving to transform(result)."""
    result: Union[asyncio.Future[Any], concurrent.futures.Future[Any]]
    if isinstance(source, asyncio.Future):
        result = source.get_loop().create_future()
    else:
        result = concurrent.futures.Future()

    def on_source_done(src: Any) -> None:
        if result.done():
            return
        if src.cancelled():
            result.cancel()
            return
        exc = src.exception()
        if exc is not None:
            result.set_exception(exc)
            return
        try:
            value = transform(src.result())
        except BaseException as err:  # propagate everything to the waiter
            result.set_exception(err)
        else:
            result.set_result(value)

    def on_result_done(res: Any) -> None:
        if res.cancelled() and not source.done():
            source.cancel()

    result.add_done_callback(on_result_done)
    source.add_done_callback(on_source_done)
    return result


def _off_its_loop(source: Any) -> bool:
    """Whether `source` is an asyncio future whose (running) loop is not this thread's.

    Such a future may only be touched in its loop's thread.  This layer has no way into
    a loop (that is ``katcp._aio.loopcalls``, a layer up), so it hands the caller a
    coroutine instead: the device server awaits it in its loop, posted there through
    the loop's ``LoopCalls`` queue like any awaitable a handler thread returns.
    """
    if not isinstance(source, asyncio.Future):
        return False
    loop = source.get_loop()
    try:
        return asyncio.get_running_loop() is not loop and loop.is_running()
    except RuntimeError:  # no loop in this thread
        return loop.is_running()


def async_make_reply(msgname: str, types: Sequence[KatcpType], arguments_future: Any,
                     major: int) -> Any:
    """Wrap a future (or awaitable) of reply arguments into one of a reply.

    Parameters
    ----------
    msgname : str
        Name of the reply.
    types : sequence of KatcpType
        Types of the reply values.
    arguments_future : future or awaitable
        Resolves to the arguments for :func:`make_reply`.
    major : int
        KATCP major version to pack for.

    Returns
    -------
    reply_future : future or coroutine
        An asyncio/tornado future for an asyncio future (called in its loop's thread, or
        while that loop is not running), a :class:`concurrent.futures.Future` for one of
        those, otherwise a coroutine resolving to the reply :class:`Message` (to be
        awaited in the loop of the future it waits for).
    """
    def transform(arguments: Any) -> Message:
        return make_reply(msgname, types, arguments, major)

    if isinstance(arguments_future, _FUTURE_TYPES) and not _off_its_loop(arguments_future):
        return _chain(arguments_future, transform)

    async def wait_and_reply() -> Message:
        return transform(await arguments_future)
    return wait_and_reply()


def return_reply(*types: KatcpType, **options: Any) -> Callable:
    """Decorator for request handlers: build the reply from the returned tuple.

    The handler returns ``("ok", *values)`` (values packed by `types`) or
    ``("fail", reason)``, or a future / coroutine resolving to one; the
    decorated handler returns the reply :class:`Message` (or a future /
    coroutine of it).  The handler's name must start with ``request_``.

    Parameters
    ----------
    *types : KatcpType
        Types of the reply values after ``"ok"``.
    major : int, optional
        KATCP major version to pack for; by default the one in force.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @request(Int())
    ...     @return_reply(Int(), Float())
    ...     def request_myreq(self, req, my_int):
    ...         '''?myreq my_int'''
    ...         return ("ok", my_int + 1, my_int * 2.0)
    """
    (major,) = _pop_options(options, "return_reply", major=None)
    _check_multiple(types)

    def decorator(handler: Callable) -> Callable:
        if not handler.__name__.startswith("request_"):
            raise ValueError("This decorator can only be used on a katcp request handler "
                             "(method name should start with 'request_').")
        msgname = convert_method_name("request_", handler.__name__)
        fixed_major = major

        raw_handler: Callable[..., Any]
        if inspect.iscoroutinefunction(handler):
            @wraps(handler)
            async def async_handler(self: Any, *args: Any) -> Message:
                reply_args = await handler(self, *args)
                m = fixed_major if fixed_major is not None else _lookup_major(
                    self, args[0] if args else None)
                return make_reply(msgname, types, reply_args, m)
            raw_handler = async_handler
        else:
            @wraps(handler)
            def sync_handler(self: Any, *args: Any) -> Any:
                reply_args = handler(self, *args)
                m = fixed_major if fixed_major is not None else _lookup_major(
                    self, args[0] if args else None)
                if isinstance(reply_args, (tuple, list)):
                    return make_reply(msgname, types, reply_args, m)
                if isinstance(reply_args, _FUTURE_TYPES) or inspect.isawaitable(reply_args):
                    return async_make_reply(msgname, types, reply_args, m)
                return make_reply(msgname, types, reply_args, m)
            raw_handler = sync_handler

        if not getattr(handler, "_request_decorated", False):
            # We are inside @request: keep the real parameter names for it.
            _mark(raw_handler, _orig_argnames=_positional_names(handler))
        return raw_handler

    return decorator


def send_reply(*types: KatcpType, **options: Any) -> Callable:
    """Decorator for callbacks that send a reply built from their result.

    The callback returns ``(req, "ok", *values)`` or ``(req, "fail",
    reason)``; the reply is built as by :func:`return_reply` under the name
    of ``req.msg`` and sent with ``req.reply_with_message``.

    Parameters
    ----------
    *types : KatcpType
        Types of the reply values after ``"ok"``.
    major : int, optional
        KATCP major version to pack for.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @send_reply(Int(), Float())
    ...     def my_callback(self, req):
    ...         return (req, "ok", 5, 2.0)
    """
    (major,) = _pop_options(options, "send_reply", major=None)
    _check_multiple(types)

    def decorator(handler: Callable) -> Callable:
        @wraps(handler)
        def raw_handler(self: Any, *args: Any) -> None:
            reply_args = handler(self, *args)
            req: _ReplyTarget = reply_args[0]
            m = major if major is not None else _lookup_major(self, req)
            reply = make_reply(req.msg.name, types, reply_args[1:], m)
            req.reply_with_message(reply)
        return raw_handler

    return decorator


def concurrent_reply(handler: _F) -> _F:
    """Decorator: let the next request of the same client start before this one ends.

    By default a handler that returns a future holds back further messages
    from its client until the future resolves; a handler marked with this
    decorator does not (similar to raising :class:`AsyncReply`).

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @return_reply(Int())
    ...     @concurrent_reply
    ...     async def request_myreq(self, req):
    ...         '''A slow request'''
    ...         return ("ok", await self.slow_operation())
    """
    return _mark(handler, _concurrent_reply=True)


def minimum_katcp_version(major: int, minor: int = 0) -> Callable[[_F], _F]:
    """Decorator: only expose the handler if the server's protocol is >= major.minor.

    Parameters
    ----------
    major, minor : int
        Minimum KATCP version (compared with the server's ``PROTOCOL_INFO``).
    """
    version_tuple = (major, minor)

    def decorator(handler: _F) -> _F:
        return _mark(handler, _minimum_katcp_version=version_tuple)

    return decorator


def has_katcp_protocol_flags(protocol_flags: Sequence[Any]) -> Callable[[_F], _F]:
    """Decorator: only expose the handler if the server has all these protocol flags.

    Parameters
    ----------
    protocol_flags : sequence
        Flags such as ``ProtocolFlags.MULTI_CLIENT`` required in the server's
        ``PROTOCOL_INFO``.
    """
    def decorator(handler: _F) -> _F:
        return _mark(handler, _has_katcp_protocol_flags=protocol_flags)

    return decorator


def request_timeout_hint(timeout_hint: Optional[float]) -> Callable[[_F], _F]:
    """Decorator: attach a recommended client timeout (seconds) to a request.

    Reported by ``?request-timeout-hint`` on servers with KATCP >= 5.1 and the
    ``T`` protocol flag.

    Parameters
    ----------
    timeout_hint : float or None
        Reasonable upper bound on the request's duration; None for no hint.
    """
    if timeout_hint is not None:
        timeout_hint = float(timeout_hint)

    def decorator(handler: _F) -> _F:
        return _mark(handler, request_timeout_hint=timeout_hint)

    return decorator
