"""Codec U-Net: SD1.5 ``UNet2DConditionModel`` + two LoRA adapters + codec heads + TCG motion fusion.

Built from :class:`s2vc.presets.UNetWidths`. For the official widths ``state_dict()`` has exactly the keys,
shapes and dtypes of the release's ``P_ckpts/*/model.safetensors`` (manifest ``P_model.tsv``):

* the diffusers ``UNet2DConditionModel`` submodules at top level (``conv_in``, ``time_embedding``,
  ``down_blocks``, ``mid_block``, ``up_blocks``, ``conv_norm_out``, ``conv_out``), with PEFT LoRA adapters
  ``iframe`` then ``pframe`` injected (``X.base_layer.*``, ``X.lora_A.<adapter>.weight``, ``X.lora_B.<adapter>.weight``);
* ``conv_in``: plain 3×3 conv ``in_channels → block_out[0]`` (no LoRA);
* ``vae_reduction``: maps the U-Net input to x_t (``latent`` channels, 4 in the release);
* ``down_blocks.{0,1,2}.pframe_motion_fusion``: :class:`MotionFusionBlock` (TCG).

``forward(f_pix, tokens, prev_feats, adapter) -> (x0, feats)`` runs one single-step (t = 999) evaluation.

``with_adapter(name)`` is the one public way to get "the U-Net with adapter X" (:class:`AdaptedUNet`): at run time a
view that shares every tensor (the 8 official rate points share one frozen base), and, through
:meth:`AdaptedUNet.merged`, the standalone network with the adapter folded into plain layers that exported graphs
and compiled engines use.

Inference fast path: in eval mode with autograd off (``torch.no_grad()`` / ``torch.inference_mode()``) every
LoRA-wrapped layer runs as one plain conv/linear with the adapter merged into a cached copy of its weight
(W + B·A·α/r), instead of PEFT's base + A + B wrapper. The copies are kept per adapter and rebuilt when any
LoRA-layer tensor changes (in-place update, reload, device/dtype move) or the module goes back to train mode; the
state dict is untouched. Results equal the PEFT path up to float rounding (the tests bound the difference).
Nothing is swapped per call: each LoRA layer's forward is, once and for all, a :class:`_LoRADispatch` that takes
the merged copy a call has put in a context variable, else PEFT's forward; so calls in other threads, with other
adapters or with autograd, are never affected by one another.
"""

from __future__ import annotations

import copy
import threading
import warnings
from contextvars import ContextVar
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import Conv2d as LoraConv2d
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from s2vc.networks.blocks import DCB5, conv1x1_mm as _conv1x1
from s2vc.presets import UNetWidths
from s2vc.protocol import Denoised

__all__ = [
    "ADAPTERS",
    "AdaptedUNet",
    "LORA_TARGETS",
    "TIMESTEP",
    "CodecUNet",
    "MotionFusionBlock",
    "VAEReduction",
    "alpha_bar",
    "eps_to_x0",
    "output_to_x0",
]

ADAPTERS: tuple[str, str] = ("iframe", "pframe")
LORA_TARGETS: tuple[str, ...] = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj",
)
TIMESTEP = 999
NUM_FUSED_BLOCKS = 3


def alpha_bar(t: int = TIMESTEP) -> float:
    """ᾱ_t of the SD1.5 schedule (scaled_linear, β 0.00085…0.012, 1000 steps), computed in float32."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
    return float(torch.cumprod(1.0 - betas, dim=0)[t])


ALPHA_BAR_999 = alpha_bar(TIMESTEP)


def eps_to_x0(x_t: torch.Tensor, eps: torch.Tensor, abar: float = ALPHA_BAR_999) -> torch.Tensor:
    """x0 = (x_t − √(1−ᾱ)·ε)/√ᾱ, computed in float64 and returned as float32."""
    a = torch.tensor(abar, dtype=torch.float64)
    x0 = (x_t.double() - torch.sqrt(1.0 - a) * eps.double()) / torch.sqrt(a)
    return x0.float()


def output_to_x0(widths: UNetWidths, x_t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """x0 from conv_out's output: through :func:`eps_to_x0` for ε-prediction (the release), as it is for x0-prediction."""
    return out.float() if widths.prediction == "x0" else eps_to_x0(x_t, out)


