"""Roles: their names and order, the role each request needs, and :func:`requires_role`.

A user has one role. Roles are ordered ``read < control < admin``: a role may do what
the roles below it may.

* ``read`` -- look, never touch: ``?help``, ``?sensor-list``, ``?sensor-value``,
  ``?sensor-sampling``, ``?watchdog``, ``?version-list``, ``?client-list``,
  ``?request-timeout-hint`` and ``?log-level`` without arguments (the query).
* ``admin`` -- ``?halt``, ``?restart`` and ``?log-level`` with arguments (setting it).
* ``control`` -- every other request, including those a server class adds, unless the
  handler is marked otherwise with :func:`requires_role`.

Before logging in, a connection may only use :data:`UNAUTHENTICATED_REQUESTS`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

__all__ = [
    "ADMIN",
    "ADMIN_REQUESTS",
    "CONTROL",
    "READ",
    "READ_REQUESTS",
    "ROLES",
    "UNAUTHENTICATED_REQUESTS",
    "check_role",
    "default_role",
    "required_role",
    "requires_role",
    "role_allows",
]

READ = "read"
CONTROL = "control"
ADMIN = "admin"
#: Role names, weakest first.
ROLES = (READ, CONTROL, ADMIN)
_RANK = {role: rank for rank, role in enumerate(ROLES)}

#: Requests answered before a connection has logged in.
UNAUTHENTICATED_REQUESTS = frozenset({"login", "help", "watchdog", "version-list"})

#: Standard requests that only read the server's state (``log-level`` only as a query).
READ_REQUESTS = frozenset({
    "login",
    "help",
    "sensor-list",
    "sensor-value",
    "sensor-sampling",
    "watchdog",
    "version-list",
    "client-list",
    "request-timeout-hint",
})

#: Standard requests that stop the server or change how it runs for everyone.
ADMIN_REQUESTS = frozenset({"halt", "restart"})

#: Name of the attribute :func:`requires_role` sets on a handler.
ROLE_ATTRIBUTE = "_katcp_required_role"

F = TypeVar("F", bound=Callable[..., Any])


def check_role(role: str) -> str:
    """Return ``role`` if it is a role name; raise :class:`ValueError` otherwise.

    Parameters
    ----------
    role : str
        Candidate role name.

    Returns
    -------
    role : str
        The same name.
    """
    if role not in _RANK:
        raise ValueError(f"Unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


def role_allows(has: str, needs: str) -> bool:
    """Whether a user with role ``has`` may make a request needing role ``needs``.

    Parameters
    ----------
    has : str
        The user's role.
    needs : str
        The role the request needs.

    Returns
    -------
    allowed : bool

    Raises
    ------
    ValueError
        Either name is not a role.
    """
    return _RANK[check_role(has)] >= _RANK[check_role(needs)]


def default_role(name: str, arguments: Sequence[Any] = ()) -> str:
    """The role a request needs when its handler is not marked with :func:`requires_role`.

    Parameters
    ----------
    name : str
        Request name, without the ``?``.
    arguments : sequence
        The request's arguments (only their number matters, for ``log-level``).

    Returns
    -------
    role : str
    """
    if name == "log-level":
        return ADMIN if len(arguments) else READ
    if name in READ_REQUESTS:
        return READ
    if name in ADMIN_REQUESTS:
        return ADMIN
    return CONTROL


def requires_role(role: str) -> Callable[[F], F]:
    """Decorator: the request handler needs ``role`` (whatever its arguments).

    Goes next to ``@request`` and ``@return_reply``, in any order: those decorators copy
    the function's attributes to their wrappers, and this one only sets an attribute.

    Parameters
    ----------
    role : str
        ``"read"``, ``"control"`` or ``"admin"``.

    Examples
    --------
    >>> class MyDevice(DeviceServer):
    ...     @requires_role("admin")
    ...     @request(Float())
    ...     @return_reply()
    ...     def request_set_gain(self, req, gain):
    ...         '''Set the gain (admin only).'''
    ...         return ("ok",)
    """
    check_role(role)

    def decorator(handler: F) -> F:
        setattr(handler, ROLE_ATTRIBUTE, role)
        return handler

    return decorator


def required_role(handler: Any, name: str, arguments: Sequence[Any] = ()) -> str:
    """The role needed to call ``handler`` as request ``name`` with ``arguments``.

    The handler's own mark (:func:`requires_role`) wins; otherwise :func:`default_role`.

    Parameters
    ----------
    handler : callable or None
        The request handler (bound or not), or None for an unknown request.
    name : str
        Request name.
    arguments : sequence
        Request arguments.

    Returns
    -------
    role : str
    """
    marked = getattr(handler, ROLE_ATTRIBUTE, None)
    if marked is not None:
        return marked
    return default_role(name, arguments)
