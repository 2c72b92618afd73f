"""Encode/decode speed, per-network latency and peak memory of the step API, per preset, resolution and engine
(``make bench``).

Engines are compared side by side in one run: each variant is ``ENGINE[+FLAG...]`` with the flags ``fp16``,
``bf16``, ``compile``, ``cudagraphs`` (torch), ``fp16`` and ``spin`` (onnxruntime: spinning worker threads), e.g.
``torch``, ``torch+compile``, ``torch+fp16+cudagraphs``, ``onnxruntime``, ``tensorrt+fp16``. A variant that cannot
run here (no GPU, no TensorRT, a compiler failure) gets a row saying why instead of stopping the run.

Each configuration runs in a fresh subprocess so that peak memory belongs to it alone (engines that export or
build on first use get a preparation run first, so their export is not in the figure). Timed: median P-frame
encode and decode (``decode`` includes the output VAE decode), the codec's stage times, and each network alone
at batch 1 with its GFLOP, and the GFLOP of one P-frame encode + decode pair with the GFLOP/s each engine achieves
on it (``--networks``). The ``official`` preset (random weights, ≈ 7.5 GB of fp32) is opt-in.

    python -m s2vc_evaluation.bench_codec [--presets tiny] [--sizes 320x240,640x480] [--engines torch,onnxruntime]
    python -m s2vc_evaluation.bench_codec --presets official --official-sizes 854x480,1280x720,1920x1080 --device cuda \\
        --official-engines torch,torch+fp16,torch+bf16,torch+fp16+compile,torch+fp16+cudagraphs --networks
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time

# torch+compile is opt-in: on a 2-core CPU it compiles for minutes and runs no faster than eager (docs/performance.md)
DEFAULT_ENGINES = "torch,onnxruntime"
FLAGS = {"fp16": ("precision", "fp16"), "bf16": ("precision", "bf16"), "compile": ("compile", True),
         "cudagraphs": ("cuda_graphs", True), "spin": ("spinning", True)}
EXPORTING = ("onnxruntime", "tensorrt")  # engines that export/build on first use


def engine_options(variant: str, threads: int) -> tuple[str, dict]:
    """``"torch+fp16+compile"`` → ("torch", {"precision": "fp16", "compile": True})."""
    name, *flags = variant.split("+")
    options: dict = {"threads": threads} if name == "onnxruntime" else {}
    for flag in flags:
        if flag not in FLAGS:
            raise SystemExit(f"unknown engine flag {flag!r} in {variant!r}; flags: {', '.join(FLAGS)}")
        key, value = FLAGS[flag]
        options[key] = value
    return name, options


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def network_latency(engine, device: str, height: int, width: int, repeat: int = 5) -> dict[str, float]:
    """Median ms of each network alone (batch 1, padded ``height``×``width``, random inputs) through the engine."""
    import numpy as np
    import torch

    from s2vc.graphs import SPECS

    out = {}
    with torch.inference_mode():
        for name, spec in SPECS.items():
            inputs = tuple(x.to(device) for x in spec.sample_inputs(engine.preset, 1, height, width))
            times = []
            for i in range(repeat + 2):
                _sync(device)
                t0 = time.perf_counter()
                engine.run(name, 0 if spec.per_rate else None, *inputs)
                _sync(device)
                if i >= 2:
                    times.append(time.perf_counter() - t0)
            out[name] = 1000 * float(np.median(times))
    return out


def network_gflop(model, height: int, width: int) -> dict[str, float]:
    """GFLOP of each network alone (batch 1, padded ``height``×``width``), counted on the torch model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from s2vc.graphs import SPECS

    out = {}
    with torch.inference_mode():
        for name, spec in SPECS.items():
            module = spec.module(spec.owner(model, 0 if spec.per_rate else None))
            with FlopCounterMode(display=False) as counter:
                module(*spec.sample_inputs(model.preset, 1, height, width))
            out[name] = counter.get_total_flops() / 1e9
    return out


def pair_gflop(model, clip: list) -> float:
    """GFLOP of one P-frame encode + decode pair of the torch model (after an I-frame, a reset P- and a P-frame)."""
    from torch.utils.flop_counter import FlopCounterMode

    from s2vc.codec import Codec

    codec = Codec(model)
    height, width = clip[0].shape[:2]
    enc, dec = codec.new_state(width, height), codec.new_state(width, height)
    counter = FlopCounterMode(display=False)
    for i, frame in enumerate(clip[:4]):
        with counter if i == 3 else contextlib.nullcontext():
            unit, enc, _ = codec.encode_frame(enc, frame, reconstruct=False)
            _, dec = codec.decode_frame(dec, unit)
    return counter.get_total_flops() / 1e9


