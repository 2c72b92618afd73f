"""The training recipe runner: stages in order, timed stops that resume, kits that carry a run to another machine,
the packed corpus a GPU slot carries, and deploy/gpu/train_slot.sh end to end on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from s2vc_training.corpus_pack import pack, unpack
from s2vc_training.data import ClipDataset, build_corpus
from s2vc_training.recipe import load_recipe, progress, run_recipe, seed_from_kit, write_kit

ROOT = Path(__file__).resolve().parents[1]
STAGE = dict(batch=1, crop=64, lr=1e-3, w_adv=0.0, log_every=1, checkpoint_every=100, num_rates=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, seed=0, names=["carphone", "astronaut"], size=64, frames_per_photo_clip=4, clips_per_photo=1, max_video_frames=8)
    return out


@pytest.fixture()
def recipe(tmp_path):
    data = {"name": "test", "preset": "tiny", "stages": [
        {"name": "vae", "stage": "vae", "steps": 2, **STAGE},
        {"name": "intra", "stage": "intra", "rate": 1, "steps": 3, **STAGE},
        {"name": "r0", "stage": "inter", "rate": 0, "init_rate_from": 1, "train_unet": False, "frames": 2, "steps": 1, **STAGE},
    ]}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(data))
    return path


def test_recipe_runs_in_order_stops_on_time_and_goes_on(tmp_path, corpus, recipe):
    spec = load_recipe(recipe)
    out = tmp_path / "runs"
    logs: list[str] = []
    run_recipe(spec, out, corpus, minutes=0.6, log=logs.append)  # a short first slot: it may or may not finish
    done_before = [row["done"] for row in progress(spec, out)]
    assert done_before == sorted(done_before, reverse=True)  # stages finish in order
    logs.clear()
    assert run_recipe(spec, out, corpus, log=logs.append)
    assert all(row["done"] for row in progress(spec, out))
    trained_again = [line.split()[1].rstrip(":") for line in logs if line.startswith("stage ")]
    assert trained_again == [row["stage"] for row, done in zip(progress(spec, out), done_before) if not done]
    longer = json.loads(json.dumps(spec))
    longer["stages"][0]["steps"] = 4  # raising a stage's steps in the recipe reopens it
    assert [row["done"] for row in progress(longer, out)] == [False, True, True]
    model_cfg = json.loads((out / "r0" / "model" / "config.json").read_text())
    assert model_cfg["trained"] == {"stage": "inter", "steps": 1}


def test_kit_carries_an_unfinished_stage_to_another_machine(tmp_path, corpus, recipe):
    spec = load_recipe(recipe)
    first = tmp_path / "first"
    run_recipe({**spec, "stages": spec["stages"][:1]}, first, corpus, log=lambda m: None)  # only the VAE here
    # the intra stage stops after one step, as a slot whose time ran out
    from s2vc_training.recipe import stage_config
    from s2vc_training.loop import batch_iterator
    from s2vc_training.trainer import TrainConfig, Trainer

    cfg = TrainConfig(**{**stage_config(spec, 1, first, "cpu"), "max_minutes": 1e-9})
    Trainer(cfg, batch_iterator(ClipDataset(corpus, frames=1, crop=64, seed=0), 1, 0)).fit()
    kit = write_kit(spec, first, tmp_path / "kit")
    record = json.loads((kit / "recipe.json").read_text())
    assert record["done"] == ["vae"] and record["state_stage"] == "intra" and record["state_step"] == 1
    assert sum(p.stat().st_size for p in kit.rglob("*") if p.is_file()) < 40 * 2**20

    second = tmp_path / "second"  # a machine with none of the first one's files
    seed_from_kit(kit, second)
    rows = {row["stage"]: row for row in progress(spec, second)}
    assert not rows["intra"]["done"]
    logs: list[str] = []
    assert run_recipe(spec, second, corpus, log=logs.append)
    assert not any(line.startswith("stage vae") for line in logs)  # done elsewhere: not trained again
    status = json.loads((second / "intra" / "status.json").read_text())
    assert status["step"] == 3 and status["finished"]


def test_corpus_pack_round_trip_under_a_budget(tmp_path, corpus):
    packed = pack(corpus, tmp_path / "c.npz", max_mb=0.3, frames=3, crop=64)
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert 0 < len(packed["clips"]) <= len(manifest["clips"])
    assert (tmp_path / "c.npz").stat().st_size <= 0.3e6
    unpack(tmp_path / "c.npz", tmp_path / "c")
    first = packed["clips"][0]
    original = np.load(corpus / first["file"])[:3]
    got = np.load(tmp_path / "c" / first["file"])
    h, w = original.shape[1:3]
    top, left = max(0, (h - 64) // 2), max(0, (w - 64) // 2)
    assert np.array_equal(got, original[:, top : top + 64, left : left + 64])
    assert len(ClipDataset(tmp_path / "c", frames=2, crop=64, seed=0)) > 0


def test_train_slot_script_on_cpu(tmp_path, corpus, recipe):
    carry = tmp_path / "carry"
    pack(corpus, carry / "corpus.npz", max_mb=5, frames=4)
    env = {**os.environ, "S2VC_DEVICE": "cpu", "S2VC_SKIP_INSTALL": "1", "S2VC_CARRY": str(carry),
           "S2VC_WORK": str(tmp_path / "work"), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(ROOT / "deploy/gpu/train_slot.sh"), str(tmp_path / "out"), "5", str(recipe)],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "recipe finished" in result.stdout
    kit = tmp_path / "out" / "kit"
    assert json.loads((kit / "recipe.json").read_text())["done"] == ["vae", "intra", "r0"]
    assert all(p.stat().st_size < 16 * 2**20 for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert (tmp_path / "out" / "runs" / "intra" / "metrics.csv").is_file()
