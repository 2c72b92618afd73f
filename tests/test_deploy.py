"""Deployment files: the compose file, Prometheus config and Grafana provisioning say what they must."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_names_services_volumes_and_the_gpu():
    compose = _compose()
    services = compose["services"]
    assert {"s2vc", "prometheus", "grafana", "dcgm-exporter"} <= set(services)
    server = services["s2vc"]
    assert server["build"]["dockerfile"] == "deploy/Dockerfile"
    devices = server["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    mounts = {v.split(":")[1] for v in server["volumes"]}
    assert {"/data", "/engines", "/models"} <= mounts
    udp = [p for p in server["ports"] if p.endswith("/udp")]
    assert udp, "WebRTC media needs UDP ports"
    low, high = server["sysctls"]["net.ipv4.ip_local_port_range"].split()
    assert udp[0].split(":")[0] == f"{low}-{high}", "ICE's ephemeral ports must be the mapped UDP range"
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert named <= set(compose["volumes"])
    assert "S2VC_API_KEYS" in server["environment"] and ":?" in server["environment"]["S2VC_API_KEYS"]


def test_mounted_files_exist():
    for service in _compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./deploy"):
                assert (ROOT / source).exists(), source


def test_prometheus_scrapes_the_server():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["s2vc"]["metrics_path"] == "/metrics"
    assert jobs["s2vc"]["static_configs"][0]["targets"] == ["s2vc:8000"]


def test_grafana_is_provisioned_with_the_dashboard():
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana/dashboards/s2vc.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {datasource["uid"]}
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("sessions", "frames", "dropped", "latency", "batch", "kbps", "errors", "gpu"):
        assert topic in titles, topic


def dashboard_metric_names() -> set[str]:
    """Every s2vc_ series a dashboard expression reads, as exported (without _bucket/_sum/_count/_total)."""
    dashboard = json.loads((DEPLOY / "grafana/dashboards/s2vc.json").read_text())
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\bs2vc_[a-z0-9_]+", target["expr"]))
    return names


def _k8s(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


def test_k8s_replicas_are_ready_checked_and_routed_by_consistent_hashing():
    docs = {(d["kind"], d["metadata"]["name"]): d for f in ("s2vc.yaml", "router.yaml", "secret.example.yaml") for d in _k8s(f)}
    sts = docs[("StatefulSet", "s2vc")]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in container["env"]}
    header = env["S2VC_ROUTER_ID_HEADER"]["value"]
    assert env["S2VC_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] in {name for kind, name in docs if kind == "Secret"}
    assert sts["spec"]["serviceName"] in {name for kind, name in docs if kind == "Service"}
    nginx = docs[("ConfigMap", "s2vc-router")]["data"]["default.conf"]
    assert "hash $s2vc_affinity consistent;" in nginx
    assert f"proxy_set_header {header} $request_id;" in nginx
    servers = re.findall(r"server (s2vc-(\d+))\.s2vc-headless:8000", nginx)
    assert [int(i) for _, i in servers] == list(range(sts["spec"]["replicas"])), "router server list must match replicas"
    assert re.search(r"\(\?:streams\|jobs\|webrtc\)/\(\?<id>\[0-9a-f\]\{32\}\)", nginx)
