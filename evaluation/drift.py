"""Drift over a long sequence: does a rate point hold its quality, or do its P-frames decay on their own errors?

Codes the clip's first ``--frames`` frames for real at each rate point (one I-frame, then P-frames with the
model's own reset interval), decodes the bytes and compares the mean PSNR-RGB of the first and the last
``--window`` frames. Issue 15's bar: over 300 frames of foreman the last 50 stay within 1 dB of the first 50.

The content of the two windows differs too (foreman's last seconds are a harder pan). So the last window is also
coded as a clip of its own, from a fresh I-frame: ``fresh − last`` (``decay``) is what the long run lost on its
own errors, with the content's share taken out.

    python -m s2vc_evaluation.drift ../shared/data/clips/foreman_352x288.h264 --frames 300 --window 50 \\
        --json docs/results/drift_foreman.json

Prints one line per rate point; ``--max-drop DB`` exits 1 if any rate point loses more than that.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .crops import mean_signed_error, psnr, s2vc_decoded
from .evaluate import load_frames


@dataclass
class Drift:
    rate: int
    frames: int
    bpp: float
    psnr: float
    first: float  # mean PSNR-RGB of the first ``window`` frames (dB)
    last: float  # ... of the last ``window`` frames
    drop: float  # first − last (dB): positive when quality decays
    fresh: float  # mean PSNR-RGB of the last ``window`` frames coded as their own clip (from an I-frame)
    decay: float  # fresh − last (dB): the drop that is not the content's
    bias: list[float]  # mean signed error per RGB channel over the clip (levels)
    per_frame: list[float]


def measure(model, frames: list[np.ndarray], rate: int, window: int, fps: float = 25.0, progress=None) -> Drift:
    """Code ``frames`` at ``rate``, decode the bytes, and compare the first and last ``window`` frames' PSNR."""
    if not 1 <= window <= len(frames) // 2:
        raise ValueError(f"window must be between 1 and half the frames ({len(frames) // 2}), got {window}")
    decoded, num_bytes = s2vc_decoded(model, frames, rate, fps, progress=progress)
    h, w = frames[0].shape[:2]
    per_frame = [psnr(a, b) for a, b in zip(frames, decoded)]
    first, last = float(np.mean(per_frame[:window])), float(np.mean(per_frame[-window:]))
    tail = frames[-window:]
    fresh_decoded, _ = s2vc_decoded(model, tail, rate, fps, progress=progress)
    fresh = float(np.mean([psnr(a, b) for a, b in zip(tail, fresh_decoded)]))
    return Drift(rate=rate, frames=len(frames), bpp=8 * num_bytes / (w * h * len(frames)),
                 psnr=float(np.mean(per_frame)), first=first, last=last, drop=first - last, fresh=fresh, decay=fresh - last,
                 bias=mean_signed_error(frames, decoded), per_frame=[round(p, 3) for p in per_frame])


def main(argv: list[str] | None = None) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from s2vc.checkpoint import load_model

    parser = argparse.ArgumentParser(prog="python -m s2vc_evaluation.drift", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", type=Path, help="a video clip (mp4/h264/y4m/...)")
    parser.add_argument("--model", default=None, help="checkpoint folder or preset (default: the shipped model)")
    parser.add_argument("--rates", default=None, help="comma-separated rate points (default: all)")
    parser.add_argument("--frames", type=int, default=300, help="frames coded from the start of the clip")
    parser.add_argument("--window", type=int, default=50, help="frames averaged at each end")
    parser.add_argument("--downscale", type=int, default=1, help="2 for 720p/1080p sources")
    parser.add_argument("--max-drop", type=float, default=None, help="exit 1 if a rate point's last window is this much (dB) below its first")
    parser.add_argument("--max-decay", type=float, default=None,
                        help="exit 1 if a rate point's last window is this much (dB) below the same frames coded from a fresh I-frame")
    parser.add_argument("--json", type=Path, default=None, help="write every figure (per-frame PSNR included) here")
    args = parser.parse_args(argv)
    if args.frames < 2 or not 1 <= args.window <= args.frames // 2:
        parser.error("need --frames ≥ 2 and 1 ≤ --window ≤ frames / 2")
    if not args.clip.is_file():
        parser.error(f"no such clip: {args.clip}")
    model = load_model(args.model)
    if getattr(model, "untrained", False):
        print("warning: no trained model is installed (weights/default); these figures mean nothing", file=sys.stderr)
    rates = [int(r) for r in args.rates.split(",")] if args.rates else list(range(model.num_rates))
    frames = load_frames(args.clip, args.frames, args.downscale)
    if len(frames) < 2 * args.window:
        parser.error(f"the clip has {len(frames)} frames, fewer than two windows of {args.window}")
    rows = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        for rate in rates:
            task = bar.add_task(f"rate {rate}", total=len(frames) + args.window)
            rows.append(measure(model, frames, rate, args.window, progress=lambda n, t=task: bar.advance(t, n)))
    h, w = frames[0].shape[:2]
    print(f"{args.clip.name}, {len(frames)} frames at {w}x{h}, windows of {args.window}")
    for d in rows:
        print(f"rate {d.rate}: {d.bpp:.4f} bpp, {d.psnr:.2f} dB; first {d.first:.2f} → last {d.last:.2f} dB "
              f"(drop {d.drop:+.2f}; the last window from a fresh I-frame {d.fresh:.2f} dB, decay {d.decay:+.2f}); bias R/G/B {' / '.join(f'{b:+.1f}' for b in d.bias)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"clip": args.clip.name, "window": args.window,
                                         "rates": [asdict(d) for d in rows]}, indent=1) + "\n")
    failed = False
    if args.max_drop is not None and any(d.drop > args.max_drop for d in rows):
        print(f"drift: a rate point lost more than {args.max_drop} dB between its first and last window", file=sys.stderr)
        failed = True
    if args.max_decay is not None and any(d.decay > args.max_decay for d in rows):
        print(f"drift: a rate point's last window lies more than {args.max_decay} dB below a fresh start", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
