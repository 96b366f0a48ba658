"""``katcp-cmd`` and ``katcp-shell`` against a secured example instrument, as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from katcp._security.access import AccessControl
from katcp._security.backoff import LoginBackoff
from katcp._security.passwords import ScryptParams
from katcp._security.tls import server_context
from katcp._security.userstore import UserStore
from katcp.tools.example_server import ExampleServer

from _security_pki import make_pki

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "tool-secret-Pa55-91x"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki):
    store = UserStore(tmp_path_factory.mktemp("users") / "users.db", params=ScryptParams(n=2**8))
    store.add_user("op", SECRET, "control")
    store.add_user("viewer", SECRET, "read")
    access = AccessControl(store, login_timeout=30, backoff=LoginBackoff(base=0.05, cap=0.1,
                                                                          forget_after=1))
    srv = ExampleServer("127.0.0.1", 0, ssl=server_context(pki.server_cert, pki.server_key),
                        users=access)
    srv.start(timeout=10)
    yield srv
    srv.stop()
    srv.join(timeout=10)


def tool(module, *args, password=None, stdin=""):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("KATCP_PASSWORD", None)
    if password is not None:
        env["KATCP_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", f"katcp.tools.{module}", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)


def address(server):
    host, port = server.bind_address
    return f"{host}:{port}"


def test_cmd_login_and_roles(server, pki):
    ok = tool("cmd", "--cafile", pki.ca_cert, "--user", "op", address(server), "set-gain", "12",
              password=SECRET)
    assert (ok.returncode, ok.stdout) == (0, "!set-gain ok 12.0\n"), ok.stderr
    read = tool("cmd", "--cafile", pki.ca_cert, "--user", "viewer", address(server),
                "set-gain", "12", password=SECRET)
    assert read.returncode == 1
    assert read.stdout == ("!set-gain fail Permission\\_denied:\\_?set-gain\\_needs\\_the"
                           "\\_control\\_role.\n")
    add = tool("cmd", "--cafile", pki.ca_cert, "--user", "viewer", address(server),
               "add", "2", "3", password=SECRET)
    assert (add.returncode, add.stdout) == (0, "!add ok 5\n")


def test_cmd_wrong_password_exit_2(server, pki):
    result = tool("cmd", "--tls", "--cafile", pki.ca_cert, "--user", "op", address(server),
                  "watchdog", password="wrong")
    assert result.returncode == 2
    assert result.stderr.startswith("katcp-cmd: Login as op to ")
    assert "Login failed." in result.stderr and "wrong" not in result.stderr


def test_cmd_no_password_given(server, pki):
    result = tool("cmd", "--cafile", pki.ca_cert, "--user", "op", address(server), "watchdog")
    assert result.returncode == 2 and "no password for op" in result.stderr


def test_cmd_plaintext_to_tls_server_says_so(server):
    result = tool("cmd", "-t", "3", address(server), "watchdog")
    assert result.returncode == 2
    assert "may be a TLS server" in result.stderr


def test_cmd_untrusted_server(server, pki):
    result = tool("cmd", "-t", "3", "--cafile", pki.other_ca_cert, address(server), "watchdog")
    assert result.returncode == 2
    assert "TLS certificate check failed" in result.stderr


def test_cmd_tls_to_plaintext_server_says_so():
    srv = ExampleServer("127.0.0.1", 0)
    srv.start(timeout=10)
    try:
        result = tool("cmd", "-t", "3", "--insecure", address(srv), "watchdog")
    finally:
        srv.stop()
        srv.join(timeout=10)
    assert result.returncode == 2
    assert "does not seem to speak TLS" in result.stderr
    assert "WARNING: --insecure" in result.stderr


def test_cmd_bad_certificate_files(server, tmp_path):
    result = tool("cmd", "--cafile", str(tmp_path / "missing.crt"), address(server), "watchdog")
    assert result.returncode == 2 and "cannot load the TLS certificates" in result.stderr


def test_shell_plain_mode_logs_in(server, pki):
    result = tool("shell", "--plain", "--no-history", "--cafile", pki.ca_cert, "--user", "op",
                  address(server), password=SECRET, stdin="set-gain 7\nhalt\n")
    assert result.returncode == 0, result.stderr
    assert "!set-gain ok 7.0" in result.stdout
    assert "needs\\_the\\_admin\\_role" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_shell_login_refused(server, pki):
    result = tool("shell", "--plain", "--no-history", "--cafile", pki.ca_cert, "--user", "op",
                  address(server), password="nope", stdin="watchdog\n")
    assert result.returncode == 2 and "Login failed." in result.stderr
