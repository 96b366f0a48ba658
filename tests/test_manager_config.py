"""The fleet TOML file: addresses, device entries, errors that name the device."""

import ssl

import pytest

from katcp.manager.config import (
    DeviceSpec,
    load_devices,
    load_manager_config,
    load_toml,
    manager_config_from_dict,
    parse_address,
)

MINIMAL = """
[manager]
listen = "127.0.0.1:7147"

[devices.rx1]
katcp = "127.0.0.1:7150"

[devices.node1]
ncp = "127.0.0.1:9999"
"""


@pytest.mark.parametrize(
    "text, default, expected",
    [
        ("host:7147", None, ("host", 7147)),
        ("[::1]:7147", None, ("::1", 7147)),
        (":7147", None, ("", 7147)),
        ("10.0.0.1", 5000, ("10.0.0.1", 5000)),
        ("[::1]", 5000, ("::1", 5000)),
        (" host:1 ", None, ("host", 1)),
    ],
)
def test_parse_address(text, default, expected):
    assert parse_address(text, default) == expected


@pytest.mark.parametrize(
    "text", ["host", "host:", "host:abc", "host:70000", "::1:7147", "[::1:7147", "[::1]x7"]
)
def test_parse_address_rejects(text):
    with pytest.raises(ValueError, match="bad address"):
        parse_address(text)


def test_minimal_config(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text(MINIMAL)
    config = load_manager_config(str(path))
    assert config.listen == ("127.0.0.1", 7147)
    assert config.users is None and config.tls_cert is None
    assert config.server_ssl_context() is None
    assert list(config.devices) == ["rx1", "node1"]
    assert config.devices["rx1"] == DeviceSpec("rx1", "katcp", "127.0.0.1", 7150)
    assert config.devices["node1"].kind == "ncp"
    assert config.devices["node1"].client_ssl_context() is None


def test_full_device_entry(monkeypatch):
    monkeypatch.setenv("NODE_PW", "s3cret")
    devices = load_devices({
        "devices": {
            "node-1": {
                "ncp": "[::1]:9999",
                "tls": True,
                "insecure": True,
                "user": "op",
                "password_env": "NODE_PW",
                "sensors": "gps* stat*",
                "strategy": "event-rate 1 10",
                "fields": ["DSPC.GPS", "NODE.STAT"],
            }
        }
    })
    spec = devices["node-1"]
    assert (spec.host, spec.port, spec.username, spec.password) == ("::1", 9999, "op", "s3cret")
    assert spec.sensors == ("gps*", "stat*")
    assert spec.strategy == ("event-rate", "1", "10")
    assert spec.fields == ("DSPC.GPS", "NODE.STAT")
    assert "s3cret" not in repr(spec)
    context = spec.client_ssl_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    "name, entry, message",
    [
        ("rx_1", {"katcp": "h:1"}, "rx_1"),
        ("rx.1", {"katcp": "h:1"}, "rx.1"),
        ("1rx", {"katcp": "h:1"}, "1rx"),
        ("rx1", {}, "exactly one of"),
        ("rx1", {"katcp": "h:1", "ncp": "h:2"}, "exactly one of"),
        ("rx1", {"katcp": "h"}, "no port"),
        ("rx1", {"katcp": ":1"}, "no host"),
        ("rx1", {"katcp": "h:1", "strategy": "sometimes"}, "unknown strategy"),
        ("rx1", {"katcp": "h:1", "sensors": [1]}, "'sensors'"),
        ("rx1", {"katcp": "h:1", "tls": "yes"}, "'tls'"),
        ("rx1", {"katcp": "h:1", "password_env": "KATCP_SURELY_UNSET_VAR"}, "not set"),
        ("rx1", {"katcp": "h:1", "password": "a", "password_env": "B"}, "not both"),
        ("rx1", {"katcp": "h:1", "fields": ["DSPC.GPS"]}, "NCP nodes only"),
        ("n1", {"ncp": "h:1", "fields": ["GPS"]}, "PACKETTYPE.FIELD"),
        ("rx1", "h:1", "expected a table"),
    ],
)
def test_bad_device_entries_name_the_device(name, entry, message):
    with pytest.raises(ValueError, match=message) as info:
        load_devices({"devices": {name: entry}})
    assert repr(name) in str(info.value)


def test_secret_not_in_error(monkeypatch):
    with pytest.raises(ValueError) as info:
        load_devices({"devices": {"rx1": {"katcp": "h:1", "password": "hunter2",
                                           "strategy": "bogus"}}})
    assert "hunter2" not in str(info.value)


def test_unknown_device_key_is_a_warning(caplog):
    devices = load_devices({"devices": {"rx1": {"katcp": "h:1", "labels": {"site": "x"}}}})
    assert "rx1" in devices
    assert "labels" in caplog.text


def test_manager_section_errors(tmp_path):
    with pytest.raises(ValueError, match="listen"):
        manager_config_from_dict({"manager": {"listen": "nowhere"}})
    with pytest.raises(ValueError, match="tls_key"):
        manager_config_from_dict({"manager": {"tls_key": "k.pem"}})
    with pytest.raises(ValueError, match="'users' must be a string"):
        manager_config_from_dict({"manager": {"users": 3}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[manager\n")
    with pytest.raises(ValueError, match="bad.toml"):
        load_toml(str(bad))


def test_server_tls_context(cert_files):
    cert, key = cert_files
    config = manager_config_from_dict(
        {"manager": {"tls_cert": cert, "tls_key": key, "tls_client_ca": cert}}
    )
    context = config.server_ssl_context()
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
