"""The small protocol through which the step API runs the networks.

The torch modules in :mod:`s2vc.networks` satisfy it as they are; a runtime (onnxruntime, TensorRT) that wants to
plug into :class:`s2vc.codec.Codec` provides objects with the same methods. The codec never imports a runtime.
Every method is a pure function of its tensor arguments.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from torch import Tensor

from .presets import Preset


class VAENetwork(Protocol):
    def encode(self, x: Tensor) -> Tensor: ...  # RGB in [-1,1] -> scaled latent (4, /8)

    def decode(self, latent: Tensor) -> Tensor: ...  # scaled latent -> RGB in about [-1,1]


class IntraNetwork(Protocol):
    def encode(self, x: Tensor, latent: Tensor) -> tuple[Tensor, Tensor]: ...  # -> y, z

    def quantize_z(self, z: Tensor) -> tuple[Tensor, Tensor]: ...  # -> z_hat, FSQ index

    def dequantize_z(self, index: Tensor) -> Tensor: ...

    def hyper_decode(self, z_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...  # -> params, reduced, z_semantic

    def spatial_prior(self, k: int, y_hat_sum: Tensor, reduced: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode(self, y_hat: Tensor, z_semantic: Tensor) -> tuple[Tensor, Tensor]: ...  # -> f_pix, tokens


class InterNetwork(Protocol):
    def context(self, ref_frame: Tensor, ref_feature: Tensor | None, reset: bool) -> tuple[Tensor, Tensor]: ...

    def encode(self, x: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor]: ...  # -> y, z

    def prior(self, z_hat: Tensor, ctx_t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]: ...

    def spatial_prior(self, y_hat_a: Tensor, params: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode(self, y_hat: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...  # -> feature, f_pix, tokens


class DiffusionNetwork(Protocol):
    def __call__(
        self, f_pix: Tensor, tokens: Tensor, prev_feats: Sequence[Tensor] | None, adapter: str
    ) -> tuple[Tensor, list[Tensor]]: ...  # -> x0 latent, down-block features


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
