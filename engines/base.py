"""The :class:`Engine` interface that the codec step API and the server call.

An engine satisfies :class:`s2vc.protocol.ModelNetworks` (``vae``, ``preset``, ``model_id``, ``weight_hash``,
``num_rates``, ``rate(i)``, ``z_pmf``), so ``Codec(engine)`` runs on it, and adds what a server needs: a
``name``, the ``device`` it runs on and :meth:`Engine.info` (exported as a Prometheus info metric). A server warms an engine
up by coding frames through it (``server/runtime.py``), so the first real frame does not pay for exports, builds or
compilation.

The identity (model id, weight hash, preset), the factorised z prior tables (float64, part of the entropy
path) and the parameter-free FSQ of the intra codec always come from the torch model the engine was made from.
"""

from __future__ import annotations

import numpy as np
import torch

from s2vc.graphs import precision_dtype


class Engine:
    """Base of the engines: identity and z tables from ``model`` (an :class:`~s2vc.model.S2VCModel`).

    Subclasses provide ``vae`` and :meth:`rate`, and may override :meth:`runtime_version`.
    """

    name = "engine"

    def __init__(self, model, device: str | torch.device = "cpu", precision: str = "fp32") -> None:
        precision_dtype(precision)  # validates the name
        self.model = model
        self.device = torch.device(device)
        self.precision = precision
        self.weight_hash: bytes = model.weight_hash  # hashed now, before any engine changes a tensor's dtype

    # ------------------------------------------------------------------ ModelNetworks identity
    @property
    def preset(self):
        return self.model.preset

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def num_rates(self) -> int:
        return self.model.num_rates

    @property
    def reset_interval(self) -> int | None:
        return getattr(self.model, "reset_interval", None)

    @property
    def untrained(self) -> bool:
        return bool(getattr(self.model, "untrained", False))

    def z_pmf(self, index: int, symbol_min: int, symbol_max: int) -> np.ndarray:
        return self.model.z_pmf(index, symbol_min, symbol_max)

    def rate(self, index: int):
        raise NotImplementedError

    # ------------------------------------------------------------------ serving
    def runtime_version(self) -> str:
        return f"torch {torch.__version__}"

    def info(self) -> dict[str, str]:
        """Labels of the ``s2vc_engine`` info metric: engine, precision, runtime (with version), device, model."""
        return {
            "engine": self.name, "precision": self.precision, "runtime": self.runtime_version(), "device": str(self.device),
            "model": self.model_id, "weights": self.weight_hash.hex(),
        }
