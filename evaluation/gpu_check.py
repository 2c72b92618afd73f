"""One prepared command for a GPU machine: speed, batching, memory and correctness of both presets, in ≤ 9 minutes.

    python -m s2vc_evaluation.gpu_check --out DIR [--budget-s 450] [--only PHASE,...] [--skip PHASE,...]
    python -m s2vc_evaluation.gpu_check --out DIR --smoke     # CPU, tiny sizes, seconds (tests/test_gpu_check.py)
    make gpu-check                                         # deploy/gpu/gpu_check.sh: install from carried wheels, run

Phases, in the order they run (each one is skipped with a reason when the time budget is spent):

``env``             torch, CUDA and GPU versions.
``correctness``     tiny preset: a stream encoded on the device decodes on the device to the encoder's
                    reconstruction exactly; a CPU-encoded stream fed to the device decoder, and what happens
                    (identical frames, or the decoder-state check's StateMismatchError).
``official``        official preset, random weights: I- and P-frame encode and decode at 480p, 720p and 1080p,
                    fp32 eager (the baseline), fp16 and bf16 eager; peak GPU memory; × fp32 eager.
``batching``        official preset at 480p (fp16 eager): 1, 4 and 8 sessions coded per scheduler tick, frame
                    latency p50/p99 of encode and decode ticks.
``memory``          resident GPU memory of all 8 rate points holding the frozen SD1.5 base once.
``tiny``            tiny preset at 320×240 and 720p: fp32, fp16, bf16 eager and CUDA graphs.
``compiled``        torch.compile and CUDA graphs (fp16 and bf16), each configuration in a child process with
                    a timeout, 1080p first; what does not fit the budget is listed as not run.
``golden``          the official preset with the golden weights (s2vc.checkpoint.rule_release_model) on CUDA
                    fp32 against its CPU run and the official golden vectors (tests/fixtures/official_golden):
                    are the units byte-identical, does a CPU-encoded stream decode on the GPU.

``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` are rewritten after every configuration, so a run cut short
still leaves its figures. The markdown tables paste into docs/performance.md. Speed rows reuse
:func:`evaluation.bench_codec.measure` (the same loop as ``make bench``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from s2vc_evaluation.bench_codec import _sync, measure

PHASES = ("env", "correctness", "official", "batching", "memory", "tiny", "compiled", "golden")
MAX_FILE_BYTES = 16 * 2**20
JSON_NAME, MD_NAME = "gpu_check.json", "gpu_check.md"
ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "fixtures" / "official_golden"


@dataclass
class Plan:
    """What one run measures; :func:`full_plan` on a GPU, :func:`smoke_plan` on a CPU in seconds."""

    device: str
    official_preset: str  # the smoke run lets the tiny preset stand in for the 7 GB official one
    official_sizes: list[tuple[int, int]]
    eager: list[str]
    batch_size: tuple[int, int]
    batch_engine: str
    sessions: list[int]
    ticks: int
    tiny_sizes: list[tuple[int, int]]
    tiny_variants: list[str]
    compiled: list[tuple[str, tuple[int, int], str]]  # (preset, size, variant), in priority order
    correctness_size: tuple[int, int]
    correctness_frames: int
    correctness_variants: list[str]  # engine variants whose own streams and the fp32 stream are decoded too
    p_frames: dict[str, int]
    i_frames: dict[str, int]
    child_timeout_s: float
    golden: bool
    min_child_s: float = 60.0  # a child is not started with less time left than this
    threads: int = 2
    notes: list[str] = field(default_factory=list)


def full_plan(device: str, threads: int) -> Plan:
    sizes = [(854, 480), (1280, 720), (1920, 1080)]
    compiled = [("official", (1920, 1080), "torch+fp16+cudagraphs"), ("tiny", (320, 240), "torch+fp16+cudagraphs"),
                ("official", (1920, 1080), "torch+bf16+cudagraphs"),
                ("official", (1920, 1080), "torch+fp16+compile"), ("official", (854, 480), "torch+fp16+cudagraphs"),
                ("official", (1280, 720), "torch+fp16+cudagraphs"), ("official", (1920, 1080), "torch+bf16+compile"),
                ("official", (854, 480), "torch+bf16+cudagraphs"), ("official", (1280, 720), "torch+bf16+cudagraphs"),
                ("official", (854, 480), "torch+fp16+compile"), ("official", (1280, 720), "torch+fp16+compile"),
                ("tiny", (1280, 720), "torch+fp16+compile")]
    return Plan(device=device, official_preset="official", official_sizes=sizes, eager=["torch", "torch+fp16", "torch+bf16"],
                batch_size=(854, 480), batch_engine="torch+fp16", sessions=[1, 4, 8], ticks=8,
                tiny_sizes=[(320, 240), (1280, 720)], tiny_variants=["torch", "torch+fp16", "torch+bf16"],
                compiled=compiled, correctness_size=(320, 240), correctness_frames=5,
                correctness_variants=["torch+fp16", "torch+bf16"], p_frames={"official": 5, "tiny": 10},
                i_frames={"official": 2, "tiny": 3}, child_timeout_s=300.0, golden=True, threads=threads)


def smoke_plan(device: str, threads: int) -> Plan:
    return Plan(device=device, official_preset="tiny", official_sizes=[(64, 64)], eager=["torch", "torch+fp16+cudagraphs"],
                batch_size=(64, 64), batch_engine="torch", sessions=[1, 2], ticks=1, tiny_sizes=[(64, 48)],
                tiny_variants=["torch"], compiled=[("tiny", (64, 64), "torch")],
                correctness_size=(64, 48), correctness_frames=3, correctness_variants=[], p_frames={"official": 1, "tiny": 1}, i_frames={"official": 1, "tiny": 1},
                child_timeout_s=120.0, min_child_s=10.0, golden=False, threads=threads,
                notes=["smoke run: the tiny preset stands in for the official one, sizes are tiny; the figures mean nothing"])


# ----------------------------------------------------------------------------------------------------- report
class Report:
    """The run's results; written as JSON and markdown after every change."""

    def __init__(self, out: Path, plan: Plan, budget_s: float) -> None:
        self.out, self.plan, self.budget_s = out, plan, budget_s
        self.started = time.monotonic()
        self.data: dict = {"meta": {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "budget_s": budget_s,
                                    "device": plan.device, "notes": plan.notes},
                           "phases": {}, "speed": [], "batching": [], "memory": {}, "correctness": {}, "golden": {}}

    def remaining(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def phase(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        self.data["phases"][name] = {"status": status, "seconds": round(seconds, 1), **({"detail": detail} if detail else {})}
        self.write()

    def add_speed(self, row: dict) -> None:
        self.data["speed"].append(row)
        self.write()

    def write(self) -> None:
        self.data["meta"]["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.data, indent=1, default=str)
        _write_capped(self.out / JSON_NAME, text)
        _write_capped(self.out / MD_NAME, markdown(self.data))


def _write_capped(path: Path, text: str) -> None:
    data = text.encode()
    if len(data) > MAX_FILE_BYTES:
        data = data[: MAX_FILE_BYTES - 64] + b"\n... (truncated at 16 MiB)\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _ms(v) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) else "–"


def _fps(v) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "–"


def markdown(data: dict) -> str:
    meta = data["meta"]
    env = data.get("env", {})
    lines = ["# GPU check", "", f"{meta['started_utc']}, {env.get('gpu', meta['device'])}, torch {env.get('torch', '?')}"
             f" (CUDA {env.get('cuda', '–')}), {meta.get('elapsed_s', 0):.0f} s of a {meta['budget_s']:.0f} s budget. Random weights."]
    lines += [f"_{note}_" for note in meta.get("notes", [])]
    lines += ["", "| phase | status | s | detail |", "|---|---|---|---|"]
    for name, p in data["phases"].items():
        lines.append(f"| {name} | {p['status']} | {p['seconds']:.0f} | {p.get('detail', '')} |")

    rows = data["speed"]
    if rows:
        base = {(r["preset"], r["size"]): r for r in rows if r.get("engine") == "torch" and "decode_ms" in r}
        lines += ["", "## Speed (batch 1, median; decode includes the output VAE decode)", "",
                  "| preset | size | engine | I enc ms | I dec ms (fps) | P enc ms (fps) | P dec ms (fps) | P enc+dec ms | peak GPU MB "
                  "| × fp32 P dec | × fp32 P enc+dec | warm-up s | decodes exactly |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            head = f"| {r.get('preset')} | {r.get('size')} | {r.get('engine')} |"
            if "error" in r or "decode_ms" not in r:
                lines.append(f"{head} not run: {r.get('error', 'no timed frames')} |" + " |" * 9)
                continue
            b = base.get((r["preset"], r["size"]))
            ratio_dec = f"{b['decode_ms'] / r['decode_ms']:.2f}×" if b else "–"
            ratio_rt = f"{b['roundtrip_ms'] / r['roundtrip_ms']:.2f}×" if b else "–"
            lines.append(f"{head} {_ms(r.get('i_encode_ms'))} | {_ms(r.get('i_decode_ms'))} ({_fps(r.get('i_decode_fps'))}) | "
                         f"{_ms(r['encode_ms'])} ({_fps(r['encode_fps'])}) | {_ms(r['decode_ms'])} ({_fps(r['decode_fps'])}) | "
                         f"{_ms(r['roundtrip_ms'])} | {_ms(r.get('peak_gpu_mb'))} | {ratio_dec} | {ratio_rt} | "
                         f"{_ms(r.get('warmup_s'))} | {r.get('decodes_identically', '–')} |")

    if data["batching"]:
        lines += ["", "## Batching (sessions coded together per scheduler tick)", "",
                  "| preset | size | engine | sessions | encode tick p50 / p99 ms | decode tick p50 / p99 ms | frames/s encode | frames/s decode | peak GPU MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in data["batching"]:
            if "error" in r:
                lines.append(f"| {r.get('preset')} | {r.get('size')} | {r.get('engine')} | {r.get('sessions')} | not run: {r['error']} | | | | |")
                continue
            lines.append(f"| {r['preset']} | {r['size']} | {r['engine']} | {r['sessions']} | {_ms(r['encode_p50_ms'])} / {_ms(r['encode_p99_ms'])} | "
                         f"{_ms(r['decode_p50_ms'])} / {_ms(r['decode_p99_ms'])} | {_fps(r['encode_fps'])} | {_fps(r['decode_fps'])} | {_ms(r.get('peak_gpu_mb'))} |")

    mem = data["memory"]
    if mem and "error" not in mem:
        n = mem.get("rate_points", 8)
        lines += ["", f"## Memory: {n} rate points resident ({mem.get('preset')} preset, float32)", "", "| what | MB |", "|---|---|"]
        labels = {"vae_mb": "VAE", "one_rate_point_mb": "one rate point (intra + inter + codec U-Net)",
                  "sd15_base_mb": "of which the frozen SD1.5 base", "per_extra_rate_point_mb": "each further rate point, base shared",
                  "eight_shared_mb": f"VAE + {n} rate points, base held once", "eight_unshared_mb": f"VAE + {n} rate points, nothing shared",
                  "measured_allocated_mb": f"VAE + {n} rate points, base held once: allocated on the device"}
        for key, label in labels.items():
            if key in mem:
                lines.append(f"| {label} | {mem[key]:.0f} |")
    elif mem:
        lines += ["", f"## Memory: not run: {mem['error']}"]

    corr = data["correctness"]
    if corr:
        lines += ["", "## Correctness", ""]
        for key, value in corr.items():
            lines.append(f"- **{key}**: {value}")
    gold = data["golden"]
    if gold:
        lines += ["", "## Official golden weights on the device", ""]
        for key, value in gold.items():
            lines.append(f"- **{key}**: {value}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------- helpers
def _torch():
    import torch

    return torch


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def free_memory(device: str) -> None:
    gc.collect()
    torch = _torch()
    if is_cuda(device):
        torch.cuda.empty_cache()


def build_on(preset_name: str, device: str, num_rates: int = 1, seed: int = 0):
    """A random-weight model built directly on ``device`` (no 7 GB detour through the CPU for the official one)."""
    torch = _torch()
    from s2vc.model import build_model
    from s2vc.presets import get_preset

    try:
        with torch.device(device):
            model = build_model(get_preset(preset_name), num_rates=num_rates, seed=seed)
    except Exception:  # noqa: BLE001 - a module that cannot initialise on the device: build on the CPU and move
        model = build_model(get_preset(preset_name), num_rates=num_rates, seed=seed)
    return model.to(device).eval()


def synthetic_clip(width: int, height: int, frames: int, seed: int = 0) -> list:
    """Smooth moving frames: a gradient with a bright square that moves, the same on every machine."""
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for i in range(frames):
        r = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
        g = (yy * 255 // max(height - 1, 1)).astype(np.uint8)
        b = np.full((height, width), 64 + 8 * (seed % 8), np.uint8)
        frame = np.stack([r, g, b], axis=-1)
        s = max(4, min(width, height) // 4)
        x0, y0 = (3 * i) % max(width - s, 1), (2 * i) % max(height - s, 1)
        frame[y0:y0 + s, x0:x0 + s] = (240, 200, 40)
        out.append(np.roll(frame, seed, axis=1))
    return out


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _max_level_diff(a, b) -> int:
    import numpy as np

    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# ----------------------------------------------------------------------------------------------------- phases
def phase_env(report: Report) -> None:
    torch = _torch()
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads(), "platform": platform.platform()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env |= {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1), "capability": f"{props.major}.{props.minor}",
                "cudnn": torch.backends.cudnn.version(), "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark}
    for module in ("diffusers", "peft", "accelerate", "constriction", "triton", "safetensors", "numpy"):
        try:
            from importlib.metadata import version

            env[module] = version(module)
        except Exception:
            env[module] = None
    report.data["env"] = env


def _encode_all(codec, frames) -> tuple[list, list]:
    state = codec.new_state(frames[0].shape[1], frames[0].shape[0])
    units, recons = [], []
    for frame in frames:
        unit, state, recon = codec.encode_frame(state, frame)
        units.append(unit)
        recons.append(recon)
    return units, recons


def _decode_all(codec, units, width: int, height: int) -> tuple[list, str | None]:
    """Decode units in order; stops at the first error and returns (frames so far, 'ErrorType at frame k: msg')."""
    from s2vc.errors import S2VCError

    state = codec.new_state(width, height)
    frames = []
    for k, unit in enumerate(units):
        try:
            frame, state = codec.decode_frame(state, unit)
        except S2VCError as exc:
            return frames, f"{type(exc).__name__} at frame {k}: {exc}"
        frames.append(frame)
    return frames, None


def _cross_outcome(label: str, recons: list, decoded: list, error: str | None) -> str:
    import numpy as np

    same = [bool(np.array_equal(a, b)) for a, b in zip(recons, decoded)]
    diffs = [_max_level_diff(a, b) for a, b in zip(recons, decoded)]
    if error is None and all(same) and len(decoded) == len(recons):
        return f"{label}: identical, all {len(recons)} frames"
    told = f"{len(decoded)} of {len(recons)} frames decoded, identical per frame {same}, max level difference per frame {diffs}"
    return f"{label}: {told}" + (f"; then {error}" if error else "")


def phase_correctness(report: Report) -> None:
    from s2vc_engines import load_engine
    from s2vc.codec import Codec
    from s2vc.model import build_model
    from s2vc.presets import get_preset

    plan = report.plan
    width, height = plan.correctness_size
    frames = synthetic_clip(width, height, plan.correctness_frames)
    model_cpu = build_model(get_preset("tiny"), num_rates=1, seed=0)
    units_cpu, recons_cpu = _encode_all(Codec(model_cpu), frames)
    model_dev = build_model(get_preset("tiny"), num_rates=1, seed=0).to(plan.device).eval()  # the same weights (same seed)
    assert model_dev.weight_hash == model_cpu.weight_hash
    codec_dev = Codec(model_dev, plan.device)
    units_dev, recons_dev = _encode_all(codec_dev, frames)
    decoded, error = _decode_all(codec_dev, units_dev, width, height)
    result = report.data["correctness"]
    result["device encode → device decode (tiny, fp32)"] = _cross_outcome(f"{width}x{height}, {len(frames)} frames", recons_dev, decoded, error)
    same_units = [a.payload == b.payload for a, b in zip(units_cpu, units_dev)]
    result["device units byte-equal to CPU units"] = f"{sum(same_units)} of {len(same_units)} ({same_units})"
    result["device recon vs CPU recon (max level difference per frame)"] = [_max_level_diff(a, b) for a, b in zip(recons_cpu, recons_dev)]
    decoded, error = _decode_all(codec_dev, units_cpu, width, height)
    result["CPU encode → device decode (tiny, fp32)"] = _cross_outcome("CPU stream on the device", recons_cpu, decoded, error)
    for variant in plan.correctness_variants:
        try:
            name, options = variant.split("+")[0], {"precision": variant.split("+")[1]}
            codec = Codec(load_engine(name, model_dev, device=plan.device, **options), plan.device)
            units, recons = _encode_all(codec, frames)
            decoded, error = _decode_all(codec, units, width, height)
            result[f"device encode → device decode (tiny, {variant})"] = _cross_outcome(variant, recons, decoded, error)
            decoded, error = _decode_all(codec, units_dev, width, height)
            result[f"fp32 device stream → {variant} decoder"] = _cross_outcome(f"fp32 stream in {variant}", recons_dev, decoded, error)
        except Exception as exc:  # noqa: BLE001 - a report, not a test: say what failed and go on
            result[f"device encode → device decode (tiny, {variant})"] = f"not run: {type(exc).__name__}: {exc}"
        report.write()
    del model_cpu, model_dev, codec_dev
    free_memory(plan.device)


def _speed(report: Report, model, preset: str, size: tuple[int, int], variant: str) -> None:
    plan = report.plan
    width, height = size
    row = {"preset": preset, "size": f"{width}x{height}", "engine": variant}
    try:
        started = time.monotonic()
        row |= measure(model, variant, plan.device, width, height, plan.p_frames[_role(preset)], plan.threads,
                       i_frames=plan.i_frames[_role(preset)], verify=True)
        row["seconds"] = round(time.monotonic() - started, 1)
        row["preset"] = preset
    except Exception as exc:  # noqa: BLE001
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    report.add_speed(row)
    free_memory(plan.device)


def _role(preset: str) -> str:
    return "tiny" if preset == "tiny" else "official"


def phase_official(report: Report, model) -> None:
    plan = report.plan
    last: dict[tuple[int, int], float] = {}
    for size in plan.official_sizes:
        for variant in plan.eager:
            # the fp32 row at this size predicts the others; a size not started yet is guessed from the previous one
            guess = last.get(size) or (max(last.values()) * 2.5 if last else 0)
            if report.remaining() < guess + 20:
                report.add_speed({"preset": plan.official_preset, "size": f"{size[0]}x{size[1]}", "engine": variant,
                                  "error": f"time budget ({report.remaining():.0f} s left, ≈ {guess:.0f} s needed)"})
                continue
            started = time.monotonic()
            _speed(report, model, plan.official_preset, size, variant)
            last[size] = max(last.get(size, 0.0), time.monotonic() - started)


def phase_batching(report: Report, model) -> None:
    import numpy as np

    from s2vc_engines import load_engine
    from s2vc.codec import Codec

    plan = report.plan
    torch = _torch()
    width, height = plan.batch_size
    name, *flags = plan.batch_engine.split("+")
    options = {"precision": flags[0]} if flags else {}
    engine = load_engine(name, model, device=plan.device, **options)
    codec = Codec(engine, plan.device)
    for n in plan.sessions:
        row = {"preset": plan.official_preset, "size": f"{width}x{height}", "engine": plan.batch_engine, "sessions": n}
        if report.remaining() < 30:
            report.data["batching"].append(row | {"error": f"time budget ({report.remaining():.0f} s left)"})
            report.write()
            continue
        try:
            clips = [synthetic_clip(width, height, plan.ticks + 3, seed=s) for s in range(n)]
            enc = [codec.new_state(width, height) for _ in range(n)]
            dec = [codec.new_state(width, height) for _ in range(n)]
            enc_t, dec_t = [], []
            if is_cuda(plan.device):
                torch.cuda.reset_peak_memory_stats()
            for t in range(plan.ticks + 3):  # the first three ticks (I, reset P, P) warm up
                frames = [clip[t] for clip in clips]
                _sync(plan.device)
                t0 = time.perf_counter()
                results = codec.encode_batch(enc, frames, reconstruct=False)
                _sync(plan.device)
                t1 = time.perf_counter()
                units = []
                for i, result in enumerate(results):
                    if isinstance(result, Exception):
                        raise result
                    units.append(result[0])
                    enc[i] = result[1]
                decoded = codec.decode_batch(dec, units)
                _sync(plan.device)
                t2 = time.perf_counter()
                for i, result in enumerate(decoded):
                    if isinstance(result, Exception):
                        raise result
                    dec[i] = result[1]
                if t >= 3:
                    enc_t.append(1000 * (t1 - t0))
                    dec_t.append(1000 * (t2 - t1))
            row |= {"ticks": len(enc_t), "encode_p50_ms": _percentile(enc_t, 50), "encode_p99_ms": _percentile(enc_t, 99),
                    "decode_p50_ms": _percentile(dec_t, 50), "decode_p99_ms": _percentile(dec_t, 99),
                    "encode_fps": n * 1000 / float(np.median(enc_t)), "decode_fps": n * 1000 / float(np.median(dec_t)),
                    "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if is_cuda(plan.device) else None}
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {exc}"[:240]
        report.data["batching"].append(row)
        report.write()
    del engine, codec
    free_memory(plan.device)


def is_sd15_base(key: str) -> bool:
    """A codec U-Net key of the frozen SD1.5 base: everything but the LoRA adapters, the TCG motion fusion, the
    vae_reduction head and the replaced conv_in (the parts a release rate point trains)."""
    return not any(part in key for part in ("lora_", "motion_fusion", "vae_reduction")) and not key.startswith("conv_in.")


def _unique_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = (t.device.type, t.untyped_storage().data_ptr())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def phase_memory(report: Report, model, rates: int = 8) -> None:
    """Rate points 1..7 built beside rate point 0 the way the release loader holds them: the frozen SD1.5 base tensors
    shared (same storage), everything else its own copy. Reports the arithmetic and, on CUDA, what was allocated."""
    torch = _torch()
    from s2vc.checkpoint import _empty, _load_strict  # the loader's own assembly
    from s2vc.model import RateModel

    plan = report.plan
    first = model.rate(0)
    mb = 2**20
    extra = []
    before = torch.cuda.memory_allocated() if is_cuda(plan.device) else None
    with torch.no_grad():
        for _ in range(1, rates):
            module = _empty(lambda: RateModel(model.preset))
            for part in ("intra", "inter", "unet"):
                source = getattr(first, part).state_dict()
                state = {k: (v if part == "unet" and is_sd15_base(k) else v.clone()) for k, v in source.items()}
                _load_strict(getattr(module, part), state, f"rate copy ({part})", assign=True)
            extra.append(module.eval())
    after = torch.cuda.memory_allocated() if is_cuda(plan.device) else None
    vae = _unique_bytes(model.vae.state_dict().values())
    one = _unique_bytes(first.state_dict().values())
    base = _unique_bytes(v for k, v in first.unet.state_dict().items() if is_sd15_base(k))
    shared = _unique_bytes(list(model.vae.state_dict().values()) + list(first.state_dict().values())
                           + [v for m in extra for v in m.state_dict().values()])
    mem = {"preset": model.preset.name, "rate_points": rates, "one_rate_point_mb": one / mb, "vae_mb": vae / mb, "sd15_base_mb": base / mb,
           "per_extra_rate_point_mb": (one - base) / mb, "eight_shared_mb": shared / mb, "eight_unshared_mb": (vae + rates * one) / mb}
    if before is not None:  # what the 7 extra rate points allocated on the device, plus the VAE and rate point 0
        mem["measured_allocated_mb"] = (after - before + one + vae) / mb
    report.data["memory"] = mem
    del extra
    free_memory(plan.device)


def phase_tiny(report: Report) -> None:
    plan = report.plan
    model = build_on("tiny", plan.device)
    for size in plan.tiny_sizes:
        for variant in plan.tiny_variants:
            if report.remaining() < 20:
                report.add_speed({"preset": "tiny", "size": f"{size[0]}x{size[1]}", "engine": variant,
                                  "error": f"time budget ({report.remaining():.0f} s left)"})
                continue
            _speed(report, model, "tiny", size, variant)
    del model
    free_memory(plan.device)


def phase_compiled(report: Report) -> None:
    plan = report.plan
    for preset, (width, height), variant in plan.compiled:
        row = {"preset": preset, "size": f"{width}x{height}", "engine": variant}
        timeout = min(plan.child_timeout_s, report.remaining() - 10)
        if timeout < plan.min_child_s:
            report.add_speed(row | {"error": f"time budget ({report.remaining():.0f} s left)"})
            continue
        spec = {"preset": preset, "width": width, "height": height, "variant": variant, "device": plan.device, "threads": plan.threads,
                        "p_frames": plan.p_frames[_role(preset)], "i_frames": plan.i_frames[_role(preset)]}
        report.add_speed(row | run_child(spec, timeout))


def run_child(spec: dict, timeout: float) -> dict:
    """One configuration in a fresh process (its own peak memory, compile caches and crashes), killed with its whole
    process group (inductor's compile workers) when it runs past ``timeout``."""
    cmd = [sys.executable, "-m", "s2vc_evaluation.gpu_check", "--child", json.dumps(spec)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return {"error": f"did not finish in {timeout:.0f} s (compiling?)", "seconds": round(time.monotonic() - started, 1)}
    finally:
        _kill_group(proc)  # compile workers left behind by a finished child
    if proc.returncode != 0:
        reason = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"error": reason[:240], "seconds": round(time.monotonic() - started, 1)}
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"no result line from the child: {out[-200:]!r}"}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def child_main(spec: dict) -> dict:
    torch = _torch()
    torch.set_num_threads(spec["threads"])
    model = build_on(spec["preset"], spec["device"])
    started = time.monotonic()
    row = measure(model, spec["variant"], spec["device"], spec["width"], spec["height"], spec["p_frames"], spec["threads"],
                  i_frames=spec["i_frames"], verify=True)
    row |= {"preset": spec["preset"], "seconds": round(time.monotonic() - started, 1), "process": "child"}
    return row


def phase_golden(report: Report) -> None:
    """The golden weights on the device: CPU units against device units, a CPU stream on the device, x0 vs the goldens."""
    import numpy as np

    from s2vc.checkpoint import rule_release_model
    from s2vc.codec import Codec

    plan = report.plan
    result = report.data["golden"]
    path = GOLDEN_DIR / "128x128" / "golden.npz"
    if not path.is_file():
        result["status"] = f"not run: {path} is missing"
        return
    golden = np.load(path)
    frames = list(golden["input"])
    height, width = frames[0].shape[:2]
    rate = 7
    started = time.monotonic()
    model = rule_release_model(rates=(rate,))
    result["build_s"] = round(time.monotonic() - started, 1)
    cpu = Codec(model)
    state = cpu.new_state(width, height, rate=rate)
    units_cpu, x0_cpu = [], []
    for frame in frames:
        unit, state, _ = cpu.encode_frame(state, frame, reconstruct=False)
        units_cpu.append(unit)
        x0_cpu.append(state.ref_frame.float().numpy())
    result["cpu_encode_s"] = round(time.monotonic() - started, 1)
    model.to(plan.device)
    dev = Codec(model, plan.device)
    state = dev.new_state(width, height, rate=rate)
    same, dx0_cpu, dx0_golden = [], [], []
    units_dev = []
    for name, frame, unit_cpu, x0c in zip(("I", "P1", "P2"), frames, units_cpu, x0_cpu):
        unit, state, _ = dev.encode_frame(state, frame, reconstruct=False)
        units_dev.append(unit)
        x0 = state.ref_frame.float().cpu().numpy()
        same.append(unit.payload == unit_cpu.payload)
        dx0_cpu.append(float(np.abs(x0 - x0c).max()))
        dx0_golden.append(float(np.abs(x0 - golden[f"{name}_x0"].astype(np.float32)).max()))
    result["device fp32 units byte-equal to CPU units (I, P1, P2)"] = same
    result["device x0 vs CPU x0, max |Δ| (I, P1, P2)"] = dx0_cpu
    result["device x0 vs official golden x0 (float16), max |Δ|"] = dx0_golden
    decoded, error = _decode_all(dev, units_cpu, width, height)
    result["CPU stream → device decoder"] = f"{len(decoded)} of 3 frames decoded" + (f"; {error}" if error else ", no error")
    decoded, error = _decode_all(dev, units_dev, width, height)
    result["device stream → device decoder"] = f"{len(decoded)} of 3 frames decoded" + (f"; {error}" if error else ", no error")
    result["seconds"] = round(time.monotonic() - started, 1)
    del model, cpu, dev
    free_memory(plan.device)


# ----------------------------------------------------------------------------------------------------- main
class BudgetExceeded(BaseException):  # not an Exception: the per-configuration handlers must not swallow it
    """Raised in the main thread by the watchdog when a phase runs past the budget and its grace period."""


GRACE_S = 30.0  # how far an in-process configuration may run past the budget before the watchdog stops it


def _watchdog(seconds: float):
    """Raise :class:`BudgetExceeded` in the main thread after ``seconds`` (SIGALRM); returns a function that disarms it."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        return lambda: None

    def fire(signum, frame):
        raise BudgetExceeded(f"the run passed its budget by {GRACE_S:.0f} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))

    def disarm() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    return disarm


def run(plan: Plan, out: Path, budget_s: float, phases: list[str]) -> Report:
    report = Report(out, plan, budget_s)
    disarm = _watchdog(budget_s + GRACE_S)
    try:
        _run_phases(report, phases)
    except BudgetExceeded as exc:  # everything measured so far is already written
        report.data["meta"]["stopped"] = str(exc)
    finally:
        disarm()
    report.write()
    return report


def _run_phases(report: Report, phases: list[str]) -> None:
    plan = report.plan
    torch = _torch()
    torch.set_num_threads(plan.threads)
    official = None
    for name in PHASES:
        if name not in phases:
            continue
        if name == "golden" and not plan.golden:
            report.phase(name, "skipped", 0, "needs ≈ 8 GB and a minute on the CPU; full runs only")
            continue
        if report.remaining() < (5 if name == "env" else 30):
            report.phase(name, "skipped", 0, f"time budget ({report.remaining():.0f} s left)")
            continue
        started = time.monotonic()
        print(f"[gpu_check] {name} ({report.remaining():.0f} s left)", file=sys.stderr, flush=True)
        try:
            if name in ("official", "batching", "memory") and official is None:
                t0 = time.monotonic()
                official = build_on(plan.official_preset, plan.device)
                report.data["meta"]["official_build_s"] = round(time.monotonic() - t0, 1)
            if name == "compiled" and official is not None:  # the children build their own; free the device first
                official = None
                free_memory(plan.device)
            {"env": lambda: phase_env(report), "correctness": lambda: phase_correctness(report),
             "official": lambda: phase_official(report, official), "batching": lambda: phase_batching(report, official),
             "memory": lambda: phase_memory(report, official), "tiny": lambda: phase_tiny(report),
             "compiled": lambda: phase_compiled(report), "golden": lambda: phase_golden(report)}[name]()
            report.phase(name, "done", time.monotonic() - started)
        except BudgetExceeded as exc:
            report.phase(name, "stopped", time.monotonic() - started, str(exc))
            raise
        except Exception as exc:  # noqa: BLE001 - record and go on with the next phase
            detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
            report.data.setdefault("tracebacks", {})[name] = traceback.format_exc()[-4000:]
            report.phase(name, "failed", time.monotonic() - started, detail)
            free_memory(plan.device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds for all phases (default 450; smoke 120)")
    parser.add_argument("--only", default=None, help=f"comma-separated phases ({','.join(PHASES)})")
    parser.add_argument("--skip", default="", help="comma-separated phases to leave out")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, seconds: checks that the command works")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 2 for smoke, all cores otherwise)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one configuration in its own process; the last stdout line is its JSON row
        print(json.dumps(child_main(json.loads(args.child)), default=str), flush=True)
        return

    torch = _torch()
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    threads = args.threads or (2 if args.smoke else max(1, os.cpu_count() or 1))
    plan = smoke_plan(device, threads) if args.smoke else full_plan(device, threads)
    if not args.smoke and not is_cuda(device):
        plan.notes.append("full plan on a CPU: the official configurations will take far longer than on a GPU")
    budget = args.budget_s if args.budget_s is not None else (120.0 if args.smoke else 450.0)
    unknown = {p for p in (args.only or "").split(",") + args.skip.split(",") if p} - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases {sorted(unknown)}; phases: {', '.join(PHASES)}")
    phases = [p for p in (args.only.split(",") if args.only else PHASES) if p not in args.skip.split(",")]
    phases = list(dict.fromkeys(["env", *phases]))  # the versions head every report
    report = run(plan, Path(args.out), budget, phases)
    print(markdown(report.data))
    print(f"[gpu_check] wrote {Path(args.out) / JSON_NAME} and {Path(args.out) / MD_NAME}", file=sys.stderr)


if __name__ == "__main__":
    main()
