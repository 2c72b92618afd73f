"""Resolution buckets and the TensorRT min/opt/max shape profile of a network in a bucket.

A bucket is a padded frame size (width × height, multiples of 64). Its profile covers every frame that pads to at
most that size (min: batch 1 at 64×64; opt: ``opt_batch`` at the bucket size; max: ``max_batch`` at the bucket
size), so a frame goes to the smallest bucket that holds it and the kernels are tuned for the bucket's own size.
Networks without dynamic height/width (the VAE) are built per padded frame size: min = opt = max spatially.
"""

from __future__ import annotations

from dataclasses import dataclass

from s2vc.graphs import NetworkSpec
from s2vc.presets import Preset

#: The default buckets as (width, height): 320×256, 640×384, 1280×768 (720p), 1920×1088 (1080p).
BUCKETS: tuple[tuple[int, int], ...] = ((320, 256), (640, 384), (1280, 768), (1920, 1088))


def parse_buckets(text: str) -> tuple[tuple[int, int], ...]:
    """``"320x256,640x384"`` → ((320, 256), (640, 384)), sorted by area; each side a positive multiple of 64."""
    buckets = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            w, h = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"bucket {item!r} is not WIDTHxHEIGHT") from None
        if w <= 0 or h <= 0 or w % 64 or h % 64:
            raise ValueError(f"bucket {item!r}: width and height must be positive multiples of 64")
        buckets.append((w, h))
    if not buckets:
        raise ValueError("no buckets given")
    return tuple(sorted(set(buckets), key=lambda b: (b[0] * b[1], b)))


def bucket_for(height: int, width: int, buckets: tuple[tuple[int, int], ...] = BUCKETS) -> tuple[int, int]:
    """The smallest bucket (width, height) that holds a padded ``height``×``width`` frame."""
    for w, h in sorted(buckets, key=lambda b: (b[0] * b[1], b)):
        if width <= w and height <= h:
            return w, h
    largest = ", ".join(f"{w}x{h}" for w, h in buckets)
    raise ValueError(f"a {width}x{height} frame fits no bucket ({largest}); build engines with a larger --buckets entry")


@dataclass(frozen=True)
class Profile:
    """Min/opt/max shape of every input of one network; ``size`` = (width, height) it was made for."""

    network: str
    size: tuple[int, int]
    shapes: tuple[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]  # (input, min, opt, max)

    def as_dict(self) -> dict:
        return {"network": self.network, "size": list(self.size), "shapes": {n: [list(a), list(b), list(c)] for n, a, b, c in self.shapes}}


def profile_for(spec: NetworkSpec, preset: Preset, size: tuple[int, int], max_batch: int = 4, opt_batch: int = 1) -> Profile:
    """The shape profile of ``spec`` for a bucket (or, for a per-size network, a padded frame) ``size`` = (w, h)."""
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= opt_batch ({opt_batch}) <= max_batch ({max_batch})")
    w, h = size
    low = spec.shapes(preset, 1, 64, 64) if spec.dynamic_hw else spec.shapes(preset, 1, h, w)
    opt = spec.shapes(preset, opt_batch, h, w)
    high = spec.shapes(preset, max_batch, h, w)
    return Profile(spec.name, (w, h), tuple((n, low[n], opt[n], high[n]) for n in spec.inputs))
