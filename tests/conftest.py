"""Shared fixtures: small models and the short real clips kept in tests/fixtures/clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s2vc.model import build_model
from s2vc.presets import TINY

MANIFESTS = Path(__file__).resolve().parent / "fixtures" / "manifests"  # copies of the official release's manifests

torch.set_num_threads(2)


FIXTURE_CLIPS = Path(__file__).resolve().parent / "fixtures" / "clips"  # short cuts kept in the repository


def clip(name: str) -> Path:
    """A clip kept in the repository; tests never read files from outside it."""
    path = FIXTURE_CLIPS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in the repository; add a short cut of it to tests/fixtures/clips")
    return path


@pytest.fixture(scope="session")
def tiny_model():
    """A random-initialised tiny model with two rate points (fixed seed)."""
    return build_model(TINY, num_rates=2, seed=0)
