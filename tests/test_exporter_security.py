"""The exporter watching a KATCP device that serves TLS and wants a login, over real sockets.

The device's spec comes from a fleet file (``tls``, ``cafile``, ``user``, ``password_env``),
read by the exporter's own config loader, so the whole path is exercised.
"""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")

import tornado.ioloop  # noqa: E402
from manager_support import Receiver, stop_device  # noqa: E402

from katcp.exporter import Exporter  # noqa: E402
from katcp.exporter.settings import targets_from_config  # noqa: E402
from katcp.manager.config import load_toml  # noqa: E402
from katcp.security import AccessControl, ScryptParams, UserStore, server_context  # noqa: E402

from _exporter_helpers import key, run, scrape_until  # noqa: E402
from _security_pki import make_pki  # noqa: E402

SECRET = "Exp0rter-pa55-41aa"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


async def _device(pki, tmp_path) -> Receiver:
    users = UserStore(tmp_path / "users.db", params=ScryptParams(n=2**8))
    users.add_user("monitor", SECRET, "read")
    device = Receiver("127.0.0.1", 0, ssl=server_context(pki.server_cert, pki.server_key),
                      users=AccessControl(users))
    device.set_concurrency_options(thread_safe=False, handler_thread=False)
    device.set_ioloop(tornado.ioloop.IOLoop.current())
    started = device.start()
    if started is not None:
        await started
    return device


def _config(tmp_path, pki, port: int, password_env: str = "RX_PASSWORD"):
    path = tmp_path / "fleet.toml"
    path.write_text(f"""
[exporter]
strategies = [{{pattern = "*", strategy = "event"}}]

[devices.rx1]
katcp = "127.0.0.1:{port}"
tls = true
cafile = "{pki.ca_cert}"
user = "monitor"
password_env = "{password_env}"
""")
    return targets_from_config(load_toml(str(path)))


def test_exporter_watches_a_tls_device_with_login(pki, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RX_PASSWORD", SECRET)

    async def main():
        device = await _device(pki, tmp_path)
        exporter = None
        try:
            targets, _settings = _config(tmp_path, pki, device.bind_address[1])
            assert targets[0].ssl_context is not None and targets[0].username == "monitor"
            exporter = Exporter(targets, ("127.0.0.1", 0), process_metrics=False)
            await exporter.start()
            assert await exporter.until_synced(10)
            series = await scrape_until(exporter.url, lambda s: s.get(
                key("katcp_sensor_value", device="rx1", sensor="temp")) == 20.0)
            assert series[key("katcp_device_connected", device="rx1")] == 1
            assert series[key("katcp_device_synced", device="rx1")] == 1
            device.temp.set_value(42.5)
            await scrape_until(exporter.url, lambda s: s.get(
                key("katcp_sensor_value", device="rx1", sensor="temp")) == 42.5)
        finally:
            if exporter is not None:
                await exporter.stop()
            await stop_device(device)

    run(main())
    assert SECRET not in caplog.text


def test_exporter_with_a_wrong_password_reports_the_device_unsynced(pki, tmp_path,
                                                                    monkeypatch, caplog):
    monkeypatch.setenv("RX_PASSWORD", "not-the-password")

    async def main():
        device = await _device(pki, tmp_path)
        exporter = None
        try:
            targets, _settings = _config(tmp_path, pki, device.bind_address[1])
            exporter = Exporter(targets, ("127.0.0.1", 0), process_metrics=False)
            await exporter.start()
            series = await scrape_until(exporter.url, lambda s: s.get(
                key("katcp_device_connected", device="rx1")) == 1)
            assert series[key("katcp_device_synced", device="rx1")] == 0
            assert not await exporter.until_synced(0.3)
        finally:
            if exporter is not None:
                await exporter.stop()
            await stop_device(device)

    run(main())
    assert "Login as monitor" in caplog.text
    assert "not-the-password" not in caplog.text
