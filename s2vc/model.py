"""A whole S²VC model: the shared VAE plus one set of codec networks per rate point.

The official release ships every rate point as its own files (an intra codec, an inter codec and a codec U-Net),
so a :class:`S2VCModel` keeps rate points separately and can load them lazily: a CLI run touches only the rate
point it codes, a server may keep several resident (identical tensors shared, see :mod:`s2vc.checkpoint`).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Callable

import numpy as np
import torch
from torch import nn

from .errors import ModelMismatchError
from .networks.inter import InterCodec
from .networks.intra import IntraCodec
from .networks.unet import CodecUNet
from .networks.vae import CodecVAE
from .presets import Preset


class RateModel(nn.Module):
    """The networks of one rate point: intra codec, inter codec and codec U-Net."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.intra = IntraCodec(preset.intra)
        self.inter = InterCodec(preset.inter)
        self.unet = CodecUNet(preset.unet)


RateLoader = Callable[[int], RateModel]


class S2VCModel(nn.Module):
    """VAE + rate points. ``rate_names`` label the rate points in rate order (index 0 = fewest bits).

    Rate points that are not resident are built on first use by ``loader`` (the checkpoint readers pass one).
    ``weight_hash`` (8 bytes) identifies the weights in every bitstream made with this model.
    """

    def __init__(
        self,
        preset: Preset,
        rate_names: list[str],
        *,
        model_id: str | None = None,
        weight_hash: bytes | None = None,
        loader: RateLoader | None = None,
        build_rates: bool = True,
    ) -> None:
        super().__init__()
        if not rate_names:
            raise ValueError("a model needs at least one rate point")
        self.preset = preset
        self.rate_names = list(rate_names)
        self.model_id = model_id or preset.name
        self.vae = CodecVAE(preset.vae)
        self.rates = nn.ModuleDict()
        if build_rates:
            for i in range(len(rate_names)):
                self.rates[str(i)] = RateModel(preset)
        self._loader = loader
        self.untrained = False  # set for random-weight models so that tools can warn
        self.reset_interval: int | None = None  # the context re-anchor interval the weights were tuned for, if any
        self._weight_hash = weight_hash
        self._lock = threading.Lock()
        self._z_pmf_cache: dict[tuple[int, int, int], np.ndarray] = {}

    @property
    def num_rates(self) -> int:
        return len(self.rate_names)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def weight_hash(self) -> bytes:
        if self._weight_hash is None:
            self._weight_hash = content_hash(self)[:8]
        return self._weight_hash

    def resident_rates(self) -> list[int]:
        return sorted(int(k) for k in self.rates.keys())

    def rate(self, index: int) -> RateModel:
        """The networks of rate point ``index``, loading them on first use."""
        if not 0 <= index < self.num_rates:
            raise ModelMismatchError(
                f"rate point {index} does not exist in model {self.model_id!r} (it has {self.num_rates}: 0..{self.num_rates - 1})"
            )
        key = str(index)
        if key not in self.rates:
            with self._lock:
                if key not in self.rates:
                    if self._loader is None:
                        raise ModelMismatchError(f"rate point {index} of model {self.model_id!r} is not loaded")
                    module = self._loader(index)
                    self.rates[key] = module.to(self.device).eval()
        return self.rates[key]  # type: ignore[return-value]

    def z_pmf(self, index: int, symbol_min: int, symbol_max: int) -> np.ndarray:
        """The factorised z prior of rate point ``index`` as a (channels, symbols) float64 table, cached."""
        key = (index, symbol_min, symbol_max)
        table = self._z_pmf_cache.get(key)
        if table is None:
            with torch.no_grad():
                table = self.rate(index).inter.bit_estimator_z.pmf_table(symbol_min, symbol_max).cpu().numpy()
            self._z_pmf_cache[key] = table
        return table

    def invalidate_caches(self) -> None:
        """Call after changing weights in place (training): drops the cached z tables and the weight hash."""
        self._z_pmf_cache.clear()
        self._weight_hash = None


def content_hash(module: nn.Module) -> bytes:
    """SHA-256 over every tensor of ``module`` (names, dtypes, shapes and bytes, sorted by name)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.digest()


def build_model(preset: Preset, num_rates: int = 4, seed: int | None = 0, rate_names: list[str] | None = None) -> S2VCModel:
    """A randomly initialised model (deterministic for a given seed)."""
    if seed is not None:
        torch.manual_seed(seed)
    names = rate_names or [f"r{i}" for i in range(num_rates)]
    model = S2VCModel(preset, names).eval()
    model.untrained = True
    return model
