"""Golden test vectors: a micro model with fixed weights, a fixed input → fixed bytes and fixed decoded frames.

``python -m tests.golden --write`` regenerates ``tests/fixtures/golden/`` after a deliberate format change
(say so in the commit); ``tests/test_golden.py`` checks that nothing changed by accident.

What is pinned exactly is the whole stream: the header, every unit's fields, payload and CRCs. Since format
version 2 a unit's ``state_check`` is a CRC of its scale indices (the quantised entropy parameters), not of float
state bytes, so it is as stable across machines as the symbols themselves. The last bit of a decoded pixel still
depends on the CPU's float arithmetic (MKL/oneDNN take other code paths on other CPUs): frames are compared within
one level of ``frames.npz``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from s2vc.codec import Codec
from s2vc.model import S2VCModel
from s2vc.pipeline import encode_frames
from s2vc.presets import IntraWidths, InterWidths, Preset, UNetWidths, VAEWidths

GOLDEN = Path(__file__).parent / "fixtures" / "golden"

MICRO = Preset(
    name="golden-micro",
    intra=IntraWidths(pix_emb=8, ctrl=16, internal=16, unet_channels=(16, 16, 16), attention_head_dim=8, semantic=16, y=8,
                      fsq_levels=(4, 4, 4), norm_groups=4),
    inter=InterWidths(ch=16, ch_mid=16, y=8, z=8, temporal=8, ctrl=16, semantic=16, norm_groups=4),
    unet=UNetWidths(block_out_channels=(16, 16, 16, 16), layers_per_block=1, cross_attention_dim=16, attention_head_dim=2,
                    norm_groups=4, in_channels=16, lora_rank=2, lora_alpha=0.25, motion_channels=8),
    vae=VAEWidths(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_groups=4),
    round_means=True,  # the vectors were made with rounded means; the rounding path stays covered
)


def golden_frames() -> list[np.ndarray]:
    """Three 64×64 frames: a smooth moving pattern (no RNG, no files)."""
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float64)
    frames = []
    for t in range(3):
        r = 128 + 100 * np.sin((xx + 3 * t) / 9.0)
        g = 128 + 100 * np.cos((yy - 2 * t) / 7.0)
        b = (xx * 2 + yy + 10 * t) % 256
        frames.append(np.stack([r, g, b], axis=-1).round().clip(0, 255).astype(np.uint8))
    return frames


def build_golden_model() -> S2VCModel:
    """The micro model with weights that depend only on each tensor's name and shape (numpy's PCG64 streams are
    stable across versions), not on the order in which torch/diffusers/peft initialise modules."""
    model = S2VCModel(MICRO, ["g0", "g1"], model_id="golden-micro", weight_hash=b"golden01").eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
            rng = np.random.Generator(np.random.PCG64(seed))
            fan_in = max(int(np.prod(tensor.shape[1:])), 1) if tensor.ndim > 1 else 1
            values = rng.standard_normal(tuple(tensor.shape)) / np.sqrt(fan_in)
            if tensor.ndim == 1:  # biases and norm scales: small, norm scales around 1
                values = 0.1 * values + (1.0 if "norm" in name and name.endswith("weight") else 0.0)
            tensor.copy_(torch.from_numpy(values.astype(np.float32)))
    return model


def encode_golden(model: S2VCModel) -> tuple[bytes, list[np.ndarray]]:
    codec = Codec(model, reset_interval=1)
    out = io.BytesIO()
    _, recons = encode_frames(codec, golden_frames(), out, codec.sequence_params(64, 64, 25, rate=1))
    return out.getvalue(), recons


def frames_digest(frames: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for f in frames:
        digest.update(np.ascontiguousarray(f).tobytes())
    return digest.hexdigest()


def load_golden_frames() -> list[np.ndarray]:
    with np.load(GOLDEN / "frames.npz") as stored:
        return [stored[f"arr_{i}"] for i in range(len(stored.files))]


def write() -> None:
    data, recons = encode_golden(build_golden_model())
    (GOLDEN / "stream.s2vc").write_bytes(data)
    np.savez_compressed(GOLDEN / "frames.npz", *recons)
    (GOLDEN / "expected.json").write_text(json.dumps({"stream_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}, indent=2) + "\n")
    print(f"wrote {GOLDEN}: {len(data)} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="regenerate the golden fixtures")
    if parser.parse_args().write:
        write()
    else:
        parser.print_help()
