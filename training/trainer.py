"""Stage-wise training of one rate point, resumable, with a run folder.

Stages (the release's recipe, scaled down):

* ``vae``   — the autoencoder alone (L1 + perceptual), for presets without pretrained SD weights (tiny);
* ``intra`` — I-frames: intra codec + U-Net (``iframe`` adapter) + heads, VAE frozen; λ·R + distortion;
* ``inter`` — cascades of T frames (I, then P-frames on the running buffer, gradients through the buffers):
  inter codec + U-Net (``pframe`` adapter, TCG), intra codec and VAE frozen; λ·R + distortion + temporal;
* ``decoder`` — the VAE decoder alone, adapted to the x0 the trained codec actually synthesises: the same
  cascades, every rate point in turn (step k codes with rate k mod the number of rates), everything else frozen;
  distortion + temporal. The codec's networks do not change, so neither do its bitstreams: only the output pictures.

Distortion = L1 + w_perc·(1 − MS-SSIM) + w_adv·hinge-GAN (after ``adv_start`` steps); optionally
w_latent·‖x0 − VAE latent‖², which keeps the codec's x0 where the frozen VAE decoder expects it. The learning rate is
constant or cosine-decayed (``lr_schedule``), a pure function of the step so that resuming continues it. For the ``official``
preset only the LoRA adapters, the TCG blocks and the codec heads train (the SD base stays frozen).

Run folder: ``config.json`` (the TrainConfig), ``metrics.csv`` (one row per logged step), ``status.json`` (where the
run stands: step, elapsed time, estimated time left, last losses, last checkpoint), ``checkpoints/last.pt`` (model,
discriminator, optimisers, step, RNG states — ``resume=True`` continues from it exactly), ``state/`` (the compact
training state of :mod:`training.compact`: float16 weights + config + step, small enough for git; a run started
with ``start_step`` from it goes on at that step) and, at the end, ``model/`` in the s2vc checkpoint format.
Checkpoints are written every ``checkpoint_every`` steps and at least every ``checkpoint_minutes``; with
``max_minutes`` the run stops cleanly (checkpoint, state, model) after that much wall time, to be resumed later.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from s2vc.checkpoint import load_model, save_checkpoint
from s2vc.codec import DEFAULT_RESET_INTERVAL
from s2vc.model import S2VCModel, build_model
from s2vc.presets import get_preset

from .compact import is_compact_state, load_compact, save_compact
from .codec_forward import code_intra, code_sequence, match_x0_scale
from .losses import PatchDiscriminator, discriminator_loss, generator_adv_loss, ms_ssim_loss, temporal_loss

STAGES = ("vae", "intra", "inter", "decoder")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    out: str
    stage: str = "inter"
    preset: str = "tiny"
    init: str | None = None  # an s2vc checkpoint folder to start from (e.g. the previous stage's model/)
    init_rate_from: int | None = None  # copy this rate point's networks into ``rate`` first (warm start)
    rescale_x0: bool = False  # before training, scale the U-Net output so x0 has the VAE latent's spread (intra/inter)
    reinit_vae: bool = False  # start the VAE from random weights (vae stage; e.g. to leave a poor optimum behind)
    freeze_base: bool | None = None  # train only LoRA, TCG and heads of the U-Net (default: for the official preset)
    num_rates: int = 4
    rate: int = 0  # the rate point this run trains
    lmbda: float = 0.05  # weight of the rate (bits per pixel) against the distortion
    steps: int = 1000
    batch: int = 4
    frames: int = 3  # T of the inter cascade
    crop: int = 128
    lr: float = 2e-4
    lr_schedule: str = "constant"  # or "cosine": from lr down to lr_final_ratio·lr over the run (after a short warm-up)
    lr_final_ratio: float = 0.05
    warmup: int = 0  # steps of linear warm-up from 0 to lr
    w_perc: float = 0.5
    w_adv: float = 0.01
    w_temporal: float = 0.5
    w_latent: float = 0.0  # weight of ‖x0 − VAE latent‖² (keeps the codec's x0 inside the VAE's latent distribution)
    adv_start: int = 200
    reset_interval: int | None = None  # P-frames between context re-anchors in the cascades; None: the init model's, else 32
    log_every: int = 10
    checkpoint_every: int = 100
    checkpoint_minutes: float = 5.0  # also checkpoint when this much wall time passed since the last one
    max_minutes: float | None = None  # stop cleanly after this much wall time (a GPU slot, a session's end)
    train_unet: bool = True  # intra/inter: whether the codec U-Net trains (off: rate points share a trained U-Net)
    # intra/inter: submodules of the rate point that stay as they are, by name ("inter.feature_extractor"). A rate
    # point started with init_rate_from keeps them byte-equal to its source, so the checkpoint stores them once.
    frozen: tuple[str, ...] = ()
    start_step: int = 0  # the step a run continued from a compact state starts at (its schedule and data go on)
    rewarm: int = 0  # steps of learning-rate warm-up after ``start_step`` (a compact state keeps no optimiser moments)
    seed: int = 0
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if not 0 <= self.rate < self.num_rates:
            raise ValueError(f"rate {self.rate} outside 0..{self.num_rates - 1}")
        if self.crop % 64:
            raise ValueError(f"crop {self.crop} must be a multiple of 64")
        if self.reset_interval is not None and self.reset_interval < 1:
            raise ValueError(f"reset_interval must be at least 1, got {self.reset_interval}")
        if self.stage == "inter" and self.frames < 2:
            raise ValueError("the inter stage needs at least 2 frames per sample")
        if self.stage == "decoder" and self.w_latent > 0:
            raise ValueError("the decoder stage trains no codec network, so the latent anchor (w_latent) has nothing to act on")
        if self.stage == "decoder" and self.init_rate_from is not None:
            raise ValueError("the decoder stage keeps every rate point's networks as they are; init_rate_from would change one")
        if self.rescale_x0 and self.stage not in ("intra", "inter"):
            raise ValueError("rescale_x0 needs the intra or inter stage (it rescales the codec U-Net's output)")
        if self.frozen and self.stage not in ("intra", "inter"):
            raise ValueError("frozen names submodules of a rate point: it needs the intra or inter stage")
        if self.reinit_vae and self.stage != "vae":
            raise ValueError("reinit_vae needs the vae stage (the codec networks are trained on the VAE's latent space)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes}")
        if not 0 <= self.start_step <= self.steps:
            raise ValueError(f"start_step {self.start_step} outside 0..steps ({self.steps})")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_final_ratio <= 1.0:
            raise ValueError(f"lr_final_ratio must lie in [0, 1], got {self.lr_final_ratio}")

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based); a pure function of the step, so a resumed run
        continues the same schedule."""
        rewarm = min(1.0, (step - self.start_step + 1) / self.rewarm) if self.rewarm > 0 and step >= self.start_step else 1.0
        if self.warmup > 0 and step < self.warmup:
            return rewarm * self.lr * (step + 1) / self.warmup
        if self.lr_schedule == "constant":
            return rewarm * self.lr
        span = max(1, self.steps - self.warmup)
        progress = min(1.0, max(0, step - self.warmup) / span)
        return rewarm * self.lr * (self.lr_final_ratio + (1.0 - self.lr_final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trainable_parameters(model: S2VCModel, cfg: TrainConfig) -> list[nn.Parameter]:
    """The parameters a stage trains; everything else is frozen (requires_grad False)."""
    for p in model.parameters():
        p.requires_grad_(False)
    nets = model.rate(cfg.rate)
    if cfg.stage == "vae":
        modules: list[nn.Module] = [model.vae]
    elif cfg.stage == "decoder":
        modules = [model.vae.post_quant_conv, model.vae.decoder]
    elif cfg.stage == "intra":
        modules = [nets.intra, nets.unet]
    else:
        modules = [nets.inter, nets.unet]
    params = []
    freeze_base = cfg.freeze_base if cfg.freeze_base is not None else model.preset.name == "official"
    frozen = set()
    for part in cfg.frozen:
        try:
            frozen.update(id(p) for p in nets.get_submodule(part).parameters())
        except AttributeError:
            raise ValueError(f"frozen: the rate point has no submodule {part!r} (e.g. 'inter.feature_extractor')") from None
    for module in modules:
        for name, p in module.named_parameters():
            if id(p) in frozen:
                continue
            if freeze_base and module is nets.unet and not any(k in name for k in ("lora_", "pframe_motion_fusion", "vae_reduction", "conv_in")):
                continue  # the SD1.5 base stays frozen
            if module is nets.unet and not cfg.train_unet:
                continue
            if module is nets.unet and cfg.stage == "intra" and "lora_" in name and ".pframe." in name:
                continue
            if module is nets.unet and cfg.stage == "inter" and "lora_" in name and ".iframe." in name:
                continue
            p.requires_grad_(True)
            params.append(p)
    return params


class Trainer:
    """Trains one stage of one rate point on batches of clips (B, T, 3, H, W) in [-1, 1]."""

    def __init__(self, cfg: TrainConfig, batches: Callable[[int], Iterator[Tensor]], *, validate: Callable[[S2VCModel], dict] | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.run = Path(cfg.out)
        self.run.mkdir(parents=True, exist_ok=True)
        self.batches = batches
        self.validate_fn = validate
        self.device = torch.device(cfg.device)
        seed_everything(cfg.seed)
        if cfg.init and is_compact_state(cfg.init):  # a compact training state (training/compact.py)
            self.model, _ = load_compact(cfg.init, device=self.device)
        elif cfg.init:  # an s2vc checkpoint folder or the official release root (the user's local SD-based weights)
            self.model = load_model(cfg.init, device=self.device, rates=None if cfg.stage == "decoder" else [cfg.rate])
        else:
            self.model = build_model(get_preset(cfg.preset), num_rates=cfg.num_rates, seed=cfg.seed).to(self.device)
        if cfg.reinit_vae:
            torch.manual_seed(cfg.seed)
            fresh = type(self.model.vae)(self.model.preset.vae).to(self.device)
            self.model.vae.load_state_dict(fresh.state_dict())
            self.model.invalidate_caches()
        if cfg.init_rate_from is not None and cfg.init_rate_from != cfg.rate:
            self.model.rate(cfg.rate).load_state_dict(self.model.rate(cfg.init_rate_from).state_dict())
        if cfg.reset_interval is not None:  # recorded in the saved model, so the codec codes as the model was trained
            self.model.reset_interval = cfg.reset_interval
        self.reset_interval = self.model.reset_interval or DEFAULT_RESET_INTERVAL
        self.x0_scale_divided = None
        if cfg.rescale_x0:
            self.x0_scale_divided = match_x0_scale(self.model.rate(cfg.rate), self.model.vae, next(batches(0))[:, 0].to(self.device))
            self.model.invalidate_caches()
        self.params = trainable_parameters(self.model, cfg)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
        self.disc = PatchDiscriminator().to(self.device)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.99))
        self.step = cfg.start_step
        self.started_at_step = cfg.start_step
        (self.run / "checkpoints").mkdir(exist_ok=True)
        (self.run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")

    # ------------------------------------------------------------------ checkpoints
    @property
    def last_path(self) -> Path:
        return self.run / "checkpoints" / "last.pt"

    def save(self) -> Path:
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "disc": self.disc.state_dict(),
            "opt": self.opt.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "config": dataclasses.asdict(self.cfg),
        }
        tmp = self.last_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.last_path)
        return self.last_path

    def resume(self) -> bool:
        """Continue from checkpoints/last.pt when present. Returns whether it did."""
        if not self.last_path.is_file():
            return False
        state = torch.load(self.last_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["opt"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        self.started_at_step = self.step
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        self.model.invalidate_caches()
        return True

    @property
    def state_dir(self) -> Path:
        return self.run / "state"

    def save_state(self, finished: bool = False) -> Path:
        """The compact training state (float16 weights, config, step) under ``run/state``."""
        self.model.invalidate_caches()
        return save_compact(self.model, dataclasses.asdict(self.cfg), self.step, self.state_dir, finished=finished)

    def checkpoint(self, finished: bool = False) -> None:
        self.save()
        self.save_state(finished)
        self._last_checkpoint = time.monotonic()
        self._last_checkpoint_step = self.step

    def export(self) -> Path:
        """Write the trained model in the s2vc checkpoint format under ``run/model``."""
        self.model.eval()
        self.model.invalidate_caches()
        return save_checkpoint(self.model, self.run / "model", extra={"trained": {"stage": self.cfg.stage, "steps": self.step}})

    # ------------------------------------------------------------------ one step
    def coding_rate(self) -> int:
        """The rate point this step codes with: the configured one, or every one in turn (decoder stage)."""
        return self.step % self.model.num_rates if self.cfg.stage == "decoder" else self.cfg.rate

    def losses(self, clip: Tensor) -> dict[str, Tensor]:
        cfg, nets, vae = self.cfg, self.model.rate(self.coding_rate()), self.model.vae
        if cfg.stage == "vae":
            x = clip[:, 0]
            x_hat = vae.decode(vae.encode(x))
            dist = (x_hat - x).abs().mean() + cfg.w_perc * ms_ssim_loss(x_hat, x).mean()
            return {"loss": dist, "distortion": dist, "bpp": torch.zeros(()), "psnr": _psnr(x_hat, x), "x_hat": x_hat, "x": x}
        results = [code_intra(nets, vae, clip[:, 0])] if cfg.stage == "intra" else code_sequence(nets, vae, clip, self.reset_interval, cfg.w_latent > 0)
        frames = [clip[:, t] for t in range(len(results))]
        dist = torch.stack([(r.x_hat - x).abs().mean() + cfg.w_perc * ms_ssim_loss(r.x_hat, x).mean() for r, x in zip(results, frames)]).mean()
        bpp = torch.stack([r.bpp.mean() for r in results]).mean()
        loss = dist if cfg.stage == "decoder" else cfg.lmbda * bpp + dist
        out = {"distortion": dist, "bpp": bpp}
        if cfg.w_latent > 0:
            latent = torch.stack([r.latent_mse.mean() for r in results]).mean()
            loss = loss + cfg.w_latent * latent
            out["latent"] = latent
        if len(results) > 1:
            temporal = torch.stack([
                temporal_loss(results[t].x_hat, results[t - 1].x_hat, frames[t], frames[t - 1]).mean() for t in range(1, len(results))
            ]).mean()
            loss = loss + cfg.w_temporal * temporal
            out["temporal"] = temporal
        x_hat = torch.cat([r.x_hat for r in results])
        x = torch.cat(frames)
        out.update(loss=loss, psnr=_psnr(x_hat, x), x_hat=x_hat, x=x)
        return out

    def train_step(self, clip: Tensor) -> dict[str, float]:
        self.model.train()
        clip = clip.to(self.device)
        out = self.losses(clip)
        loss = out["loss"]
        use_adv = self.cfg.w_adv > 0 and self.step >= self.cfg.adv_start
        if use_adv:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            adv = generator_adv_loss(self.disc, out["x_hat"])
            loss = loss + self.cfg.w_adv * adv
            for p in self.disc.parameters():
                p.requires_grad_(True)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.step}: {float(loss)}")
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        metrics = {k: float(v.detach()) for k, v in out.items() if k not in ("x_hat", "x")}
        metrics["loss"] = float(loss.detach())
        metrics["lr"] = self.opt.param_groups[0]["lr"]
        if use_adv:
            d_loss = discriminator_loss(self.disc, out["x"], out["x_hat"])
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            metrics["adv"] = float(adv.detach())
            metrics["disc"] = float(d_loss.detach())
        self.step += 1
        return metrics

    # ------------------------------------------------------------------ loop
    def fit(self, progress: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """Train until ``cfg.steps`` (or ``cfg.max_minutes``); log to metrics.csv and status.json, checkpoint every
        ``checkpoint_every`` steps or ``checkpoint_minutes``, and at the end; export model/ (also on a timed stop)."""
        history = []
        start = time.monotonic()
        self._last_checkpoint, self._last_checkpoint_step = start, self.step
        self.stopped_early = False
        iterator = self.batches(self.step)
        while self.step < self.cfg.steps:
            metrics = self.train_step(next(iterator))
            history.append(metrics)
            if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                row = {"step": self.step, **metrics}
                if self.validate_fn is not None:
                    self.model.eval()
                    self.model.invalidate_caches()
                    row.update({f"val_{k}": v for k, v in self.validate_fn(self.model).items()})
                self._log(row)
                self._write_status(start, metrics)
            elapsed_min = (time.monotonic() - start) / 60
            if self.step % self.cfg.checkpoint_every == 0 or (time.monotonic() - self._last_checkpoint) / 60 >= self.cfg.checkpoint_minutes:
                self.checkpoint()
            if progress:
                progress(self.step, metrics)
            if self.cfg.max_minutes is not None and elapsed_min >= self.cfg.max_minutes and self.step < self.cfg.steps:
                self.stopped_early = True
                break
        self.checkpoint(finished=not self.stopped_early)
        self._write_status(start, history[-1] if history else {})
        self.export()
        return history

    def _write_status(self, start: float, metrics: dict[str, float]) -> None:
        """status.json: where the run stands, for a person or a script looking in (rewritten atomically)."""
        elapsed = time.monotonic() - start
        done = self.step - self.started_at_step
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        status = {
            "stage": self.cfg.stage, "rate": self.cfg.rate, "step": self.step, "steps": self.cfg.steps,
            "percent": round(100.0 * self.step / self.cfg.steps, 1), "elapsed_s": round(elapsed, 1),
            "steps_per_s": round(rate, 4) if rate else None,
            "eta_s": round((self.cfg.steps - self.step) / rate, 1) if rate else None,
            "last_checkpoint_step": getattr(self, "_last_checkpoint_step", None),
            "finished": self.step >= self.cfg.steps, "device": str(self.device),
            "metrics": {k: round(v, 6) for k, v in metrics.items()},
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = self.run / "status.json.tmp"
        tmp.write_text(json.dumps(status, indent=2) + "\n")
        os.replace(tmp, self.run / "status.json")

    def _log(self, row: dict[str, float]) -> None:
        """Append a row to metrics.csv (rewritten atomically, so columns added later, e.g. adv, get a header)."""
        path = self.run / "metrics.csv"
        rows: list[dict] = []
        if path.is_file():
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        rows.append(row)
        fields = list(dict.fromkeys(k for r in rows for k in r))
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)


def _psnr(x_hat: Tensor, x: Tensor) -> Tensor:
    mse = ((x_hat.detach().clamp(-1, 1) - x) / 2).pow(2).mean()
    return -10 * torch.log10(mse.clamp_min(1e-10))
