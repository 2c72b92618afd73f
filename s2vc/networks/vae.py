"""SD2.1-style VAE (diffusers ``AutoencoderKL``) with windowed mid-block attention.

The encoder and decoder mid-block attention (GroupNorm + single-head attention + residual) is applied
independently to non-overlapping ``attn_window``×``attn_window`` tiles of the /8 feature map, tiled from the
top-left; edge tiles are partial. With ``patch_size`` p > 1 (small presets) the encoder first folds p×p pixel blocks into
3p² channels and the decoder's output is unfolded back (``pixel_unshuffle`` / ``pixel_shuffle``), so the diffusers
model runs at /p and no conv runs at full resolution. Everything else is the stock diffusers model, and the state dict keys are the
stock ``AutoencoderKL`` keys at top level (``encoder.*``, ``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*``).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from torch import nn

from s2vc.presets import VAEWidths

__all__ = ["CodecVAE", "WindowedAttnProcessor", "window_slices"]

LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


def window_slices(size: int, window: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of non-overlapping windows covering ``range(size)`` from 0; the last may be partial."""
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    return [(s, min(s + window, size)) for s in range(0, size, window)]


class WindowedAttnProcessor:
    """diffusers attention processor running the wrapped processor independently on spatial windows.

    Only 4-D (B, C, H, W) self-attention input is windowed (the whole ``Attention`` step, its GroupNorm and
    residual included, sees one window at a time). Windows of equal size are batched together; as GroupNorm and
    attention are per sample this equals running them one by one.
    """

    def __init__(self, window: int, inner: Any | None = None):
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.window = int(window)
        self.inner = inner if inner is not None else AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if hidden_states.ndim != 4 or encoder_hidden_states is not None or attention_mask is not None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        b, _, h, w = hidden_states.shape
        rows = window_slices(h, self.window)
        cols = window_slices(w, self.window)
        if len(rows) == 1 and len(cols) == 1:
            return self.inner(attn, hidden_states, None, None, temb, *args, **kwargs)
        groups: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
        for r0, r1 in rows:
            for c0, c1 in cols:
                groups.setdefault((r1 - r0, c1 - c0), []).append((r0, r1, c0, c1))
        out_rows: dict[tuple[int, int], torch.Tensor] = {}
        for tiles in groups.values():
            batch = torch.cat([hidden_states[:, :, r0:r1, c0:c1] for r0, r1, c0, c1 in tiles], dim=0)
            res = self.inner(attn, batch, None, None, temb, *args, **kwargs)
            for i, (r0, r1, c0, c1) in enumerate(tiles):
                out_rows[(r0, c0)] = res[i * b:(i + 1) * b]
        # Reassemble without in-place writes (autograd friendly).
        return torch.cat(
            [torch.cat([out_rows[(r0, c0)] for c0, _ in cols], dim=3) for r0, _ in rows], dim=2
        )


class CodecVAE(nn.Module):
    """``AutoencoderKL`` (4 down/up blocks, KL latent) with windowed mid-block attention.

    Submodules ``encoder``, ``decoder``, ``quant_conv``, ``post_quant_conv`` are the diffusers ones, so
    ``state_dict()`` has exactly the keys of a diffusers ``AutoencoderKL`` (SD2.1 VAE for the official widths).
    """

    def __init__(self, widths: VAEWidths = VAEWidths()):
        super().__init__()
        self.widths = widths
        n = len(widths.block_out_channels)
        self.patch_size = int(widths.patch_size)
        kl = AutoencoderKL(
            in_channels=3 * self.patch_size**2,
            out_channels=3 * self.patch_size**2,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(widths.block_out_channels),
            layers_per_block=widths.layers_per_block,
            act_fn="silu",
            latent_channels=widths.latent_channels,
            norm_num_groups=widths.norm_groups,
            scaling_factor=widths.scaling_factor,
        )
        # Adopt the diffusers submodules so the keys stay at top level.
        self.encoder = kl.encoder
        self.decoder = kl.decoder
        self.quant_conv = kl.quant_conv
        self.post_quant_conv = kl.post_quant_conv
        self.scaling_factor = float(widths.scaling_factor)
        self.attn_window = int(widths.attn_window)
        self.set_attn_window(self.attn_window)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_config_dict(cls, config: Mapping[str, Any], attn_window: int = 16) -> "CodecVAE":
        """Build from a diffusers ``AutoencoderKL`` ``config.json`` dict (e.g. SD2.1 ``vae/config.json``)."""
        for key, expected in (("in_channels", 3), ("out_channels", 3), ("act_fn", "silu")):
            if config.get(key, expected) != expected:
                raise ValueError(f"unsupported VAE config: {key}={config[key]!r} (expected {expected!r})")
        for key in ("down_block_types", "up_block_types"):
            kinds = set(config.get(key, ()))
            if kinds and kinds != {"DownEncoderBlock2D" if key.startswith("down") else "UpDecoderBlock2D"}:
                raise ValueError(f"unsupported VAE config: {key}={config[key]!r}")
        for key in ("shift_factor", "latents_mean", "latents_std"):
            if config.get(key) is not None:
                raise ValueError(f"unsupported VAE config: {key}={config[key]!r}")
        for key in ("use_quant_conv", "use_post_quant_conv", "mid_block_add_attention"):
            if not config.get(key, True):
                raise ValueError(f"unsupported VAE config: {key}=False")
        widths = VAEWidths(
            block_out_channels=tuple(config.get("block_out_channels", VAEWidths.block_out_channels)),
            layers_per_block=int(config.get("layers_per_block", VAEWidths.layers_per_block)),
            latent_channels=int(config.get("latent_channels", VAEWidths.latent_channels)),
            norm_groups=int(config.get("norm_num_groups", VAEWidths.norm_groups)),
            scaling_factor=float(config.get("scaling_factor", VAEWidths.scaling_factor)),
            attn_window=int(attn_window),
        )
        return cls(widths)

    def mid_attentions(self) -> list[Attention]:
        """The two windowed attentions (encoder and decoder mid block)."""
        return [a for blk in (self.encoder.mid_block, self.decoder.mid_block) for a in blk.attentions if a is not None]

    def set_attn_window(self, window: int) -> None:
        self.attn_window = int(window)
        for attn in self.mid_attentions():
            attn.set_processor(WindowedAttnProcessor(self.attn_window))

    # ------------------------------------------------------------------ codec API
    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of the posterior, logvar clamped to [-30, 20]; unscaled latent units."""
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)
        m = self.quant_conv(self.encoder(x))
        mean, logvar = torch.chunk(m, 2, dim=1)
        return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def encode(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """RGB in [-1,1] (B,3,H,W) → scaled latent (B,4,H/8,W/8): ``s·mean`` or ``s·(mean + std·ε)``."""
        mean, logvar = self.moments(x)
        if sample:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            mean = mean + torch.exp(0.5 * logvar) * eps
        return self.scaling_factor * mean

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled latent → RGB, roughly in [-1,1] (not clamped)."""
        picture = self.decoder(self.post_quant_conv(latent / self.scaling_factor))
        return F.pixel_shuffle(picture, self.patch_size) if self.patch_size > 1 else picture

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