class VAEReduction(nn.Module):
    """GN → SiLU → 3×3 C→C → GN → SiLU → 3×3 C→out, plus a 1×1 C→out shortcut (GN eps 1e-6)."""

    def __init__(self, channels: int, out_channels: int = 4, groups: int = 32):
        super().__init__()
        self.blocks = nn.Sequential(
            nn.GroupNorm(groups, channels, eps=1e-6),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels, eps=1e-6),
            nn.SiLU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        self.short_cut = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x) + self.short_cut(x)


class MotionFusionBlock(nn.Module):
    """TCG motion fusion: fuses the previous frame's down-block output into the running U-Net tensor.

    p = DCB5(C→C/2)(prev); p = DCB5(C/2+M)(concat[p, 0_M]); p = DCB5(C/2+M → C/2)(p);
    f = DCB5(1.5C)(concat[x, p]); f = DCB5(1.5C → C)(f); out = x + zero_conv(f), zero_conv 1×1 without bias,
    initialised to zero (so a fresh block is the identity).
    """

    def __init__(self, channels: int, motion_channels: int):
        super().__init__()
        if channels % 2:
            raise ValueError(f"MotionFusionBlock needs an even channel count, got {channels}")
        half = channels // 2
        self.motion_channels = int(motion_channels)
        self.cond_reduce = DCB5(channels, half)
        self.prev_warp = nn.Sequential(
            DCB5(half + motion_channels, half + motion_channels),
            DCB5(half + motion_channels, half),
        )
        self.fusion = nn.Sequential(DCB5(channels + half, channels + half), DCB5(channels + half, channels))
        self.zero_conv = nn.Conv2d(channels, channels, 1, bias=False)
        nn.init.zeros_(self.zero_conv.weight)

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        p = self.cond_reduce(prev)
        if self.motion_channels:
            zeros = p.new_zeros((p.shape[0], self.motion_channels, p.shape[2], p.shape[3]))
            p = torch.cat([p, zeros], dim=1)
        p = self.prev_warp(p)
        f = self.fusion(torch.cat([x, p], dim=1))
        return x + self.zero_conv(f)


MERGED_INFERENCE_MAX_PARAMS = 100_000_000  # default limit for the merged-LoRA inference path (see CodecUNet)

#: The merged forwards of the fast-path call running in this thread/task: id(LoRA layer) -> forward.
_MERGED_CALL: ContextVar[dict[int, Callable[..., torch.Tensor]] | None] = ContextVar("s2vc_merged_lora", default=None)


class _LoRADispatch:
    """A LoRA layer's forward: the merged copy of the fast-path call running now (:data:`_MERGED_CALL`), else
    PEFT's own forward (base + B·A)."""

    def __init__(self, layer: BaseTunerLayer) -> None:
        self.layer = layer

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        merged = _MERGED_CALL.get()
        fn = merged.get(id(self.layer)) if merged is not None else None
        if fn is not None:
            return fn(x)
        return type(self.layer).forward(self.layer, x, *args, **kwargs)


