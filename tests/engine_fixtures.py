"""Fixtures shared by test_export.py and test_engines.py (imported by both; pytest keeps one per session).

``lora_model``: the tiny preset (one rate point, seed 0) with its LoRA ``B`` matrices and TCG zero-convs set to
small random values — freshly initialised they are zero, which would make the two U-Net adapters identical and
the temporal fusion the identity, so no test could tell them apart. ``onnx_store``: its graphs, exported on
first use into one folder for the whole session.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2vc_engines.onnx_store import ExportStore
from s2vc.model import build_model
from s2vc.presets import TINY

WIDTH, HEIGHT = 192, 128  # padded size 192x128: three tokens a row, not square


@pytest.fixture(scope="session")
def lora_model():
    model = build_model(TINY, num_rates=1, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "zero_conv" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    model.invalidate_caches()
    return model


@pytest.fixture(scope="session")
def onnx_store(lora_model, tmp_path_factory):
    return ExportStore(tmp_path_factory.mktemp("onnx-fp32"), lora_model)


def moving_clip(frames: int, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    base = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return [np.roll(base, 5 * i, axis=1) for i in range(frames)]


@pytest.fixture(scope="module")
def one_thread():
    """torch (and the onnxruntime sessions, which default to torch's count) on one thread for these modules: on
    the shared 2-core test machine a 2-thread pool waits for a descheduled worker and small networks slow down
    by 10-100x under load; one thread keeps the timing steady. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
