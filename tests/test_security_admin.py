"""``katcp-admin`` run as a real subprocess: certgen, certdump, user add/remove/list/passwd."""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys

import pytest

from katcp._security import certs
from katcp._security.passwords import ScryptParams
from katcp._security.userstore import User, UserStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "pa55 word-unique-7f3a"


def admin(*args: str, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "katcp.tools.admin", *args],
                          input=stdin if stdin is not None else "", capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd)


def test_certgen_self_signed_and_certdump(tmp_path):
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    result = admin("certgen", str(cert), str(key), "--hostname", "myhost.example",
                   "--hostname", "10.1.2.3", "--days", "30", "--org", "Lab")
    assert result.returncode == 0, result.stderr
    assert "CN=myhost.example,O=Lab" in result.stdout and "self-signed" in result.stdout
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    loaded = certs.load_certificate(cert)
    assert certs.subject_of(loaded) == "CN=myhost.example,O=Lab"
    ssl.create_default_context(cafile=str(cert))  # a usable trust anchor
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))  # key matches

    dump = admin("certdump", str(cert))
    assert dump.returncode == 0, dump.stderr
    assert "Subject:      CN=myhost.example,O=Lab" in dump.stdout
    assert "myhost.example, 10.1.2.3" in dump.stdout
    assert "Self-signed:  yes" in dump.stdout and "CA:           yes" in dump.stdout
    assert "valid, 29 days left" in dump.stdout or "valid, 30 days left" in dump.stdout
    assert "SHA-256:" in dump.stdout


