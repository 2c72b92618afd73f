"""Rate–quality evaluation of S²VC against ffmpeg-family anchors on the same frames (``s2vc eval``).

For each clip: S²VC at every requested rate point (real bitstream bytes → bpp, kbps; frames decoded from that
bitstream), and each anchor swept to land in the same low-rate range, low-delay (one I-frame, then P only).
Writes ``points.csv`` (one row per codec × clip × point), ``bd_rate.csv`` (per metric, per clip, and the mean),
``speed.csv`` (fps per codec, this machine, this run), ``ceiling.csv`` (the model's autoencoder ceiling per clip, see
:func:`autoencoder_roundtrip`), and rate–quality plots as PNG.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from s2vc.checkpoint import load_model
from s2vc.codec import Codec, frame_to_tensor, pad_to_multiple, tensor_to_frame
from s2vc.pipeline import decode_stream, encode_frames
from s2vc.video_io import VideoReader

from .anchors import sweep_to_bpp
from .bdrate import bd_rate
from .metrics import sequence_metrics

QUALITY_METRICS = ("psnr", "psnr_yuv", "ms_ssim", "vmaf")
BD_METRICS = ("psnr", "psnr_yuv", "ms_ssim", "vmaf")


@dataclass
class EvalConfig:
    clips: list[Path]
    out: Path
    frames: int = 16
    model: str | None = None
    rates: list[int] | None = None  # default: every rate point of the model
    anchors: list[str] = field(default_factory=lambda: ["x264-medium"])
    bpp_range: tuple[float, float] = (0.005, 0.15)
    anchor_points: int = 6
    match_range: bool = True  # sweep each anchor over S²VC's own bpp span on the clip (within bpp_range)
    downscale: int = 1  # 2 for 720p/1080p sources: halves width and height (hides source artefacts)
    metrics: tuple[str, ...] = ("psnr", "psnr_yuv", "ms_ssim", "vmaf")
    device: str = "cpu"


def load_frames(path: Path, frames: int, downscale: int) -> list[np.ndarray]:
    out = list(VideoReader(path).frames(frames))
    if downscale > 1:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()
        h, w = (x.shape[2] // downscale) // 2 * 2, (x.shape[3] // downscale) // 2 * 2
        x = F.interpolate(x, size=(h, w), mode="area")
        out = [f for f in x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()]
    return out


def _metrics(reference, decoded, names, fps) -> dict[str, float]:
    names = list(names)
    if "ms_ssim" in names and min(reference[0].shape[:2]) < 161:
        names.remove("ms_ssim")  # MS-SSIM's five scales need ≥ 161 px
    values = sequence_metrics(reference, decoded, metrics=names, fps=fps)
    return values


def autoencoder_roundtrip(model, frames: list[np.ndarray], device: str = "cpu") -> list[np.ndarray]:
    """``frames`` through the model's VAE alone: encode to the latent, decode, no coding.

    Every S²VC frame is the VAE decoder's picture of an x0 the codec synthesises in that latent space, so this is
    the quality ceiling of the autoencoder the codec is built on (a rate point can exceed it only by luck): when
    an anchor beats the ceiling at some rate, no rate point of this model beats that anchor there.
    """
    import torch

    out = []
    with torch.inference_mode():
        for frame in frames:
            h, w = frame.shape[:2]
            x = pad_to_multiple(frame_to_tensor(frame, torch.device(device)))
            out.append(tensor_to_frame(model.vae.decode(model.vae.encode(x)), h, w))
    return out


def evaluate(cfg: EvalConfig, log: Callable[[str], None] = print) -> dict[str, list[dict]]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    model = load_model(cfg.model, device=cfg.device)
    rates = cfg.rates if cfg.rates is not None else list(range(model.num_rates))
    codec = Codec(model, cfg.device)
    points: list[dict] = []
    ceilings: list[dict] = []
    for clip in cfg.clips:
        frames = load_frames(clip, cfg.frames, cfg.downscale)
        h, w = frames[0].shape[:2]
        fps = float(VideoReader(clip).info.fps)
        name = clip.stem
        log(f"{name}: {len(frames)} frames {w}x{h}")
        ceiling = {"clip": name, "frames": len(frames)} | _metrics(frames, autoencoder_roundtrip(model, frames, cfg.device), cfg.metrics, fps)
        ceilings.append(ceiling)
        log("  autoencoder ceiling (VAE alone, no coding): " + ", ".join(f"{k} {v:.3f}" for k, v in ceiling.items() if k in QUALITY_METRICS))
        for rate in rates:
            buf = io.BytesIO()
            t0 = time.perf_counter()
            summary, _ = encode_frames(codec, frames, buf, codec.sequence_params(w, h, fps, rate), rate=rate, reconstruct=False)
            t1 = time.perf_counter()
            _, decoded_iter = decode_stream(codec, buf.getvalue())
            decoded = [f for f, _ in decoded_iter]
            t2 = time.perf_counter()
            row = {"codec": "s2vc", "clip": name, "point": f"rate{rate}", "frames": len(frames), "width": w, "height": h,
                   "bytes": len(buf.getvalue()), "bpp": summary.bpp, "kbps": summary.kbps,
                   "encode_fps": len(frames) / (t1 - t0), "decode_fps": len(frames) / (t2 - t1)}
            row.update(_metrics(frames, decoded, cfg.metrics, fps))
            points.append(row)
            log(f"  s2vc rate {rate}: {row['bpp']:.4f} bpp, {row.get('psnr', float('nan')):.2f} dB")
        s2vc_bpp = [p["bpp"] for p in points if p["codec"] == "s2vc" and p["clip"] == name]
        anchor_range = matched_range(s2vc_bpp, cfg.bpp_range) if cfg.match_range else cfg.bpp_range
        for anchor in cfg.anchors:
            results = sweep_to_bpp(frames, anchor, bpp_range=anchor_range, points=cfg.anchor_points, fps=fps)
            if not results:
                log(f"  {anchor}: no setting lands in {anchor_range[0]:.4f}..{anchor_range[1]:.4f} bpp")
            for res in results:
                row = {"codec": anchor, "clip": name, "point": f"{res.rc}{res.quality}", "frames": res.frames,
                       "width": w, "height": h, "bytes": res.num_bytes, "bpp": res.bpp, "kbps": res.kbps,
                       "encode_fps": res.frames / max(res.encode_seconds, 1e-9), "decode_fps": res.frames / max(res.decode_seconds, 1e-9)}
                row.update(_metrics(frames, res.decoded, cfg.metrics, fps))
                points.append(row)
                log(f"  {anchor} {row['point']}: {row['bpp']:.4f} bpp, {row.get('psnr', float('nan')):.2f} dB")
    bd_rows = bd_table(points, cfg.anchors)
    speed_rows = speed_table(points)
    write_csv(cfg.out / "points.csv", points)
    write_csv(cfg.out / "bd_rate.csv", bd_rows)
    write_csv(cfg.out / "speed.csv", speed_rows)
    write_csv(cfg.out / "ceiling.csv", ceilings)
    from .plots import plot_rate_quality

    plot_rate_quality(points, cfg.out, ceilings)
    return {"points": points, "bd_rate": bd_rows, "speed": speed_rows, "ceiling": ceilings}


def matched_range(test_bpp: list[float], limits: tuple[float, float], margin: float = 1.4) -> tuple[float, float]:
    """The anchors' bpp range for a clip: S²VC's own span widened by ``margin`` on each side, kept inside
    ``limits``, so that the anchor curves overlap the tested one and BD-rate compares like with like."""
    lo, hi = limits
    finite = [b for b in test_bpp if math.isfinite(b) and b > 0]
    if not finite:
        return limits
    new_lo, new_hi = max(lo, min(finite) / margin), min(hi, max(finite) * margin)
    return (new_lo, new_hi) if new_hi > new_lo else limits


def bd_table(points: list[dict], anchors: list[str]) -> list[dict]:
    """BD-rate of S²VC against each anchor, per metric and clip, plus the mean over clips (NaN with a reason when a
    curve has too few points or the curves do not overlap)."""
    rows = []
    clips = sorted({p["clip"] for p in points})
    for anchor in anchors:
        for metric in BD_METRICS:
            values = []
            for clip in clips:
                test = [p for p in points if p["codec"] == "s2vc" and p["clip"] == clip and _finite(p.get(metric))]
                ref = [p for p in points if p["codec"] == anchor and p["clip"] == clip and _finite(p.get(metric))]
                try:
                    value = bd_rate([p["bpp"] for p in ref], [p[metric] for p in ref], [p["bpp"] for p in test], [p[metric] for p in test])
                    note = ""
                except ValueError as exc:
                    value, note = math.nan, str(exc)
                values.append(value)
                rows.append({"anchor": anchor, "metric": metric, "clip": clip, "bd_rate_percent": value, "note": note})
            finite = [v for v in values if _finite(v)]
            rows.append({"anchor": anchor, "metric": metric, "clip": "mean", "bd_rate_percent": float(np.mean(finite)) if finite else math.nan,
                         "note": f"{len(finite)} of {len(values)} clips"})
    return rows


def speed_table(points: list[dict]) -> list[dict]:
    rows = []
    for codec in dict.fromkeys(p["codec"] for p in points):
        sel = [p for p in points if p["codec"] == codec]
        rows.append({"codec": codec, "encode_fps": float(np.median([p["encode_fps"] for p in sel])),
                     "decode_fps": float(np.median([p["decode_fps"] for p in sel])), "runs": len(sel)})
    return rows


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
