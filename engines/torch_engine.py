"""The reference engine: the torch modules themselves (CPU or CUDA)."""

from __future__ import annotations

from typing import Any

import torch


def load(model: Any, *, device: str | torch.device = "cpu", **options: Any) -> Any:
    """The model on ``device`` in eval mode; the torch modules satisfy :class:`s2vc.protocol.ModelNetworks`."""
    unknown = sorted(options)
    if unknown:
        raise TypeError(f"torch engine: unknown options {unknown}")
    return model.to(device).eval()