def test_certgen_default_hostnames(tmp_path):
    result = admin("certgen", "c.pem", "k.pem", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    dump = admin("certdump", "c.pem", cwd=tmp_path).stdout
    assert "localhost" in dump and "127.0.0.1" in dump and "::1" in dump


def test_certgen_signed_by_ca(tmp_path):
    assert admin("certgen", "ca.crt", "ca.key", "--hostname", "Lab CA",
                 cwd=tmp_path).returncode == 0
    result = admin("certgen", "alice.crt", "alice.key", "--hostname", "alice",
                   "--sign-with", "ca.crt", "ca.key", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "signed by CN=Lab CA" in result.stdout
    dump = admin("certdump", "alice.crt", cwd=tmp_path).stdout
    assert "Subject:      CN=alice" in dump and "Issuer:       CN=Lab CA" in dump
    assert "CA:           no" in dump


def test_certgen_refuses_to_overwrite_unless_forced(tmp_path):
    assert admin("certgen", "c.pem", "k.pem", cwd=tmp_path).returncode == 0
    before = (tmp_path / "k.pem").read_bytes()
    result = admin("certgen", "c.pem", "k.pem", cwd=tmp_path)
    assert result.returncode == 1
    assert "exists (use --force" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "k.pem").read_bytes() == before
    assert admin("certgen", "c.pem", "k.pem", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "k.pem").read_bytes() != before


def test_certdump_errors(tmp_path):
    missing = admin("certdump", str(tmp_path / "none.pem"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk = admin("certdump", str(tmp_path / "junk.pem"))
    assert junk.returncode == 1 and "does not hold a PEM certificate" in junk.stderr
    bad_ca = admin("certgen", "c", "k", "--sign-with", "none.crt", "none.key", cwd=tmp_path)
    assert bad_ca.returncode == 1 and "cannot load the CA" in bad_ca.stderr


def test_user_add_list_passwd_remove(tmp_path):
    db = str(tmp_path / "users.db")
    add = admin("user", "add", db, "alice", "--role", "admin", "--password-stdin",
                stdin=SECRET + "\n")
    assert add.returncode == 0, add.stderr
    assert "Added user alice (admin)" in add.stdout
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    add2 = admin("user", "add", db, "bob", "--role", "read", "--subject", "CN=bob,O=Lab",
                 "--password-stdin", stdin=SECRET + "-bob")  # no newline at the end
    assert add2.returncode == 0, add2.stderr

    listing = admin("user", "list", db)
    assert listing.returncode == 0
    assert listing.stdout.splitlines() == [
        "USER   ROLE     CERTIFICATE SUBJECT",
        "alice  admin    -",
        "bob    read     CN=bob,O=Lab",
    ]
    store = UserStore(db)
    assert store.verify("alice", SECRET) == User("alice", "admin")
    assert store.verify("bob", SECRET + "-bob") is not None

    passwd = admin("user", "passwd", db, "alice", "--password-stdin", stdin="new one\r\n")
    assert passwd.returncode == 0, passwd.stderr
    assert store.verify("alice", SECRET) is None
    assert store.verify("alice", "new one") is not None

    change = admin("user", "set", db, "bob", "--role", "control", "--no-subject")
    assert change.returncode == 0, change.stderr
    assert store.get_user("bob") == User("bob", "control", None)

    remove = admin("user", "remove", db, "bob")
    assert remove.returncode == 0 and "Removed user bob" in remove.stdout
    assert [u.name for u in store.list_users()] == ["alice"]

    with open(db, "rb") as f:
        data = f.read()
    for secret in (SECRET, SECRET + "-bob", "new one"):
        assert secret.encode() not in data


@pytest.mark.parametrize("args,stdin,message", [
    (("add", "{db}", "alice", "--role", "read", "--password-stdin"), "x\n", "already in"),
    (("add", "{db}", "carol", "--role", "read", "--password-stdin"), "\n", "must not be empty"),
    (("add", "{db}", "bad name", "--role", "read", "--password-stdin"), "x\n", "user names"),
    (("remove", "{db}", "nobody"), "", "no user 'nobody'"),
    (("passwd", "{db}", "nobody", "--password-stdin"), "x\n", "no user 'nobody'"),
    (("set", "{db}", "alice"), "", "nothing to change"),
])
def test_user_failures_exit_1_with_a_message(tmp_path, args, stdin, message):
    db = str(tmp_path / "users.db")
    UserStore(db, params=ScryptParams(n=2**8)).add_user("alice", SECRET, "read")
    result = admin("user", *[a.format(db=db) for a in args], stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.startswith("katcp-admin: error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and SECRET not in result.stderr


def test_not_a_user_store(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"junk" * 1000)
    result = admin("user", "list", str(tmp_path / "junk.db"))
    assert result.returncode == 1 and "not a katcp user store" in result.stderr


@pytest.mark.parametrize("args", [
    (), ("certgen",), ("certgen", "only-cert"), ("user",), ("user", "add", "db", "u"),
    ("user", "add", "db", "u", "--role", "root"), ("certgen", "c", "k", "--days", "0"),
    ("frobnicate",), ("user", "set", "db", "u", "--subject", "CN=x", "--no-subject"),
])
def test_usage_errors_exit_2(tmp_path, args):
    result = admin(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert not os.path.exists(tmp_path / "db")


def test_password_prompt_twice_must_match(tmp_path):
    """Without --password-stdin the password is asked twice (getpass on a terminal)."""
    pty = pytest.importorskip("pty")
    db = str(tmp_path / "users.db")
    for first, second, status in (("same-pw", "same-pw", 0), ("one-pw", "other-pw", 1)):
        pid, fd = pty.fork()
        if pid == 0:  # child: run the tool on the pseudo-terminal
            os.environ["PYTHONPATH"] = ROOT
            os.execv(sys.executable, [sys.executable, "-m", "katcp.tools.admin", "user",
                                      "passwd" if status == 1 else "add", db, "dave",
                                      *([] if status == 1 else ["--role", "read"])])
        output = b""
        for answer in (first, second):
            while b"assword: " not in output[-30:]:
                output += os.read(fd, 1024)
            os.write(fd, answer.encode() + b"\n")
            output = b""
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        _, wait_status = os.waitpid(pid, 0)
        os.close(fd)
        assert os.waitstatus_to_exitcode(wait_status) == status, output
        assert first.encode() not in output  # not echoed
        if status == 1:
            assert b"do not match" in output
    assert UserStore(db).verify("dave", "same-pw") is not None
