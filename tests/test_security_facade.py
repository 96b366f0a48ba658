"""``katcp.security`` is a thin facade: the same objects as the private modules, and
importable without the optional ``cryptography`` library."""

import subprocess
import sys

import katcp.security as security
from katcp._security import access, audit, roles, tls, userstore


def test_facade_reexports_the_private_objects():
    assert security.UserStore is userstore.UserStore
    assert security.AccessControl is access.AccessControl
    assert security.requires_role is roles.requires_role
    assert security.server_context is tls.server_context
    assert security.client_context is tls.client_context
    assert security.open_audit_log is audit.open_audit_log
    assert security.ROLES == ("read", "control", "admin")
    assert (security.READ, security.CONTROL, security.ADMIN) == security.ROLES


def test_facade_does_not_need_cryptography():
    code = ("import sys; sys.modules['cryptography'] = None; import katcp.security; "
            "assert 'katcp._security.certs' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-1000:]