def run_one(preset: str, width: int, height: int, frames: int, threads: int, device: str, variant: str, networks: bool) -> dict:
    import torch

    from s2vc.model import build_model
    from s2vc.presets import get_preset

    torch.set_num_threads(threads)
    model = build_model(get_preset(preset), num_rates=1)
    return {"preset": preset} | measure(model, variant, device, width, height, frames, threads, networks=networks)


def measure(model, variant: str, device: str, width: int, height: int, frames: int, threads: int, *, networks: bool = False,
            i_frames: int = 0, verify: bool = False) -> dict:
    """Time ``model`` through the engine ``variant``: median P-frame encode and decode after three warm-up frames
    (I, reset P, P), and with ``i_frames`` also the median of that many I-frame encodes and decodes. ``verify``
    codes one more P-frame with the encoder's reconstruction and records whether the decoder reproduces it exactly.
    Shared by ``make bench`` (one configuration per process) and ``evaluation.gpu_check``."""
    import numpy as np
    import torch

    from s2vc_engines import load_engine
    from s2vc.codec import Codec, padded_size

    name, options = engine_options(variant, threads)
    engine = load_engine(name, model, device=device, **options)
    codec = Codec(engine, device)
    stages: dict[str, float] = {}
    codec.on_stage = lambda stage, seconds, batch: stages.__setitem__(stage, stages.get(stage, 0.0) + seconds)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    clip = [np.roll(base, 3 * i, axis=1) for i in range(frames + 4)]
    enc, dec = codec.new_state(width, height), codec.new_state(width, height)
    warmup = time.perf_counter()
    for frame in clip[:3]:  # warm-up: the I-frame, a reset P-frame, a P-frame (every network, compiled/exported)
        unit, enc, _ = codec.encode_frame(enc, frame, reconstruct=False)
        _, dec = codec.decode_frame(dec, unit)
    _sync(device)
    row = {"size": f"{width}x{height}", "device": device, "threads": threads, "engine": variant,
           "p_frames": frames, "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "warmup_s": time.perf_counter() - warmup}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    i_enc, i_dec = [], []
    for frame in clip[:i_frames]:  # I-frames, each on fresh states (the networks are warm)
        _sync(device)
        t0 = time.perf_counter()
        unit, _, _ = codec.encode_frame(codec.new_state(width, height), frame, reconstruct=False)
        _sync(device)
        t1 = time.perf_counter()
        codec.decode_frame(codec.new_state(width, height), unit)
        _sync(device)
        i_enc.append(t1 - t0)
        i_dec.append(time.perf_counter() - t1)
    if i_frames:
        ms_enc, ms_dec = 1000 * float(np.median(i_enc)), 1000 * float(np.median(i_dec))
        row |= {"i_frames": i_frames, "i_encode_ms": ms_enc, "i_decode_ms": ms_dec, "i_encode_fps": 1000 / ms_enc, "i_decode_fps": 1000 / ms_dec}
    stages.clear()
    enc_times, dec_times = [], []
    for frame in clip[3:3 + frames]:
        _sync(device)
        t0 = time.perf_counter()
        unit, enc, _ = codec.encode_frame(enc, frame, reconstruct=False)
        _sync(device)
        t1 = time.perf_counter()
        _, dec = codec.decode_frame(dec, unit)
        _sync(device)
        enc_times.append(t1 - t0)
        dec_times.append(time.perf_counter() - t1)
    if not frames:
        return row
    enc_ms, dec_ms = 1000 * float(np.median(enc_times)), 1000 * float(np.median(dec_times))
    row |= {
        "encode_ms": enc_ms, "decode_ms": dec_ms, "encode_fps": 1000 / enc_ms, "decode_fps": 1000 / dec_ms,
        "roundtrip_ms": enc_ms + dec_ms, "roundtrip_fps": 1000 / (enc_ms + dec_ms),
        "stage_ms": {k: 1000 * v / frames for k, v in stages.items()},  # per encode+decode pair
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
    }
    if verify:  # the encoder's reconstruction of one more P-frame against the decoder's output
        unit, enc, recon = codec.encode_frame(enc, clip[3 + frames])
        decoded, dec = codec.decode_frame(dec, unit)
        row["decodes_identically"] = bool(np.array_equal(recon, decoded))
    if networks:
        row["network_ms"] = network_latency(engine, device, *padded_size(height, width))
        row["network_gflop"] = network_gflop(model, *padded_size(height, width))
        row["pair_gflop"] = pair_gflop(model, clip)
    return row


def _child(args, preset: str, size: str, variant: str, frames: int) -> dict:
    cmd = [sys.executable, "-m", "s2vc_evaluation.bench_codec", "--one", f"{preset}@{size}@{variant}", "--frames", str(frames),
           "--threads", str(args.threads), "--device", args.device] + (["--networks"] if args.networks else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"preset": preset, "size": size, "engine": variant, "error": reason[:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_tables(rows: list[dict], device: str, threads: int) -> None:
    print(f"P-frame step API, {device}, {threads} threads, median over the timed P-frames (random weights)")
    print(f"{'preset':<9}{'size':>10}{'engine':>24}{'enc ms':>9}{'dec ms':>9}{'enc fps':>9}{'dec fps':>9}{'enc+dec ms':>12}"
          f"{'enc+dec fps':>13}{'peak RSS MB':>13}{'peak GPU MB':>13}")
    for r in rows:
        head = f"{r['preset']:<9}{r['size']:>10}{r['engine']:>24}"
        if "error" in r:
            print(f"{head}   not run: {r['error']}")
            continue
        gpu = f"{r['peak_gpu_mb']:>13.0f}" if r.get("peak_gpu_mb") is not None else f"{'-':>13}"
        print(f"{head}{r['encode_ms']:>9.1f}{r['decode_ms']:>9.1f}{r['encode_fps']:>9.1f}{r['decode_fps']:>9.1f}"
              f"{r['roundtrip_ms']:>12.1f}{r['roundtrip_fps']:>13.1f}{r['peak_rss_mb']:>13.0f}{gpu}")
    timed = [r for r in rows if "network_ms" in r]
    if timed:
        sizes = list(dict.fromkeys(r["size"] for r in timed))
        flops = {size: next(r for r in timed if r["size"] == size) for size in sizes}  # the same networks in every engine
        print("\nms per network call, batch 1, and its GFLOP (stage ms per encode+decode pair below)")
        print(f"{'network':<24}" + "".join(f"{r['engine'][:15] + ' ' + r['size']:>26}" for r in timed)
              + "".join(f"{'GFLOP ' + size:>16}" for size in sizes))
        for name in timed[0]["network_ms"]:
            print(f"{name:<24}" + "".join(f"{r['network_ms'][name]:>26.2f}" for r in timed)
                  + "".join(f"{flops[size]['network_gflop'][name]:>16.3f}" for size in sizes))
        for stage in sorted({s for r in timed for s in r["stage_ms"]}):
            print(f"{'stage ' + stage:<24}" + "".join(f"{r['stage_ms'].get(stage, 0.0):>26.1f}" for r in timed))
        print(f"{'GFLOP per pair':<24}" + "".join(f"{r['pair_gflop']:>26.2f}" for r in timed))
        print(f"{'GFLOP/s achieved':<24}" + "".join(f"{r['pair_gflop'] / r['roundtrip_ms'] * 1000:>26.1f}" for r in timed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,official", help="comma-separated presets (tiny, official)")
    parser.add_argument("--official-sizes", default="128x128", help="sizes for the official preset")
    parser.add_argument("--sizes", default="320x240,640x480", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--engines", default=DEFAULT_ENGINES, help="comma-separated engine variants, ENGINE[+FLAG...]")
    parser.add_argument("--official-engines", default="torch", help="engine variants for the official preset (exporting it takes ~20 GB of RAM)")
    parser.add_argument("--frames", type=int, default=12, help="P-frames timed per configuration (after 3 warm-up frames)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--networks", action="store_true", help="also time each network alone")
    parser.add_argument("--json", dest="json_path", help="also write the rows to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:  # child process: one configuration
        preset, size, variant = args.one.split("@")
        w, h = (int(v) for v in size.split("x"))
        print(json.dumps(run_one(preset, w, h, args.frames, args.threads, args.device, variant, args.networks)))
        return

    rows = []
    for preset in args.presets.split(","):
        official = preset == "official"
        sizes = (args.official_sizes if official else args.sizes).split(",")
        frames = min(args.frames, 3) if official and args.device == "cpu" else args.frames
        for size in sizes:
            for variant in (args.official_engines if official else args.engines).split(","):
                print(f"… {preset} {size} {variant}", file=sys.stderr, flush=True)
                prepared = {}
                if variant.split("+")[0] in EXPORTING:  # export/build once, outside the measured process
                    prepared = _child(args, preset, size, variant, 0)
                rows.append(prepared if "error" in prepared else _child(args, preset, size, variant, frames))
    print_tables(rows, args.device, args.threads)
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
