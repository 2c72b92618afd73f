"""Training that stops and resumes anywhere: timed stops, status.json, the compact state kept in git, and
``s2vc train --continue-from`` on another machine."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from s2vc.cli import app
from s2vc_training.compact import load_compact, read_run, save_compact
from s2vc_training.trainer import TrainConfig, Trainer, trainable_parameters

from .test_training import carphone_clip, fixed_batches


def _cfg(tmp_path, name: str, **kw) -> TrainConfig:
    base = dict(out=str(tmp_path / name), stage="intra", num_rates=2, steps=3, batch=1, frames=1, crop=64, lr=1e-3,
                w_adv=0.0, log_every=1, checkpoint_every=100, seed=4)
    return TrainConfig(**{**base, **kw})


def test_timed_stop_writes_a_compact_state_that_continues_at_its_step(tmp_path):
    clip = carphone_clip(1)
    first = Trainer(_cfg(tmp_path, "a", max_minutes=1e-9), fixed_batches(clip))
    first.fit()
    assert first.stopped_early and first.step == 1
    status = json.loads((tmp_path / "a" / "status.json").read_text())
    assert status["step"] == 1 and status["steps"] == 3 and not status["finished"] and status["last_checkpoint_step"] == 1
    state = tmp_path / "a" / "state"
    run = read_run(state)
    assert run["step"] == 1 and not run["finished"] and run["config"]["stage"] == "intra"
    assert all(p.stat().st_size < 16 * 2**20 for p in state.iterdir())  # what a GPU slot may bring back
    assert json.loads((state / "rate1.json").read_text()) == {"seeded": 4}  # untrained: kept as its seed, not as weights

    model, _ = load_compact(state)
    loaded = model.state_dict()
    for name, tensor in first.model.state_dict().items():  # float16 storage, float32 compute
        assert torch.equal(loaded[name], tensor.half().float() if tensor.is_floating_point() else tensor), name

    cfg = _cfg(tmp_path, "b", init=str(state), start_step=run["step"], rewarm=2)
    second = Trainer(cfg, fixed_batches(clip))
    assert second.step == 1 and cfg.lr_at(1) == pytest.approx(0.5e-3) and cfg.lr_at(2) == pytest.approx(1e-3)
    second.fit()
    assert second.step == 3 and not second.stopped_early
    assert read_run(tmp_path / "b" / "state")["finished"]
    assert json.loads((tmp_path / "b" / "status.json").read_text())["finished"]


def test_rate_points_with_equal_weights_are_written_once(tmp_path):
    trainer = Trainer(_cfg(tmp_path, "s", steps=1), fixed_batches(carphone_clip(1)))
    model = trainer.model
    model.rate(1).load_state_dict(model.rate(0).state_dict())
    folder = save_compact(model, {"stage": "intra"}, 0, tmp_path / "state", finished=False)
    assert (folder / "rate0.safetensors").is_file() and not (folder / "rate1.safetensors").exists()
    assert json.loads((folder / "rate1.json").read_text()) == {"same_as": 0}
    loaded, _ = load_compact(folder)
    a, b = loaded.rate(0).state_dict(), loaded.rate(1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_freeze_unet_trains_the_codec_only(tmp_path):
    trainer = Trainer(_cfg(tmp_path, "f", stage="inter", frames=2, train_unet=False), fixed_batches(carphone_clip(2)))
    trained = {id(p) for p in trainable_parameters(trainer.model, trainer.cfg)}
    unet = trainer.model.rate(0).unet
    assert trained and not any(id(p) in trained for p in unet.parameters())
    assert any(id(p) in trained for p in trainer.model.rate(0).inter.parameters())


def test_frozen_parts_of_a_derived_rate_point_stay_equal_and_are_stored_once(tmp_path):
    from s2vc.checkpoint import save_checkpoint

    frozen = ("inter.feature_extractor", "inter.recon_semantic")
    cfg = _cfg(tmp_path, "d", stage="inter", frames=2, rate=1, init_rate_from=0, train_unet=False, steps=2, frozen=frozen)
    trainer = Trainer(cfg, fixed_batches(carphone_clip(2)))
    trainer.fit()
    source, derived = trainer.model.rate(0).state_dict(), trainer.model.rate(1).state_dict()
    kept = [k for k in derived if k.startswith(frozen)]
    assert kept and all(torch.equal(derived[k], source[k]) for k in kept)
    assert any(not torch.equal(derived[k], source[k]) for k in derived if k.startswith("inter.encoder"))
    folder = save_checkpoint(trainer.model, tmp_path / "model", storage_dtype="float16")
    aliases = json.loads(__import__("safetensors").safe_open(str(next(folder.glob("*.safetensors"))), "pt").metadata()["aliases"])
    assert {k for k in aliases if ".feature_extractor." in k or ".recon_semantic." in k}
    with pytest.raises(ValueError, match="no submodule 'inter.nothing'"):
        trainable_parameters(trainer.model, _cfg(tmp_path, "e", stage="inter", frames=2, frozen=("inter.nothing",)))
    with pytest.raises(ValueError, match="intra or inter stage"):
        _cfg(tmp_path, "v", stage="vae", frozen=frozen).validate()


def test_cli_continue_from_a_finished_state_says_so(tmp_path):
    trainer = Trainer(_cfg(tmp_path, "done", steps=1), fixed_batches(carphone_clip(1)))
    trainer.fit()
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "next"), "--corpus", str(tmp_path),
                                      "--continue-from", str(tmp_path / "done" / "state")])
    assert result.exit_code == 0, result.output
    assert "finished run" in result.output


def test_cli_continue_from_a_non_state_folder_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "x"), "--corpus", str(tmp_path), "--continue-from", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a readable training state" in result.output
