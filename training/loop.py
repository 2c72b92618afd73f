"""Batches for the trainer and validation with real bitstreams."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from s2vc.codec import Codec
from s2vc.model import S2VCModel
from s2vc.pipeline import encode_frames
from s2vc.video_io import VideoReader


def batch_iterator(dataset: Dataset, batch: int, seed: int) -> Callable[[int], Iterator[torch.Tensor]]:
    """An endless, deterministic stream of (B, T, 3, H, W) batches; resuming at step ``start`` continues the
    same order (each epoch's shuffle depends only on the seed and the epoch number)."""

    def batches(start: int) -> Iterator[torch.Tensor]:
        per_epoch = max(len(dataset) // batch, 1)
        epoch, skip = divmod(start, per_epoch)
        while True:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, generator=generator)
            for i, clip in enumerate(loader):
                if i >= skip:
                    yield clip
            epoch, skip = epoch + 1, 0

    return batches


def make_validator(clip_path: Path, frames: int, rate: int) -> Callable[[S2VCModel], dict[str, float]]:
    """Code the first ``frames`` frames of a clip for real: bpp from the bytes, PSNR of the reconstruction."""
    originals = list(VideoReader(clip_path).frames(frames))
    height, width = originals[0].shape[:2]

    def validate(model: S2VCModel) -> dict[str, float]:
        codec = Codec(model)
        out = io.BytesIO()
        summary, _ = encode_frames(codec, originals, out, codec.sequence_params(width, height, rate=rate), rate=rate)
        return {"bpp": summary.bpp, "psnr": float(np.mean(summary.psnr))}

    return validate
