"""An :class:`~engines.base.Engine` whose networks are graphs of :mod:`s2vc.graphs`, run by a backend.

The protocol objects (``vae``, ``rate(i).intra/.inter/.unet``) turn each protocol call into one graph call
``run(spec name, rate, *inputs) -> outputs``; a backend (torch modules, onnxruntime sessions, TensorRT engines)
only says how to make a runner for one graph. Graphs with dynamic height/width have one runner per (network,
rate point); the VAE graphs one per padded frame size. FSQ (parameter-free) and x0 = f(ε, x_t) (float64) run in
torch, exactly as in the reference.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

from s2vc.graphs import SPECS, NetworkSpec
from s2vc.networks.unet import output_to_x0
from s2vc.protocol import Context, Denoised, GaussianParams, InterPrior, InterSynthesis, IntraHyper, Latents, Synthesis

from .base import Engine

Runner = Callable[..., Sequence[Tensor]]


class GraphEngine(Engine):
    """Base of the graph backends. Subclasses implement :meth:`make_runner`.

    ``networks``: names of the specs this backend runs (default: all); the others run as the reference torch
    modules. Meant for locating a parity problem one network at a time.
    """

    def __init__(self, model, device: str | torch.device = "cpu", precision: str = "fp32", networks: Iterable[str] | None = None) -> None:
        super().__init__(model, device, precision)
        self.networks = set(SPECS) if networks is None else set(networks)
        unknown = self.networks - set(SPECS)
        if unknown:
            raise ValueError(f"unknown networks {sorted(unknown)}; networks: {', '.join(SPECS)}")
        self._runners: dict[tuple, Runner] = {}
        self._lock = threading.Lock()
        self.vae = _VAE(self)
        self._rates: dict[int, _Rate] = {}

    def make_runner(self, spec: NetworkSpec, rate: int | None, size: tuple[int, int]) -> Runner:
        """A callable running ``spec``'s graph of rate point ``rate``; ``size`` is the padded (height, width) of the
        first call (the runner of a per-size graph is only used at that size)."""
        raise NotImplementedError

    def rate(self, index: int) -> "_Rate":
        if index not in self._rates:
            self.model.rate(index)  # raises the model's error for a rate point that does not exist
            self._rates[index] = _Rate(self, index)
        return self._rates[index]

    def run(self, name: str, rate: int | None, *inputs: Tensor) -> tuple[Tensor, ...]:
        """Run graph ``name`` of rate point ``rate`` (None for the VAE) on float32 ``inputs``."""
        spec = SPECS[name]
        size = spec.frame_size(self.preset, inputs)
        key = (name, rate, None if spec.dynamic_hw else size)
        runner = self._runners.get(key)
        if runner is None:
            with self._lock:
                runner = self._runners.get(key)
                if runner is None:
                    runner = self.make_runner(spec, rate, size) if name in self.networks else self.reference_runner(spec, rate)
                    self._runners[key] = runner
        return tuple(runner(*(x.float() for x in inputs)))

    def reference_runner(self, spec: NetworkSpec, rate: int | None) -> Runner:
        """The torch network itself, float32 (for the networks this backend does not run)."""
        owner = spec.owner(self.model, rate)
        return lambda *inputs: spec.call(owner, *inputs)


class _VAE:
    def __init__(self, engine: GraphEngine) -> None:
        self._engine = engine

    def encode(self, x: Tensor) -> Tensor:
        return self._engine.run("vae_encoder", None, x)[0]

    def decode(self, latent: Tensor) -> Tensor:
        return self._engine.run("vae_decoder", None, latent)[0]


class _Intra:
    def __init__(self, engine: GraphEngine, rate: int) -> None:
        self._engine, self._rate = engine, rate
        self._fsq = engine.model.rate(rate).intra  # FSQ has no parameters: the reference code, exactly

    def _run(self, name: str, *inputs: Tensor) -> tuple[Tensor, ...]:
        return self._engine.run(name, self._rate, *inputs)

    def encode(self, x, latent):
        return Latents(*self._run("intra_encoder", x, latent))

    def quantize_z(self, z):
        return self._fsq.quantize_z(z)

    def dequantize_z(self, index):
        return self._fsq.dequantize_z(index)

    def hyper_decode(self, z_hat):
        return IntraHyper(*self._run("intra_hyper_decoder", z_hat))

    def spatial_prior(self, k, y_hat_sum, reduced):
        if k not in (1, 2, 3):
            raise ValueError(f"spatial prior pass must be 1, 2 or 3, got {k}")
        return GaussianParams(*self._run(f"intra_spatial_prior_{k}", y_hat_sum, reduced))

    def decode(self, y_hat, z_semantic):
        return Synthesis(*self._run("intra_decoder", y_hat, z_semantic))


class _Inter:
    def __init__(self, engine: GraphEngine, rate: int) -> None:
        self._engine, self._rate = engine, rate

    def _run(self, name: str, *inputs: Tensor) -> tuple[Tensor, ...]:
        return self._engine.run(name, self._rate, *inputs)

    def context(self, ref_frame, ref_feature, reset):
        if reset:
            if ref_frame is None:
                raise ValueError("a reset context needs ref_frame (the previous x0 latent)")
            return Context(*self._run("inter_context_reset", ref_frame))
        if ref_feature is None:
            raise ValueError("a non-reset context needs ref_feature (the previous decoder feature)")
        return Context(*self._run("inter_context", ref_feature))

    def encode(self, x, ctx):
        return Latents(*self._run("inter_encoder", x, ctx))

    def prior(self, z_hat, ctx_t):
        return InterPrior(*self._run("inter_prior", z_hat, ctx_t))

    def spatial_prior(self, y_hat_a, params):
        return GaussianParams(*self._run("inter_spatial_prior", y_hat_a, params))

    def decode(self, y_hat, ctx):
        return InterSynthesis(*self._run("inter_decoder", y_hat, ctx))


class _UNet:
    def __init__(self, engine: GraphEngine, rate: int) -> None:
        self._engine, self._rate = engine, rate

    def __call__(self, f_pix, tokens, prev_feats, adapter):
        if adapter == "iframe":
            if prev_feats is not None:
                raise ValueError("the iframe U-Net has no temporal fusion: prev_feats must be None")
            outputs = self._engine.run("unet_iframe", self._rate, f_pix, tokens)
        elif adapter == "pframe":
            if prev_feats is None:
                raise ValueError("the pframe U-Net fuses the previous frame's features: prev_feats is required")
            outputs = self._engine.run("unet_pframe", self._rate, f_pix, tokens, *prev_feats)
        else:
            raise ValueError(f"unknown adapter {adapter!r}; expected 'iframe' or 'pframe'")
        eps, x_t, *feats = outputs
        return Denoised(output_to_x0(self._engine.preset.unet, x_t, eps), list(feats))


class _Rate:
    def __init__(self, engine: GraphEngine, index: int) -> None:
        self.intra = _Intra(engine, index)
        self.inter = _Inter(engine, index)
        self.unet = _UNet(engine, index)
