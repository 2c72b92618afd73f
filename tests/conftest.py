"""Shared fixtures: small models and real clips from ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s2vc.model import build_model
from s2vc.presets import TINY

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIPS = SHARED / "data" / "clips"
MANIFESTS = Path(__file__).resolve().parent / "fixtures" / "manifests"  # copies of ../shared/s2vc-official/manifests

torch.set_num_threads(2)


FIXTURE_CLIPS = Path(__file__).resolve().parent / "fixtures" / "clips"  # short cuts kept in the repository


def clip(name: str) -> Path:
    if (FIXTURE_CLIPS / name).is_file():
        return FIXTURE_CLIPS / name
    path = CLIPS / name
    if not path.is_file():
        pytest.skip(f"{path} is not present (../shared/data holds the real clips)")
    return path


@pytest.fixture(scope="session")
def tiny_model():
    """A random-initialised tiny model with two rate points (fixed seed)."""
    return build_model(TINY, num_rates=2, seed=0)
