"""What each network's graph is: one spec per network, read by the engines that run graphs and by the exporter.

Every network of :mod:`s2vc.protocol` is a pure function ``(inputs, state tensors) -> (outputs, new state
tensors)``; a spec names its inputs and outputs, gives their layouts (from which the dynamic axes, sample inputs
and TensorRT shape profiles follow) and wraps the torch network as a module whose ``forward`` is that function.
Stream state is explicit I/O: ``ref_frame``/``ref_feature`` go into the inter context, the U-Net takes the
previous down-block features (``prev_feat0..2``) and returns the new ones (``feat0..2``).

Layouts use ``"B"`` (batch), ``"H8"``/``"W8"`` (padded frame height/width divided by 8; likewise 1, 16, 32, 64)
and ``"T"`` (semantic tokens, (H/64)·(W/64)); integers are fixed channel counts. Frames are padded to multiples
of 64, so every spatial axis is an integer.

Graph I/O is float32 in every precision: an fp16/bf16 graph casts at its boundary. The entropy-parameter
networks (``entropy_params``: the intra hyper decoder and spatial priors, the inter prior and spatial prior)
are exported and run in fp32 whatever the precision, because their outputs choose the entropy models.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from .presets import Preset

Layout = tuple[int | str, ...]

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def precision_dtype(precision: str) -> torch.dtype:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}") from None


def _resolve(dim: int | str, batch: int, height: int, width: int) -> int:
    if isinstance(dim, int):
        return dim
    if dim == "B":
        return batch
    if dim == "T":
        return (height // 64) * (width // 64)
    size = height if dim[0] == "H" else width
    return size // int(dim[1:])


def _axis_name(dim: int | str) -> str | None:
    if isinstance(dim, int):
        return None
    if dim == "B":
        return "batch"
    if dim == "T":
        return "tokens"
    return ("height" if dim[0] == "H" else "width") + (f"_{dim[1:]}" if dim[1:] != "1" else "")


class NetworkSpec:
    """Base of the specs. Subclasses set the names and flags and implement :meth:`layouts`, :meth:`owner` and
    :meth:`call`."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    per_rate = True  # one graph per rate point (the VAE is shared by all rate points)
    dynamic_hw = True  # False: one graph per padded frame size (the VAE's windowed attention tiles by size)
    entropy_params = False  # the entropy-parameter path: fp32 in every precision
    adapter: str | None = None  # the U-Net's LoRA adapter, merged into a standalone network

    def layouts(self, preset: Preset) -> dict[str, Layout]:
        """Layout of every input and output, by name."""
        raise NotImplementedError

    def owner(self, model, rate: int | None) -> nn.Module:
        """The torch network this graph is cut from (``model`` is an :class:`~s2vc.model.S2VCModel`), as the model
        holds it: the same object on every call, sharing the model's tensors."""
        raise NotImplementedError

    def standalone(self, model, rate: int | None) -> nn.Module:
        """A copy of :meth:`owner` that shares nothing with ``model`` (to cast, compile or export), the U-Net's
        adapter merged."""
        return copy.deepcopy(self.owner(model, rate))

    def call(self, owner: nn.Module, *inputs: Tensor) -> tuple[Tensor, ...]:
        """The network function: inputs in :attr:`inputs` order → outputs in :attr:`outputs` order."""
        raise NotImplementedError

    # ------------------------------------------------------------------ derived
    def module(self, owner: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
        """``owner`` (already in ``dtype``) wrapped as a module with float32 I/O whose forward is :meth:`call`."""
        return SpecModule(self, owner, dtype)

    def shapes(self, preset: Preset, batch: int, height: int, width: int, names: Sequence[str] | None = None) -> dict[str, tuple[int, ...]]:
        """Concrete shapes of ``names`` (default: the inputs) for a padded frame of ``height``×``width``."""
        if height % 64 or width % 64 or height <= 0 or width <= 0:
            raise ValueError(f"padded frame sizes are positive multiples of 64, got {width}x{height}")
        layouts = self.layouts(preset)
        return {n: tuple(_resolve(d, batch, height, width) for d in layouts[n]) for n in (names or self.inputs)}

    def dynamic_axes(self, preset: Preset) -> dict[str, dict[int, str]]:
        """Symbolic axes of every input and output (batch always; height/width/tokens when :attr:`dynamic_hw`)."""
        axes = {}
        for name, layout in self.layouts(preset).items():
            named = {i: _axis_name(d) for i, d in enumerate(layout)}
            axes[name] = {i: a for i, a in named.items() if a is not None and (self.dynamic_hw or a == "batch")}
        return axes

    def sample_inputs(self, preset: Preset, batch: int = 2, height: int = 128, width: int = 128, seed: int = 0) -> tuple[Tensor, ...]:
        """Random float32 inputs of the right shapes (the export traces with these)."""
        gen = torch.Generator().manual_seed(seed)
        return tuple(torch.randn(shape, generator=gen) for shape in self.shapes(preset, batch, height, width).values())

    def frame_size(self, preset: Preset, inputs: Sequence[Tensor]) -> tuple[int, int]:
        """The padded frame (height, width) that ``inputs`` belong to."""
        layouts = self.layouts(preset)
        for name, x in zip(self.inputs, inputs):
            layout = layouts[name]
            if len(layout) == 4 and isinstance(layout[2], str):
                return x.shape[2] * int(layout[2][1:]), x.shape[3] * int(layout[3][1:])
        raise ValueError(f"{self.name}: no spatial input to read the frame size from")

    def graph_name(self, rate: int | None, size: tuple[int, int] | None = None) -> str:
        """File stem of one exported graph: ``name[.rN][.WxH]``."""
        stem = self.name if not self.per_rate else f"{self.name}.r{rate}"
        return stem if self.dynamic_hw or size is None else f"{stem}.{size[1]}x{size[0]}"


class SpecModule(nn.Module):
    """A spec's network function as a module: casts float32 inputs to the owner's dtype, outputs back to float32."""

    def __init__(self, spec: NetworkSpec, owner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.spec = spec
        self.owner = owner
        self.dtype = dtype

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        outputs = self.spec.call(self.owner, *(x.to(self.dtype) for x in inputs))
        return tuple(y.float() for y in outputs)


# ---------------------------------------------------------------------------------------------------- VAE
class VAEEncoderSpec(NetworkSpec):
    name, inputs, outputs = "vae_encoder", ("x",), ("latent",)
    per_rate, dynamic_hw = False, False

    def layouts(self, p: Preset) -> dict[str, Layout]:
        return {"x": ("B", 3, "H1", "W1"), "latent": ("B", p.vae.latent_channels, "H8", "W8")}

    def owner(self, model, rate):
        return model.vae

    def call(self, vae, x):
        return (vae.encode(x),)


class VAEDecoderSpec(NetworkSpec):
    name, inputs, outputs = "vae_decoder", ("latent",), ("image",)
    per_rate, dynamic_hw = False, False

    def layouts(self, p: Preset) -> dict[str, Layout]:
        return {"latent": ("B", p.vae.latent_channels, "H8", "W8"), "image": ("B", 3, "H1", "W1")}

    def owner(self, model, rate):
        return model.vae

    def call(self, vae, latent):
        return (vae.decode(latent),)


# ---------------------------------------------------------------------------------------------------- intra
class _IntraSpec(NetworkSpec):
    def owner(self, model, rate):
        return model.rate(rate).intra


class IntraEncoderSpec(_IntraSpec):
    name, inputs, outputs = "intra_encoder", ("x", "latent"), ("y", "z")

    def layouts(self, p: Preset) -> dict[str, Layout]:
        return {"x": ("B", 3, "H1", "W1"), "latent": ("B", p.vae.latent_channels, "H8", "W8"),
                "y": ("B", p.intra.y, "H16", "W16"), "z": ("B", len(p.intra.fsq_levels), "H64", "W64")}

    def call(self, intra, x, latent):
        return intra.encode(x, latent)


class IntraHyperDecoderSpec(_IntraSpec):
    name, inputs, outputs = "intra_hyper_decoder", ("z_hat",), ("params", "reduced", "z_semantic")
    entropy_params = True

    def layouts(self, p: Preset) -> dict[str, Layout]:
        y = p.intra.y
        return {"z_hat": ("B", len(p.intra.fsq_levels), "H64", "W64"), "params": ("B", 2 * y, "H16", "W16"),
                "reduced": ("B", y, "H16", "W16"), "z_semantic": ("B", y, "H64", "W64")}

    def call(self, intra, z_hat):
        return intra.hyper_decode(z_hat)


class IntraSpatialPriorSpec(_IntraSpec):
    """Pass ``k`` (1, 2 or 3) of the intra spatial prior: one graph per pass (each has its own adaptor)."""

    inputs, outputs = ("y_hat_sum", "reduced"), ("scales", "means")
    entropy_params = True

    def __init__(self, k: int):
        self.k = k
        self.name = f"intra_spatial_prior_{k}"

    def layouts(self, p: Preset) -> dict[str, Layout]:
        return {n: ("B", p.intra.y, "H16", "W16") for n in self.inputs + self.outputs}

    def call(self, intra, y_hat_sum, reduced):
        return intra.spatial_prior(self.k, y_hat_sum, reduced)


class IntraDecoderSpec(_IntraSpec):
    name, inputs, outputs = "intra_decoder", ("y_hat", "z_semantic"), ("f_pix", "tokens")

    def layouts(self, p: Preset) -> dict[str, Layout]:
        y = p.intra.y
        return {"y_hat": ("B", y, "H16", "W16"), "z_semantic": ("B", y, "H64", "W64"),
                "f_pix": ("B", p.intra.ctrl, "H8", "W8"), "tokens": ("B", "T", p.intra.semantic)}

    def call(self, intra, y_hat, z_semantic):
        return intra.decode(y_hat, z_semantic)


# ---------------------------------------------------------------------------------------------------- inter
class _InterSpec(NetworkSpec):
    def owner(self, model, rate):
        return model.rate(rate).inter


class InterContextSpec(_InterSpec):
    """The P-frame context from the buffer: from ``ref_frame`` (x0 latent) on a reset, else from ``ref_feature``."""

    outputs = ("ctx", "ctx_t")

    def __init__(self, reset: bool):
        self.reset = reset
        self.name = "inter_context_reset" if reset else "inter_context"
        self.inputs = ("ref_frame",) if reset else ("ref_feature",)

    def layouts(self, p: Preset) -> dict[str, Layout]:
        ref = p.vae.latent_channels if self.reset else p.inter.ch
        return {self.inputs[0]: ("B", ref, "H8", "W8"), "ctx": ("B", p.inter.ch, "H8", "W8"), "ctx_t": ("B", p.inter.ch, "H8", "W8")}

    def call(self, inter, ref):
        return inter.context(ref, None, True) if self.reset else inter.context(None, ref, False)


class InterEncoderSpec(_InterSpec):
    name, inputs, outputs = "inter_encoder", ("x", "ctx"), ("y", "z")

    def layouts(self, p: Preset) -> dict[str, Layout]:
        n = p.inter
        return {"x": ("B", 3, "H1", "W1"), "ctx": ("B", n.ch, "H8", "W8"), "y": ("B", n.y, "H16", "W16"), "z": ("B", n.z, "H64", "W64")}

    def call(self, inter, x, ctx):
        return inter.encode(x, ctx)


class InterPriorSpec(_InterSpec):
    name, inputs, outputs = "inter_prior", ("z_hat", "ctx_t"), ("q_dec", "scales", "means", "params")
    entropy_params = True

    def layouts(self, p: Preset) -> dict[str, Layout]:
        n = p.inter
        return {"z_hat": ("B", n.z, "H64", "W64"), "ctx_t": ("B", n.ch, "H8", "W8"), "q_dec": ("B", n.y, "H16", "W16"),
                "scales": ("B", n.y, "H16", "W16"), "means": ("B", n.y, "H16", "W16"), "params": ("B", 3 * n.y, "H16", "W16")}

    def call(self, inter, z_hat, ctx_t):
        return inter.prior(z_hat, ctx_t)


class InterSpatialPriorSpec(_InterSpec):
    name, inputs, outputs = "inter_spatial_prior", ("y_hat_a", "params"), ("scales", "means")
    entropy_params = True

    def layouts(self, p: Preset) -> dict[str, Layout]:
        y = p.inter.y
        return {"y_hat_a": ("B", y, "H16", "W16"), "params": ("B", 3 * y, "H16", "W16"),
                "scales": ("B", y, "H16", "W16"), "means": ("B", y, "H16", "W16")}

    def call(self, inter, y_hat_a, params):
        return inter.spatial_prior(y_hat_a, params)


class InterDecoderSpec(_InterSpec):
    name, inputs, outputs = "inter_decoder", ("y_hat", "ctx"), ("feature", "f_pix", "tokens")

    def layouts(self, p: Preset) -> dict[str, Layout]:
        n = p.inter
        return {"y_hat": ("B", n.y, "H16", "W16"), "ctx": ("B", n.ch, "H8", "W8"), "feature": ("B", n.ch, "H8", "W8"),
                "f_pix": ("B", n.ctrl, "H8", "W8"), "tokens": ("B", "T", n.semantic)}

    def call(self, inter, y_hat, ctx):
        return inter.decode(y_hat, ctx)


# ---------------------------------------------------------------------------------------------------- U-Net
FEATURE_SCALES = ("16", "32", "64")  # down blocks 0..2 of the U-Net run at /16, /32, /64 of the frame


class UNetSpec(NetworkSpec):
    """The codec U-Net with one LoRA adapter (:meth:`~s2vc.networks.unet.CodecUNet.with_adapter`), ε-prediction at
    t = 999; its standalone network, which graphs are exported from, has the adapter merged.

    ``iframe`` has no temporal fusion; ``pframe`` takes the previous frame's down-block features (the TCG
    diffusion buffer). Outputs ε and x_t, not x0: x0 = (x_t − √(1−ᾱ)·ε)/√ᾱ is computed in float64 by the runtime
    (:func:`s2vc.networks.unet.eps_to_x0`), which TensorRT cannot do inside a graph.
    """

    def __init__(self, adapter: str):
        self.adapter = adapter
        self.name = f"unet_{adapter}"
        prev = ("prev_feat0", "prev_feat1", "prev_feat2") if adapter == "pframe" else ()
        self.inputs = ("f_pix", "tokens", *prev)
        self.outputs = ("eps", "x_t", "feat0", "feat1", "feat2")

    def layouts(self, p: Preset) -> dict[str, Layout]:
        u = p.unet
        out = {"f_pix": ("B", u.in_channels, "H8", "W8"), "tokens": ("B", "T", u.cross_attention_dim),
               "eps": ("B", u.latent, "H8", "W8"), "x_t": ("B", u.latent, "H8", "W8")}
        for i, scale in enumerate(FEATURE_SCALES):
            out[f"feat{i}"] = out[f"prev_feat{i}"] = ("B", u.block_out_channels[i], f"H{scale}", f"W{scale}")
        return out

    def owner(self, model, rate):
        return model.rate(rate).unet.with_adapter(self.adapter)

    def standalone(self, model, rate):
        return self.owner(model, rate).merged()

    def call(self, adapted, f_pix, tokens, *prev):
        eps, x_t, feats = adapted.forward_eps(f_pix, tokens, list(prev) if prev else None)
        return (eps, x_t, *feats)


SPECS: dict[str, NetworkSpec] = {
    spec.name: spec
    for spec in (
        VAEEncoderSpec(), VAEDecoderSpec(),
        IntraEncoderSpec(), IntraHyperDecoderSpec(), *(IntraSpatialPriorSpec(k) for k in (1, 2, 3)), IntraDecoderSpec(),
        InterContextSpec(reset=True), InterContextSpec(reset=False), InterEncoderSpec(), InterPriorSpec(),
        InterSpatialPriorSpec(), InterDecoderSpec(),
        UNetSpec("iframe"), UNetSpec("pframe"),
    )
}

#: The networks a decoder runs (an encoder runs all of them).
DECODER_SPECS = tuple(n for n in SPECS if n not in ("vae_encoder", "intra_encoder", "inter_encoder"))