class CodecUNet(nn.Module):
    """Single-step codec U-Net (ε-prediction at t = 999, returns x0)."""

    def __init__(self, widths: UNetWidths = UNetWidths()):
        super().__init__()
        self.widths = widths
        bo = tuple(widths.block_out_channels)
        if len(bo) != 4:
            raise ValueError(f"CodecUNet expects 4 U-Net levels, got block_out_channels={bo}")
        base = UNet2DConditionModel(
            sample_size=64,
            in_channels=widths.in_channels,  # conv_in: plain 3×3 in_channels → bo[0]
            out_channels=widths.latent,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=bo,
            layers_per_block=widths.layers_per_block,
            cross_attention_dim=widths.cross_attention_dim,
            attention_head_dim=widths.attention_head_dim,
            norm_num_groups=widths.norm_groups,
            norm_eps=1e-5,
            act_fn="silu",
            flip_sin_to_cos=True,
            freq_shift=0,
        )
        # Adopt the diffusers submodules so the state-dict keys stay at top level.
        self.conv_in = base.conv_in
        self.time_proj = base.time_proj  # no parameters
        self.time_embedding = base.time_embedding
        self.down_blocks = base.down_blocks
        self.mid_block = base.mid_block
        self.up_blocks = base.up_blocks
        self.conv_norm_out = base.conv_norm_out
        self.conv_act = base.conv_act
        self.conv_out = base.conv_out
        self.num_upsamplers = base.num_upsamplers
        del base

        # LoRA adapters (injected before the codec heads exist, so only U-Net layers are targeted).
        for name in ADAPTERS:
            cfg = LoraConfig(
                r=widths.lora_rank,
                lora_alpha=widths.lora_alpha,
                lora_dropout=0.0,
                target_modules=list(LORA_TARGETS),
                init_lora_weights=True,
            )
            with warnings.catch_warnings():
                # The second adapter triggers PEFT's "multiple adapters" notice: two adapters are intended.
                warnings.filterwarnings("ignore", message=".*peft_config.*")
                inject_adapter_in_model(cfg, self, adapter_name=name)
        self._lora_layers: list[BaseTunerLayer] = [m for m in self.modules() if isinstance(m, BaseTunerLayer)]

        # Codec heads.
        self.vae_reduction = VAEReduction(widths.in_channels, widths.latent, widths.norm_groups)
        for i in range(NUM_FUSED_BLOCKS):
            self.down_blocks[i].pframe_motion_fusion = MotionFusionBlock(bo[i], widths.motion_channels)

        # PEFT marks non-LoRA parameters frozen; a freshly built module is fully trainable like any nn.Module.
        # Freezing policy belongs to the training code.
        for p in self.parameters():
            p.requires_grad_(True)
        self._active_adapter: str | None = None
        self._fast_switch = all(hasattr(layer, "_active_adapter") for layer in self._lora_layers)
        self._set_adapter(ADAPTERS[0])
        if self._fast_switch and any(layer.active_adapters != [ADAPTERS[0]] for layer in self._lora_layers):
            self._fast_switch = False  # pragma: no cover
            self._active_adapter = None
            self._set_adapter(ADAPTERS[0])

        # Merged-LoRA inference path (see the module docstring).
        self._merge_ok = all(
            type(layer) in (LoraLinear, LoraConv2d)
            and not getattr(layer, "use_dora", {}).get(a, False)
            and isinstance(layer.lora_dropout[a], nn.Identity)
            for layer in self._lora_layers
            for a in ADAPTERS
        )
        # The modules holding LoRA-layer tensors (modules are never swapped; their parameters may be).
        self._lora_leaves: list[nn.Module] = [
            m for layer in self._lora_layers
            for m in (layer.base_layer, *(layer.lora_A[a] for a in ADAPTERS), *(layer.lora_B[a] for a in ADAPTERS))
        ]
        # Merged copies cost one extra copy of every LoRA-targeted weight per adapter: worth it for small models
        # on CPU (PEFT's per-layer overhead dominates), not for the official U-Net (≈ +6.8 GB in fp32). Toggle freely.
        self.merged_inference = sum(p.numel() for p in self.parameters()) <= MERGED_INFERENCE_MAX_PARAMS
        self._merge_lock = threading.RLock()  # guards the cache of merged copies (not the calls)
        self._merged: dict[str, dict[int, Callable[..., torch.Tensor]]] = {}
        self._merged_key: tuple | None = None
        for layer in self._lora_layers:
            layer.forward = _LoRADispatch(layer)
        self._views: dict[str, AdaptedUNet] = {}  # a plain dict: the views are not submodules

    # ------------------------------------------------------------------ pickling / copying
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_merge_lock"] = None
        state["_merged"] = {}
        state["_merged_key"] = None
        state["_views"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._merge_lock = threading.RLock()

    # ------------------------------------------------------------------ adapters
    @property
    def active_adapter(self) -> str | None:
        return self._active_adapter

    def with_adapter(self, adapter: str) -> "AdaptedUNet":
        """This U-Net with ``adapter`` (``iframe`` or ``pframe``): a view sharing every tensor (one per adapter)."""
        view = self._views.get(adapter)
        if view is None:
            view = self._views[adapter] = AdaptedUNet(self, adapter)
        return view

    def _merged_copy(self, adapter: str) -> "CodecUNet":
        """A copy (eval mode) with ``adapter`` merged into every LoRA-wrapped layer and the wrappers removed."""
        merged = copy.deepcopy(self).eval()
        with torch.no_grad():
            for name, layer in list(merged.named_modules()):
                if not isinstance(layer, BaseTunerLayer):
                    continue
                base = layer.base_layer
                base.weight.add_(layer.get_delta_weight(adapter).to(base.weight.dtype))
                parent_name, _, child = name.rpartition(".")
                setattr(merged.get_submodule(parent_name) if parent_name else merged, child, base)
        # No LoRA layers are left: adapter switches and the merged-weight fast path have nothing to do.
        merged._lora_layers, merged._lora_leaves = [], []
        merged.merged_inference = False
        merged.clear_merged_cache()
        return merged

    def _set_adapter(self, adapter: str) -> None:
        if adapter not in ADAPTERS:
            raise ValueError(f"unknown adapter {adapter!r}; expected one of {ADAPTERS}")
        if adapter == self._active_adapter:
            return
        if self._fast_switch:
            # Only the active-adapter list changes (PEFT's set_adapter would also rewrite requires_grad flags).
            for layer in self._lora_layers:
                layer._active_adapter = [adapter]
        else:  # pragma: no cover - fallback for PEFT versions without ``_active_adapter``
            for layer in self._lora_layers:
                flags = [p.requires_grad for p in layer.parameters()]
                layer.set_adapter(adapter)
                for p, f in zip(layer.parameters(), flags):
                    p.requires_grad_(f)
        self._active_adapter = adapter

    # ------------------------------------------------------------------ merged-LoRA fast path
    def train(self, mode: bool = True) -> "CodecUNet":
        self.clear_merged_cache()
        return super().train(mode)

    def clear_merged_cache(self) -> None:
        """Drop the merged-weight copies (they are rebuilt on the next fast forward)."""
        self._merged = {}
        self._merged_key = None

    def uses_merged_lora(self) -> bool:
        """Whether a forward called now takes the merged-LoRA fast path."""
        return self.merged_inference and self._merge_ok and not self.training and not torch.is_grad_enabled()

    def _lora_tensors(self) -> list[torch.Tensor]:
        return [t for m in self._lora_leaves for t in m._parameters.values() if t is not None]

    def _weights_key(self) -> tuple:
        # In-place updates bump ``_version``; swapped Parameter objects change ``id``; ``.data`` moves
        # (``.to()``, ``.float()``…) go through ``_apply``, which clears the cache.
        tensors = self._lora_tensors()
        try:
            return tuple(map(id, tensors)), tuple(t._version for t in tensors)
        except RuntimeError:  # inference-mode parameters have no version counter: never reuse the cache
            return (object(),)

    def _apply(self, fn, recurse=True):
        self.clear_merged_cache()
        return super()._apply(fn, recurse)

    def _merged_forwards(self, adapter: str) -> dict[int, Callable[..., torch.Tensor]]:
        """The merged forward of every LoRA layer for ``adapter``, by ``id(layer)`` (built once, cached)."""
        with self._merge_lock:
            key = self._weights_key()
            if key != self._merged_key:
                self._merged = {}
                self._merged_key = key
            fns = self._merged.get(adapter)
            if fns is None:
                fns = {}
                # Plain tensors even when called under inference mode, so the copies can be used in any no-grad mode.
                with torch.inference_mode(False), torch.no_grad():
                    for layer in self._lora_layers:
                        base = layer.base_layer
                        weight = (base.weight + layer.get_delta_weight(adapter).to(base.weight.dtype)).contiguous()
                        bias = None if base.bias is None else base.bias.detach().clone()
                        if isinstance(base, nn.Linear):
                            fn = lambda x, _w=weight, _b=bias: F.linear(x, _w, _b)  # noqa: E731
                        elif base.kernel_size == (1, 1) and base.stride == (1, 1) and base.padding == (0, 0) \
                                and base.groups == 1:
                            fn = lambda x, _w=weight.flatten(1), _b=bias: _conv1x1(x, _w, _b)  # noqa: E731
                        else:
                            fn = lambda x, _c=base, _w=weight, _b=bias: _c._conv_forward(x, _w, _b)  # noqa: E731
                        fns[id(layer)] = fn
                self._merged[adapter] = fns
            return fns

    def lora_layers(self) -> list[BaseTunerLayer]:
        """The PEFT-wrapped layers (278 for the official widths)."""
        return list(self._lora_layers)

    def motion_fusion(self, i: int) -> MotionFusionBlock:
        return self.down_blocks[i].pframe_motion_fusion

    # ------------------------------------------------------------------ forward
    def time_embed(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        t = torch.full((batch,), TIMESTEP, dtype=torch.long, device=device)
        return self.time_embedding(self.time_proj(t).to(dtype))

    def forward_eps(
        self,
        f_pix: torch.Tensor,
        tokens: torch.Tensor,
        prev_feats: Sequence[torch.Tensor] | None = None,
        adapter: str = "pframe",
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Returns (ε, x_t, feats) with feats the pre-fusion outputs of down blocks 0, 1, 2."""
        if not self.uses_merged_lora():
            return self._forward_eps(f_pix, tokens, prev_feats, adapter)
        if adapter not in ADAPTERS:
            raise ValueError(f"unknown adapter {adapter!r}; expected one of {ADAPTERS}")
        token = _MERGED_CALL.set(self._merged_forwards(adapter))  # this call's LoRA layers take the merged copies
        try:
            return self._forward_eps(f_pix, tokens, prev_feats, adapter)
        finally:
            _MERGED_CALL.reset(token)

    def _forward_eps(
        self,
        f_pix: torch.Tensor,
        tokens: torch.Tensor,
        prev_feats: Sequence[torch.Tensor] | None = None,
        adapter: str = "pframe",
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The forward itself (PEFT LoRA wrappers, or the merged forwards when :meth:`forward_eps` installed them)."""
        self._set_adapter(adapter)
        if f_pix.ndim != 4 or tokens.ndim != 3 or tokens.shape[0] != f_pix.shape[0]:
            raise ValueError(f"bad input shapes: f_pix {tuple(f_pix.shape)}, tokens {tuple(tokens.shape)}")
        if prev_feats is not None:
            prev_feats = list(prev_feats)  # never mutate the caller's container
            if len(prev_feats) != NUM_FUSED_BLOCKS:
                raise ValueError(f"prev_feats must hold {NUM_FUSED_BLOCKS} tensors, got {len(prev_feats)}")

        x_t = self.vae_reduction(f_pix)
        emb = self.time_embed(x_t.shape[0], x_t.device, x_t.dtype)

        up_factor = 2 ** self.num_upsamplers
        forward_upsample_size = any(d % up_factor for d in f_pix.shape[-2:])

        # conv_in takes the U-Net input itself (C_diff channels); x_t only enters the x0 formula.
        sample = self.conv_in(f_pix)
        skips: tuple[torch.Tensor, ...] = (sample,)
        feats: list[torch.Tensor] = []
        for i, block in enumerate(self.down_blocks):
            if getattr(block, "has_cross_attention", False):
                sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=tokens)
            else:
                sample, res = block(hidden_states=sample, temb=emb)
            skips += res  # skip connections keep the unfused values
            if i < NUM_FUSED_BLOCKS:
                feats.append(sample)
                if prev_feats is not None:
                    prev = prev_feats[i]
                    if prev.shape != sample.shape:
                        raise ValueError(
                            f"prev_feats[{i}] has shape {tuple(prev.shape)}, expected {tuple(sample.shape)}"
                        )
                    sample = block.pframe_motion_fusion(sample, prev)

        sample = self.mid_block(sample, emb, encoder_hidden_states=tokens)

        upsample_size = None
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            res, skips = skips[-n:], skips[:-n]
            if i < len(self.up_blocks) - 1 and forward_upsample_size:
                upsample_size = skips[-1].shape[2:]
            if getattr(block, "has_cross_attention", False):
                sample = block(
                    hidden_states=sample, temb=emb, res_hidden_states_tuple=res,
                    encoder_hidden_states=tokens, upsample_size=upsample_size,
                )
            else:
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size)

        sample = self.conv_act(self.conv_norm_out(sample))
        eps = self.conv_out(sample)
        return eps, x_t, feats

    def forward(
        self,
        f_pix: torch.Tensor,
        tokens: torch.Tensor,
        prev_feats: Sequence[torch.Tensor] | None = None,
        adapter: str = "pframe",
    ) -> Denoised:
        """(B, in_ch, h, w) U-Net input, (B, L, D) tokens, previous pre-fusion feats or None, adapter →
        (x0 (B, latent, h, w) float32, feats [h0, h1, h2] pre-fusion down-block outputs at h/2, h/4, h/8).

        With ``prediction="x0"`` (a preset choice, not the release's) conv_out's output is x0 itself and x_t is unused.
        """
        out, x_t, feats = self.forward_eps(f_pix, tokens, prev_feats, adapter)
        return Denoised(output_to_x0(self.widths, x_t, out), feats)


class AdaptedUNet(nn.Module):
    """The codec U-Net with one LoRA adapter (:meth:`CodecUNet.with_adapter`).

    A view: its one submodule is the :class:`CodecUNet` itself, so nothing is copied (the official rate points share
    one frozen base), and a call runs that U-Net with this adapter (the merged-weight fast path or PEFT's wrappers).
    :meth:`merged` makes the standalone network that exports and compiled engines use.
    """

    def __init__(self, unet: CodecUNet, adapter: str):
        if adapter not in ADAPTERS:
            raise ValueError(f"unknown adapter {adapter!r}; expected one of {ADAPTERS}")
        super().__init__()
        self.unet = unet
        self.adapter = adapter

    def forward_eps(
        self, f_pix: torch.Tensor, tokens: torch.Tensor, prev_feats: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(ε, x_t, feats): :meth:`CodecUNet.forward_eps` with this adapter."""
        return self.unet.forward_eps(f_pix, tokens, prev_feats, self.adapter)

    def forward(
        self, f_pix: torch.Tensor, tokens: torch.Tensor, prev_feats: Sequence[torch.Tensor] | None = None,
    ) -> Denoised:
        """(x0, feats): :meth:`CodecUNet.forward` with this adapter."""
        return self.unet(f_pix, tokens, prev_feats, self.adapter)

    def merged(self) -> "AdaptedUNet":
        """A standalone copy (eval mode) whose LoRA-wrapped layers are plain layers with weights ``W + B·A·α/r`` of this
        adapter, no PEFT wrappers: an exported graph holds just these. The source is not changed."""
        return AdaptedUNet(self.unet._merged_copy(self.adapter), self.adapter)
