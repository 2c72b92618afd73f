"""Debian's Prometheus, run for real with deploy/prometheus/prometheus.yml pointed at a test server on loopback."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from s2vc_server.launcher import free_port

from .test_server_common import KEY, server_fixture

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "prometheus.yml"

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="needs Debian's prometheus package (apt-get install prometheus; .ci/run installs it)",
)

server = server_fixture("prometheus", api_keys=KEY)


def test_promtool_accepts_the_config():
    result = subprocess.run(["promtool", "check", "config", str(CONFIG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _loopback_config(server_port: int) -> dict:
    """The shipped config with the s2vc target on loopback, 1 s scrapes, and only the s2vc job (no other host)."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "s2vc")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{server_port}"]}]
    config["scrape_configs"] = [job]
    return config


def test_prometheus_scrapes_the_s2vc_series(server, tmp_path):
    port = int(server.url.rsplit(":", 1)[1])
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(_loopback_config(port)))
    web = free_port()
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config_path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        api = f"http://127.0.0.1:{web}/api/v1/query"
        deadline, result = time.monotonic() + 60, []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            try:
                result = httpx.get(api, params={"query": 'up{job="s2vc"} == 1 and on() s2vc_engine_ready == 1'}).json()["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                result = []
        assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
        names = httpx.get(f"http://127.0.0.1:{web}/api/v1/label/__name__/values").json()["data"]
        s2vc = {n for n in names if n.startswith("s2vc_")}
        assert {"s2vc_frames_total", "s2vc_stage_duration_seconds_bucket", "s2vc_sessions_active", "s2vc_batch_size_bucket"} <= s2vc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
