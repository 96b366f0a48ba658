"""Optional: a real Prometheus server scrapes two exporter shards (docs' scrape config)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request

import pytest

pytest.importorskip("prometheus_client")

from katcp.exporter import Exporter, select, targets_for_ports  # noqa: E402
from katcp.tools.fleetsim import Fleet  # noqa: E402

from _exporter_helpers import run  # noqa: E402

PROMETHEUS = shutil.which("prometheus")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRAPE_CONFIG = os.path.join(ROOT, "doc", "examples", "prometheus-shards.yml")

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="no Prometheus server installed (Debian package 'prometheus')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base: str, expr: str):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def test_prometheus_scrapes_two_shards(tmp_path):
    async def main():
        fleet = Fleet(16, 3, rate=0)
        await fleet.start()
        targets = targets_for_ports("127.0.0.1", fleet.ports)
        exporters = []
        for shard in range(2):
            names = set(select([t.name for t in targets], shard, 2))
            exporter = Exporter([t for t in targets if t.name in names], ("127.0.0.1", 0),
                                process_metrics=False)
            await exporter.start()
            exporters.append(exporter)
        with open(SCRAPE_CONFIG, encoding="utf-8") as f:
            config = f.read()
        config = config.replace("15s", "1s").replace("10s", "1s")
        for shard, exporter in enumerate(exporters):
            config = config.replace(f"exporter-{shard}.example.org:9700",
                                    f"127.0.0.1:{exporter.port}")
        (tmp_path / "prometheus.yml").write_text(config)
        web = f"127.0.0.1:{_free_port()}"
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={web}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            result = None
            while loop.time() < deadline:
                try:
                    result = await asyncio.to_thread(
                        _query, f"http://{web}",
                        "count by (instance) (katcp_device_synced == 1)")
                except OSError:
                    result = None
                if result and sum(int(r["value"][1]) for r in result) == 16:
                    break
                await asyncio.sleep(0.2)
            assert result and len(result) == 2, result
            assert sum(int(r["value"][1]) for r in result) == 16
            series = await asyncio.to_thread(
                _query, f"http://{web}", "count(katcp_sensor_status{fleet=\"example\"})")
            assert int(series[0]["value"][1]) == 16 * 3
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for exporter in exporters:
                await exporter.stop()
            await fleet.stop()
    run(main(), timeout=60)
