"""Side-by-side crops: the source, S²VC and an anchor (x264) at the same size, so anyone can look before reading
numbers (``python -m s2vc_evaluation.crops``).

For each rate point the clip's first ``--frames`` frames are coded for real (S²VC bytes, frames decoded from
them); the anchor is swept over its CRF and the setting whose bytes come closest to S²VC's (without going below
90 % of them) is kept. One PNG per rate point shows frame ``--frame`` of each, cropped to ``--box`` and scaled up
``--zoom``× without smoothing, with a caption line per panel (codec, bpp, PSNR of the whole clip and of the crop).

    python -m s2vc_evaluation.crops tests/fixtures/clips/foreman_352x288.h264 --out docs/results/crops --rates 0,2 \\
        --box 96,32,160,160 --name foreman
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .anchors import encode_anchor
from .evaluate import load_frames


@dataclass
class Panel:
    label: str
    frame: np.ndarray
    bpp: float | None
    psnr_clip: float | None


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def mean_signed_error(reference: list[np.ndarray], decoded: list[np.ndarray]) -> list[float]:
    """Per RGB channel, the mean of decoded − reference over the clip (a colour cast shows here), in levels."""
    diff = np.stack(decoded).astype(np.float64) - np.stack(reference).astype(np.float64)
    return [float(v) for v in diff.reshape(-1, 3).mean(axis=0)]


def s2vc_decoded(model, frames: list[np.ndarray], rate: int, fps: float, progress=None, **codec_args) -> tuple[list[np.ndarray], int]:
    """``frames`` coded for real at ``rate`` and decoded from the bytes: (decoded frames, stream bytes).
    ``progress(n)`` is called as frames are encoded; ``codec_args`` go to :class:`~s2vc.codec.Codec`."""
    from s2vc.codec import Codec
    from s2vc.pipeline import decode_stream, encode_frames

    codec = Codec(model, **codec_args)
    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    encode_frames(codec, frames, buf, codec.sequence_params(w, h, fps, rate), rate=rate, reconstruct=False,
                  progress=progress)
    _, decoded = decode_stream(codec, buf.getvalue())
    return [f for f, _ in decoded], len(buf.getvalue())


def anchor_at_bytes(frames: list[np.ndarray], target_bytes: int, anchor: str, fps: float):
    """The anchor setting whose size is nearest ``target_bytes`` from above 90 % of it (None: no CRF gets that low)."""
    best = None
    for crf in range(20, 52):
        result = encode_anchor(frames, anchor, crf, fps=fps)
        if result.num_bytes < 0.9 * target_bytes:
            break
        if best is None or abs(result.num_bytes - target_bytes) < abs(best.num_bytes - target_bytes):
            best = result
    return best


def compose(panels: list[Panel], box: tuple[int, int, int, int], zoom: int, frame_index: int) -> "object":
    from PIL import Image, ImageDraw

    x, y, w, h = box
    caption = 30
    sheet = Image.new("RGB", (len(panels) * (w * zoom + 8) + 8, h * zoom + caption + 12), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, panel in enumerate(panels):
        crop = panel.frame[y : y + h, x : x + w]
        image = Image.fromarray(np.ascontiguousarray(crop)).resize((w * zoom, h * zoom), Image.NEAREST)
        left = 8 + i * (w * zoom + 8)
        sheet.paste(image, (left, 8))
        text = panel.label
        if panel.bpp is not None:
            text += f"  {panel.bpp:.4f} bpp"
        if panel.psnr_clip is not None:
            text += f"\nclip {panel.psnr_clip:.2f} dB, crop {psnr(panels[0].frame[y:y + h, x:x + w], crop):.2f} dB"
        elif i == 0:
            text += f"\nframe {frame_index}"
        draw.multiline_text((left, h * zoom + 10), text, fill=(235, 235, 235))
    return sheet


def make_crops(clip: Path, out: Path, *, model_name: str | None = None, rates: list[int] | None = None, frames: int = 16,
               frame_index: int = 8, box: tuple[int, int, int, int] | None = None, zoom: int = 2, anchor: str = "x264-medium",
               name: str | None = None, downscale: int = 1, log=print) -> list[dict]:
    from s2vc.checkpoint import load_model
    from s2vc.video_io import VideoReader

    model = load_model(model_name)
    source = load_frames(clip, frames, downscale)
    fps = float(VideoReader(clip).info.fps)
    height, width = source[0].shape[:2]
    frame_index = min(frame_index, len(source) - 1)
    box = box or (width // 4, height // 4, width // 2, height // 2)
    x, y, w, h = box
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise SystemExit(f"box {box} does not fit in the {width}x{height} frames")
    name = name or clip.stem
    out.mkdir(parents=True, exist_ok=True)
    pixels = width * height * len(source)
    rows = []
    for rate in rates if rates is not None else range(model.num_rates):
        decoded, num_bytes = s2vc_decoded(model, source, rate, fps)
        ours = Panel(f"s2vc rate {rate}", decoded[frame_index], 8 * num_bytes / pixels,
                     float(np.mean([psnr(a, b) for a, b in zip(source, decoded)])))
        ref = anchor_at_bytes(source, num_bytes, anchor, fps)
        panels = [Panel("source", source[frame_index], None, None), ours]
        if ref is not None:
            panels.append(Panel(f"{anchor} crf {ref.quality}", ref.decoded[frame_index], ref.bpp,
                                float(np.mean([psnr(a, b) for a, b in zip(source, ref.decoded)]))))
        path = out / f"{name}_rate{rate}.png"
        compose(panels, box, zoom, frame_index).save(path)
        row = {"clip": name, "rate": rate, "frames": len(source), "s2vc_bpp": ours.bpp, "s2vc_psnr": ours.psnr_clip,
               "s2vc_mean_signed_error_rgb": mean_signed_error(source, decoded), "anchor": anchor,
               "anchor_bpp": ref.bpp if ref else None, "anchor_psnr": panels[2].psnr_clip if ref else None, "png": path.name}
        rows.append(row)
        log(f"{path}: s2vc {ours.bpp:.4f} bpp {ours.psnr_clip:.2f} dB"
            + (f"; {anchor} {ref.bpp:.4f} bpp {panels[2].psnr_clip:.2f} dB" if ref else f"; {anchor}: no setting that small"))
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/results/crops"))
    parser.add_argument("--model", default=None, help="checkpoint folder or preset (default: the shipped model)")
    parser.add_argument("--rates", default=None, help="comma-separated rate points (default: all)")
    parser.add_argument("--frames", type=int, default=16, help="frames coded (the crop shows one of them)")
    parser.add_argument("--frame", type=int, default=8, help="the frame shown")
    parser.add_argument("--box", default=None, help="X,Y,W,H of the crop (default: the centre half)")
    parser.add_argument("--zoom", type=int, default=2)
    parser.add_argument("--anchor", default="x264-medium")
    parser.add_argument("--name", default=None, help="file name stem (default: the clip's)")
    parser.add_argument("--downscale", type=int, default=1, help="2 for 720p/1080p sources")
    args = parser.parse_args(argv)
    box = tuple(int(v) for v in args.box.split(",")) if args.box else None
    if box is not None and len(box) != 4:
        parser.error("--box takes X,Y,W,H")
    rates = [int(r) for r in args.rates.split(",")] if args.rates else None
    make_crops(args.clip, args.out, model_name=args.model, rates=rates, frames=args.frames, frame_index=args.frame,
               box=box, zoom=args.zoom, anchor=args.anchor, name=args.name, downscale=args.downscale)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
