"""The small protocol through which the step API runs the networks.

The torch modules in :mod:`s2vc.networks` satisfy it as they are; a runtime (onnxruntime, TensorRT) that wants to
plug into :class:`s2vc.codec.Codec` provides objects with the same methods. The codec never imports a runtime.
Every method is a pure function of its tensor arguments, and the methods with several outputs return them as the
small named results below (tuples, so they unpack in order too).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

from torch import Tensor

from .presets import Preset


class Latents(NamedTuple):
    """An analysis transform's output: ``y`` (1/16 of the frame) and the hyper latent ``z`` (1/64)."""

    y: Tensor
    z: Tensor


class QuantizedZ(NamedTuple):
    """FSQ of the intra hyper latent: the dequantised ``z_hat`` and the integer symbol ``index``."""

    z_hat: Tensor
    index: Tensor


class IntraHyper(NamedTuple):
    """The intra hyper decoder: entropy ``params`` and the ``reduced`` context of y, the semantic ``z_semantic``."""

    params: Tensor
    reduced: Tensor
    z_semantic: Tensor


class GaussianParams(NamedTuple):
    """A spatial prior's quantised-Gaussian parameters of the next symbols of y."""

    scales: Tensor
    means: Tensor


class Synthesis(NamedTuple):
    """The intra decoder: the U-Net input ``f_pix`` (1/8) and the semantic ``tokens`` (CSG)."""

    f_pix: Tensor
    tokens: Tensor


class Context(NamedTuple):
    """The P-frame context from the buffer: ``ctx`` for the encoder and decoder, ``ctx_t`` for the temporal prior."""

    ctx: Tensor
    ctx_t: Tensor


class InterPrior(NamedTuple):
    """The inter hyper/temporal prior: quantisation steps, the first pass's Gaussian, and the spatial prior's input."""

    q_dec: Tensor
    scales: Tensor
    means: Tensor
    params: Tensor


class InterSynthesis(NamedTuple):
    """The inter decoder: the ``feature`` for the buffer, the U-Net input ``f_pix`` and the semantic ``tokens``."""

    feature: Tensor
    f_pix: Tensor
    tokens: Tensor


class Denoised(NamedTuple):
    """The single-step U-Net: the ``x0`` latent and the pre-fusion down-block ``feats`` (the TCG buffer)."""

    x0: Tensor
    feats: list[Tensor]


class VAENetwork(Protocol):
    def encode(self, x: Tensor) -> Tensor: ...  # RGB in [-1,1] -> scaled latent (4, /8)

    def decode(self, latent: Tensor) -> Tensor: ...  # scaled latent -> RGB in about [-1,1]


class IntraNetwork(Protocol):
    def encode(self, x: Tensor, latent: Tensor) -> Latents: ...

    def quantize_z(self, z: Tensor) -> QuantizedZ: ...

    def dequantize_z(self, index: Tensor) -> Tensor: ...

    def hyper_decode(self, z_hat: Tensor) -> IntraHyper: ...

    def spatial_prior(self, k: int, y_hat_sum: Tensor, reduced: Tensor) -> GaussianParams: ...

    def decode(self, y_hat: Tensor, z_semantic: Tensor) -> Synthesis: ...


class InterNetwork(Protocol):
    def context(self, ref_frame: Tensor, ref_feature: Tensor | None, reset: bool) -> Context: ...

    def encode(self, x: Tensor, ctx: Tensor) -> Latents: ...

    def prior(self, z_hat: Tensor, ctx_t: Tensor) -> InterPrior: ...

    def spatial_prior(self, y_hat_a: Tensor, params: Tensor) -> GaussianParams: ...

    def decode(self, y_hat: Tensor, ctx: Tensor) -> InterSynthesis: ...


class DiffusionNetwork(Protocol):
    def __call__(
        self, f_pix: Tensor, tokens: Tensor, prev_feats: Sequence[Tensor] | None, adapter: str
    ) -> Denoised: ...


class RateNetworks(Protocol):
    """The networks of one rate point."""

    intra: IntraNetwork
    inter: InterNetwork
    unet: DiffusionNetwork


class ModelNetworks(Protocol):
    """What the step API needs of a model: its VAE, its rate points and its identity."""

    vae: VAENetwork
    preset: Preset
    model_id: str
    weight_hash: bytes
    num_rates: int
    reset_interval: int | None  # the model's recommended P-frames between context re-anchors (None: the codec's 32)

    def rate(self, index: int) -> RateNetworks: ...

    def z_pmf(self, index: int, symbol_min: int, symbol_max: int): ...  # factorised z prior table (numpy)
