"""Roles: order, the default role of each standard request, and @requires_role."""

import pytest

from katcp import kattypes
from katcp._security.roles import (
    ADMIN,
    CONTROL,
    READ,
    ROLES,
    UNAUTHENTICATED_REQUESTS,
    default_role,
    required_role,
    requires_role,
    role_allows,
)
from katcp.kattypes import Float, request, return_reply
from katcp.server import BASE_REQUESTS, DeviceServer


def test_order():
    assert ROLES == (READ, CONTROL, ADMIN)
    allowed = {(has, needs) for has in ROLES for needs in ROLES if role_allows(has, needs)}
    assert allowed == {(READ, READ), (CONTROL, READ), (CONTROL, CONTROL),
                       (ADMIN, READ), (ADMIN, CONTROL), (ADMIN, ADMIN)}
    with pytest.raises(ValueError, match="Unknown role"):
        role_allows("root", READ)
    with pytest.raises(ValueError):
        requires_role("superuser")


@pytest.mark.parametrize("name,args,role", [
    ("help", (), READ), ("help", ("halt",), READ),
    ("sensor-list", (), READ), ("sensor-value", ("x",), READ),
    ("sensor-sampling", ("x", "event"), READ), ("watchdog", (), READ),
    ("version-list", (), READ), ("client-list", (), READ),
    ("request-timeout-hint", (), READ), ("login", ("u", "p"), READ),
    ("log-level", (), READ), ("log-level", ("debug",), ADMIN),
    ("halt", (), ADMIN), ("restart", (), ADMIN),
    ("sensor-sampling-clear", (), CONTROL), ("my-own-request", (), CONTROL),
])
def test_default_roles(name, args, role):
    assert default_role(name, args) == role


#: The role of every request DeviceServer answers (log-level: its query).
STANDARD_ROLES = {
    "client-list": READ, "help": READ, "log-level": READ, "sensor-list": READ,
    "sensor-sampling": READ, "sensor-value": READ, "version-list": READ, "watchdog": READ,
    "sensor-sampling-clear": CONTROL, "halt": ADMIN, "restart": ADMIN,
}


def test_every_standard_request_has_a_deliberate_role():
    # A standard request added later fails here until it is given a role on purpose.
    handlers = DeviceServer._request_handlers
    assert set(handlers) == set(STANDARD_ROLES)
    assert set(BASE_REQUESTS) <= set(handlers)
    for name, handler in handlers.items():
        assert required_role(handler, name) == STANDARD_ROLES[name], name


def test_unauthenticated_requests():
    assert UNAUTHENTICATED_REQUESTS == {"login", "help", "watchdog", "version-list"}
    assert all(default_role(n) == READ for n in UNAUTHENTICATED_REQUESTS)


def _mark_orders():
    """The same handler decorated with @requires_role at each position."""

    class Outer:
        @requires_role(ADMIN)
        @request(Float())
        @return_reply()
        def request_set_gain(self, req, gain):
            return ("ok",)

    class Middle:
        @request(Float())
        @requires_role(ADMIN)
        @return_reply()
        def request_set_gain(self, req, gain):
            return ("ok",)

    class Inner:
        @request(Float())
        @return_reply()
        @requires_role(ADMIN)
        def request_set_gain(self, req, gain):
            return ("ok",)

    class Async:
        @return_reply()
        @kattypes.concurrent_reply
        @requires_role(READ)
        async def request_set_gain(self, req):
            return ("ok",)

    return [(Outer, ADMIN), (Middle, ADMIN), (Inner, ADMIN), (Async, READ)]


@pytest.mark.parametrize("cls,role", _mark_orders())
def test_requires_role_in_any_order(cls, role):
    handler = cls.request_set_gain
    assert required_role(handler, "set-gain", ("1.0",)) == role
    assert required_role(cls().request_set_gain, "set-gain") == role


def test_marked_server_handler_seen_through_the_handler_table():
    class Device(DeviceServer):
        VERSION_INFO = ("device", 1, 0)
        BUILD_INFO = ("device", 1, 0, "")

        @requires_role(READ)
        @request(Float())
        @return_reply()
        def request_set_gain(self, req, gain):
            """Set the gain."""
            return ("ok",)

        @requires_role(ADMIN)
        @return_reply()
        def request_shutdown_rf(self, req):
            """Switch off RF."""
            return ("ok",)

    table = Device._request_handlers
    assert required_role(table["set-gain"], "set-gain", ("1",)) == READ
    assert required_role(table["shutdown-rf"], "shutdown-rf") == ADMIN
    assert required_role(table["sensor-value"], "sensor-value") == READ
    assert required_role(None, "no-such-request") == CONTROL
