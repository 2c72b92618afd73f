"""Encode/decode speed and peak memory of the step API, per preset and resolution (``make bench``).

Runs each configuration in a fresh subprocess so that peak RSS belongs to that configuration alone. Prints a table;
``--json`` writes the rows too. The ``official`` preset (random weights, ≈ 7.5 GB of RAM) is opt-in with
``--presets official`` because a CPU needs seconds per frame for it.

    python -m evaluation.bench_codec [--presets tiny] [--sizes 320x240,640x480] [--frames 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_one(preset: str, width: int, height: int, frames: int, threads: int, device: str) -> dict:
    import numpy as np
    import torch

    from s2vc.codec import Codec
    from s2vc.model import build_model
    from s2vc.presets import get_preset

    torch.set_num_threads(threads)
    model = build_model(get_preset(preset), num_rates=1).to(device)
    codec = Codec(model, device)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    clip = [np.roll(base, 3 * i, axis=1) for i in range(frames + 2)]
    enc, dec = codec.new_state(width, height), codec.new_state(width, height)
    # warm-up: the I-frame and one P-frame
    for frame in clip[:2]:
        unit, enc, _ = codec.encode_frame(enc, frame, reconstruct=False)
        _, dec = codec.decode_frame(dec, unit)
    enc_times, dec_times, sizes = [], [], []
    for frame in clip[2:]:
        t0 = time.perf_counter()
        unit, enc, _ = codec.encode_frame(enc, frame, reconstruct=False)
        t1 = time.perf_counter()
        _, dec = codec.decode_frame(dec, unit)
        t2 = time.perf_counter()
        enc_times.append(t1 - t0)
        dec_times.append(t2 - t1)
        sizes.append(len(unit.payload))
    enc_ms, dec_ms = 1000 * float(np.median(enc_times)), 1000 * float(np.median(dec_times))
    return {
        "preset": preset, "size": f"{width}x{height}", "device": device, "threads": threads, "p_frames": frames,
        "encode_ms": enc_ms, "decode_ms": dec_ms, "encode_fps": 1000 / enc_ms, "decode_fps": 1000 / dec_ms,
        "roundtrip_ms": enc_ms + dec_ms, "roundtrip_fps": 1000 / (enc_ms + dec_ms),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,official", help="comma-separated presets (tiny, official)")
    parser.add_argument("--official-sizes", default="128x128", help="sizes for the official preset")
    parser.add_argument("--sizes", default="320x240,640x480", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=12, help="P-frames timed per configuration (after 2 warm-up frames)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", dest="json_path", help="also write the rows to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:  # child process: one configuration
        preset, size = args.one.split("@")
        w, h = (int(v) for v in size.split("x"))
        print(json.dumps(run_one(preset, w, h, args.frames, args.threads, args.device)))
        return

    rows = []
    for preset in args.presets.split(","):
        official = preset == "official"
        sizes = (args.official_sizes if official else args.sizes).split(",")
        frames = min(args.frames, 3) if official else args.frames
        for size in sizes:
            cmd = [sys.executable, "-m", "evaluation.bench_codec", "--one", f"{preset}@{size}", "--frames", str(frames),
                   "--threads", str(args.threads), "--device", args.device]
            print(f"… {preset} {size}", file=sys.stderr, flush=True)
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                raise SystemExit(f"benchmark {preset} {size} failed")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    header = f"{'preset':<9}{'size':>10}{'frames':>8}{'params M':>10}{'enc ms':>9}{'dec ms':>9}{'enc fps':>9}{'dec fps':>9}{'enc+dec fps':>13}{'peak RSS MB':>13}"
    print(f"P-frame step API, {args.device}, {args.threads} threads, median over the timed P-frames (random weights)")
    print(header)
    for r in rows:
        print(f"{r['preset']:<9}{r['size']:>10}{r['p_frames']:>8}{r['params_m']:>10.2f}{r['encode_ms']:>9.1f}{r['decode_ms']:>9.1f}"
              f"{r['encode_fps']:>9.1f}{r['decode_fps']:>9.1f}{r['roundtrip_fps']:>13.1f}{r['peak_rss_mb']:>13.0f}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
