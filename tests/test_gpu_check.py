"""``python -m s2vc_evaluation.gpu_check --smoke``: the GPU check's every phase on the CPU, so the command cannot rot before a
GPU runs it; and the GPU machine's install (deploy/gpu/requirements.txt) covers every package the check imports."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from s2vc_evaluation import gpu_check

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "deploy" / "gpu" / "requirements.txt"
# what the H200 image has (issue 16); their own dependencies come with them
IMAGE = ("torch", "triton", "peft", "accelerate", "onnx", "safetensors", "numpy")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    gpu_check.main(["--smoke", "--out", str(out), "--budget-s", "1200"])  # generous: the shared CPU may be loaded
    return out, json.loads((out / gpu_check.JSON_NAME).read_text()), (out / gpu_check.MD_NAME).read_text()


def test_smoke_runs_every_phase_and_writes_json_and_markdown(smoke):
    out, data, md = smoke
    assert {name: p["status"] for name, p in data["phases"].items()} == {
        "env": "done", "correctness": "done", "official": "done", "batching": "done", "memory": "done", "tiny": "done",
        "compiled": "done", "golden": "skipped"}
    for name in (gpu_check.JSON_NAME, gpu_check.MD_NAME):
        assert 0 < (out / name).stat().st_size <= gpu_check.MAX_FILE_BYTES
    assert data["env"]["torch"] and data["env"]["diffusers"] and data["env"]["constriction"]
    for heading in ("## Speed", "## Batching", "## Memory", "## Correctness", "| phase | status |"):
        assert heading in md


def test_smoke_speed_rows_time_i_and_p_frames_and_check_exact_decoding(smoke):
    _, data, md = smoke
    timed = [r for r in data["speed"] if "decode_ms" in r]
    assert {r.get("process") for r in timed} == {None, "child"}  # in-process rows and a child-process row
    for r in timed:
        assert r["decodes_identically"] is True
        assert r["i_encode_ms"] > 0 and r["i_decode_ms"] > 0 and r["encode_fps"] > 0 and r["decode_fps"] > 0
    failed = [r for r in data["speed"] if "error" in r]  # CUDA graphs on a CPU: a row that says why, not a crash
    assert failed and all("CUDA" in r["error"] for r in failed)
    assert "not run: EngineUnavailableError" in md
    assert [r["sessions"] for r in data["batching"]] == [1, 2]
    assert all(r["encode_p99_ms"] >= r["encode_p50_ms"] > 0 for r in data["batching"])


def test_smoke_memory_and_correctness(smoke):
    _, data, _ = smoke
    mem = data["memory"]
    assert mem["rate_points"] == 8
    assert mem["eight_shared_mb"] == pytest.approx(mem["vae_mb"] + mem["one_rate_point_mb"] + 7 * mem["per_extra_rate_point_mb"])
    assert mem["eight_shared_mb"] < mem["eight_unshared_mb"]
    corr = data["correctness"]
    assert "identical, all 3 frames" in corr["device encode → device decode (tiny, fp32)"]
    assert "identical" in corr["CPU encode → device decode (tiny, fp32)"]  # the device is the CPU here


def test_a_child_that_runs_past_its_timeout_is_killed_and_reported():
    started = __import__("time").monotonic()
    row = gpu_check.run_child({"preset": "tiny", "width": 64, "height": 64, "variant": "torch", "device": "cpu", "threads": 1,
                               "p_frames": 1000, "i_frames": 0}, timeout=3)
    assert "did not finish in 3 s" in row["error"]
    assert __import__("time").monotonic() - started < 30


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _requirements() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in REQUIREMENTS.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            name, version = words[0].split("==")
            assert words[1] in ("always", "if-missing", "build"), line
            rows[_norm(name)] = (version, words[1])
    return rows


def _closure(names) -> set[str]:
    """The distributions ``names`` need, transitively, as installed here (extras and markers ignored)."""
    todo, seen = [_norm(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            dep = req.split(";")[0].strip()
            for sep in "<>=!~[ (":
                dep = dep.split(sep)[0]
            todo.append(_norm(dep))
    return seen


# Run in a fresh interpreter where every installed package that is neither on the image nor carried cannot be found,
# as there; optional imports (try/except ImportError, availability probes) carry on. Code two frames, for lazy imports.
_IMAGE_RUN = """
import importlib.machinery, json, sys
BLOCKED = set(json.loads(sys.argv[1]))
_find_spec = importlib.machinery.PathFinder.find_spec
def _hidden(name, path=None, target=None):  # not found at all, so availability probes say "absent" too
    return None if name.split(".")[0] in BLOCKED else _find_spec(name, path, target)
importlib.machinery.PathFinder.find_spec = staticmethod(_hidden)
import numpy as np
import s2vc_evaluation.gpu_check, s2vc.checkpoint, s2vc.graphs
from s2vc_engines import load_engine
from s2vc.codec import Codec
from s2vc.model import build_model
from s2vc.presets import TINY
codec = Codec(load_engine("torch", build_model(TINY, num_rates=1), device="cpu"))
frames = s2vc_evaluation.gpu_check.synthetic_clip(64, 64, 2)
enc = dec = codec.new_state(64, 64)
for frame in frames:
    unit, enc, recon = codec.encode_frame(enc, frame)
    out, dec = codec.decode_frame(dec, unit)
    assert np.array_equal(out, recon)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_the_carried_wheels_cover_every_package_the_check_needs():
    """Every package gpu_check needs comes with the image (torch, triton, peft, accelerate, onnx, safetensors, numpy
    and what they depend on) or from deploy/gpu/requirements.txt; nothing too large to carry is needed."""
    reqs = _requirements()
    assert reqs["diffusers"][1] == reqs["constriction"][1] == "always"
    assert {"onnxruntime-gpu", "onnxruntime", "tensorrt", "av", "torch"}.isdisjoint(reqs), "too large to carry, or the image's own"
    allowed = _closure(IMAGE) | set(reqs) | {"s2vc"}
    owners = metadata.packages_distributions()
    blocked = sorted(m for m, dists in owners.items() if m.isidentifier() and not any(_norm(d) in allowed for d in dists))
    assert "av" in blocked and "constriction" not in blocked
    done = subprocess.run([sys.executable, "-c", _IMAGE_RUN, json.dumps(blocked)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not {"av", "onnxruntime", "tensorrt", "typer", "rich", "fastapi"} & modules


def test_the_watchdog_stops_a_phase_that_runs_past_the_budget(tmp_path):
    """A configuration that overruns is stopped in the main thread; what was measured before it stays in the report."""
    import time

    plan = gpu_check.smoke_plan("cpu", 1)
    report = gpu_check.Report(tmp_path, plan, budget_s=0.0)
    disarm = gpu_check._watchdog(0.3)
    try:
        with pytest.raises(gpu_check.BudgetExceeded):
            time.sleep(5)
    finally:
        disarm()
    report.phase("env", "done", 0.1)
    assert json.loads((tmp_path / gpu_check.JSON_NAME).read_text())["phases"]["env"]["status"] == "done"
