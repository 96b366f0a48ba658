"""UserStore on a real SQLite file: users, roles, subjects, verification, no secrets."""

import logging
import os
import sqlite3
import stat
import threading

import pytest

from katcp._security.passwords import ScryptParams
from katcp._security.userstore import (
    UnknownUserError,
    User,
    UserExistsError,
    UserStore,
    UserStoreError,
)

FAST = ScryptParams(n=2**8)
PASSWORD = "Tr0ub4dor&3-unique-marker"


@pytest.fixture
def store(tmp_path):
    return UserStore(tmp_path / "users.db", params=FAST)


def test_file_created_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        UserStore(tmp_path / "users.db", params=FAST)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "users.db").st_mode)
    assert mode == 0o600


def test_shared_file_is_used_with_a_warning(tmp_path, caplog):
    path = tmp_path / "users.db"
    UserStore(path, params=FAST).add_user("alice", PASSWORD, "read")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="katcp.security"):
        reopened = UserStore(path, params=FAST)
    assert "chmod 600" in caplog.text
    assert reopened.get_user("alice") == User("alice", "read", None)


def test_add_list_get_remove(store):
    store.add_user("bob", PASSWORD, "control")
    store.add_user("alice", PASSWORD, "admin", subject="CN=alice,O=Lab")
    assert store.list_users() == [User("alice", "admin", "CN=alice,O=Lab"),
                                  User("bob", "control", None)]
    assert store.get_user("bob") == User("bob", "control")
    store.remove_user("bob")
    assert store.get_user("bob") is None
    with pytest.raises(UnknownUserError, match="no user 'bob'"):
        store.remove_user("bob")


def test_duplicates_refused(store):
    store.add_user("alice", PASSWORD, "read", subject="CN=alice")
    with pytest.raises(UserExistsError, match="user 'alice'"):
        store.add_user("alice", "other", "admin")
    with pytest.raises(UserExistsError, match="subject"):
        store.add_user("eve", "other", "admin", subject="CN=alice")
    store.add_user("bob", PASSWORD, "read")
    with pytest.raises(UserExistsError):
        store.set_subject("bob", "CN=alice")


@pytest.mark.parametrize("name", ["", " alice", "alice bob", "al\nice", "-x", "a" * 65,
                                  "caf\u00e9"])
def test_bad_user_names(store, name):
    with pytest.raises(UserStoreError):
        store.add_user(name, PASSWORD, "read")


def test_bad_role_and_password(store):
    with pytest.raises(UserStoreError, match="roles are read, control, admin"):
        store.add_user("alice", PASSWORD, "root")
    with pytest.raises(UserStoreError, match="empty"):
        store.add_user("alice", "", "read")
    with pytest.raises(UserStoreError):
        store.add_user("alice", PASSWORD, "read", subject="CN=a\nb")
    assert store.list_users() == []


def test_verify(store):
    store.add_user("alice", PASSWORD, "control")
    assert store.verify("alice", PASSWORD) == User("alice", "control")
    assert store.verify("alice", PASSWORD + "x") is None
    assert store.verify("alice", "") is None
    assert store.verify("nobody", PASSWORD) is None


def test_passwd_role_subject(store):
    store.add_user("alice", PASSWORD, "read")
    store.set_password("alice", "new password")
    assert store.verify("alice", PASSWORD) is None
    assert store.verify("alice", "new password") is not None
    store.set_role("alice", "admin")
    store.set_subject("alice", " CN=alice,O=Lab ")
    assert store.user_for_subject("CN=alice,O=Lab") == User("alice", "admin", "CN=alice,O=Lab")
    assert store.user_for_subject("CN=alice") is None
    assert store.user_for_subject(None) is None
    store.set_subject("alice", None)
    assert store.user_for_subject("CN=alice,O=Lab") is None
    for call in (lambda: store.set_password("bob", "x"), lambda: store.set_role("bob", "read"),
                 lambda: store.set_subject("bob", "CN=bob")):
        with pytest.raises(UnknownUserError):
            call()
    with pytest.raises(UserStoreError):
        store.set_role("alice", "superuser")


def test_rehash_on_login_with_new_parameters(tmp_path):
    path = tmp_path / "users.db"
    UserStore(path, params=FAST).add_user("alice", PASSWORD, "read")
    stronger = ScryptParams(n=2**9)
    store = UserStore(path, params=stronger)
    assert store.verify("alice", PASSWORD) is not None
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith(f"scrypt${2**9}$")
    assert UserStore(path, params=FAST).verify("alice", PASSWORD) is not None


def test_no_password_in_the_file(tmp_path):
    path = tmp_path / "users.db"
    store = UserStore(path, params=FAST)
    store.add_user("alice", PASSWORD, "read")
    store.set_password("alice", PASSWORD + "-second")
    store.add_user("bob", PASSWORD + "-bob", "read")
    store.remove_user("bob")
    data = b""
    for name in os.listdir(tmp_path):  # journal files too, if any are left
        with open(tmp_path / name, "rb") as f:
            data += f.read()
    for secret in (PASSWORD, PASSWORD + "-second", PASSWORD + "-bob"):
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert secret.encode(encoding) not in data
    assert b"scrypt$" in data


def test_changes_seen_by_other_store_objects(tmp_path):
    path = tmp_path / "users.db"
    server_view = UserStore(path, params=FAST)
    UserStore(path, params=FAST).add_user("alice", PASSWORD, "read")
    assert server_view.verify("alice", PASSWORD) is not None
    UserStore(path, params=FAST).remove_user("alice")
    assert server_view.verify("alice", PASSWORD) is None


def test_usable_from_threads(store):
    store.add_user("alice", PASSWORD, "read")
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.verify("alice", PASSWORD)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [User("alice", "read")] * 4


def test_not_a_user_store(tmp_path):
    path = tmp_path / "other.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(UserStoreError, match="not a katcp user store"):
        UserStore(path)
    path2 = tmp_path / "newer.db"
    with sqlite3.connect(path2) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(UserStoreError, match="version 99"):
        UserStore(path2)
