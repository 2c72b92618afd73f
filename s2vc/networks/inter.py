"""DCVC-RT-style inter codec (``DMC_OneDC`` of the release, ARCHITECTURE.md §4).

The module only computes tensors; rounding, clamping, masking and entropy coding live in the step API.

Shapes ("/k" = H/k × W/k of the 64-aligned frame): x_emb, ctx, ctx_t, feature ``ch`` × /8; y, ŷ ``y`` × /16;
z ``z`` × /64; common params 3y × /16; f_pix ``ctrl`` × /8; semantic tokens (H/64·W/64) × ``semantic``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..presets import InterWidths
from ..protocol import Context, GaussianParams, InterPrior, InterSynthesis, Latents
from .blocks import DCB4, DCB5, RBS, RBU, AttnBlock, ConvFFN, ResBlock, conv1x1

__all__ = ["InterCodec", "FactorizedPrior", "checkerboard_masks"]


def checkerboard_masks(
    channels: int, h: int, w: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask_a, mask_b), each (1, channels, h, w) float32 0/1 (§4.7).

    c0 = positions with (row + col) even, c1 = odd. mask_a = c0 on the first half of the channels and c1 on the
    second half; mask_b = 1 − mask_a.
    """
    if channels % 2 != 0:
        raise ValueError(f"checkerboard_masks needs an even channel count, got {channels}")
    r = torch.arange(h, device=device).view(h, 1)
    c = torch.arange(w, device=device).view(1, w)
    c0 = ((r + c) % 2 == 0).to(torch.float32)
    c1 = 1.0 - c0
    half = channels // 2
    mask_a = torch.cat([c0.expand(half, h, w), c1.expand(half, h, w)], dim=0).unsqueeze(0)
    return mask_a.contiguous(), (1.0 - mask_a).contiguous()


class _FactorizedLayer(nn.Module):
    """One per-channel layer of the factorised density: x·softplus(h) + b (+ tanh(x)·tanh(a) when ``a`` exists)."""

    def __init__(self, channels: int, final: bool, init_h: float):
        super().__init__()
        self.h = nn.Parameter(torch.full((1, channels, 1, 1), init_h))
        self.b = nn.Parameter(torch.empty(1, channels, 1, 1).uniform_(-0.5, 0.5))
        self.a = None if final else nn.Parameter(torch.zeros(1, channels, 1, 1))


class FactorizedPrior(nn.Module):
    """Per-channel factorised prior of ẑ (``bit_estimator_z``, §4.8): CDF(x) = sigmoid(f4∘f3∘f2∘f1(x)).

    f_i(x) = x·softplus(h_i) + b_i, then x + tanh(x)·tanh(a_i) for f1..f3; f4 has no tanh term.
    Keys ``f1..f4`` with ``h``, ``b`` (and ``a`` for f1..f3), each (1, C, 1, 1).
    Initialisation gives a broad density (overall slope 1/10, as CompressAI's EntropyBottleneck).
    """

    def __init__(self, channels: int, init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        scale = init_scale ** (1.0 / 4.0)
        init_h = math.log(math.expm1(1.0 / scale))
        self.f1 = _FactorizedLayer(channels, False, init_h)
        self.f2 = _FactorizedLayer(channels, False, init_h)
        self.f3 = _FactorizedLayer(channels, False, init_h)
        self.f4 = _FactorizedLayer(channels, True, init_h)

    @staticmethod
    def _logits(x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
        for h, b, a in layers:
            x = x * F.softplus(h) + b
            if a is not None:
                x = x + torch.tanh(x) * torch.tanh(a)
        return x

    def _params(
        self, dtype: torch.dtype | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(h, b, a) of f1..f4; with ``dtype`` a detached copy in that dtype."""

        def cast(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None or dtype is None:
                return t
            return t.detach().to(dtype)

        return [(cast(f.h), cast(f.b), cast(f.a)) for f in (self.f1, self.f2, self.f3, self.f4)]

    def likelihood(self, z_hat: torch.Tensor, min_likelihood: float = 1e-9) -> torch.Tensor:
        """P(ẑ) per element (float32, differentiable): CDF(ẑ+½) − CDF(ẑ−½), lower-bounded by ``min_likelihood``."""
        params = self._params()
        lower = self._logits(z_hat - 0.5, params)
        upper = self._logits(z_hat + 0.5, params)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail where sigmoid is accurate
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lik.clamp_min(min_likelihood)

    def forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        return self.likelihood(z_hat)

    @torch.no_grad()
    def pmf_table(self, symbol_min: int, symbol_max: int) -> torch.Tensor:
        """float64 (C, symbol_max − symbol_min + 1) table: P(k) = CDF(k+½) − CDF(k−½) per channel.

        Computed in float64 on a float64 copy of the parameters (deterministic on CPU); every row is clamped
        to ≥ 1e-9 and renormalised to sum 1.
        """
        if symbol_max < symbol_min:
            raise ValueError("symbol_max must be ≥ symbol_min")
        params = [tuple(None if t is None else t.cpu() for t in p) for p in self._params(torch.float64)]
        k = torch.arange(symbol_min, symbol_max + 1, dtype=torch.float64).view(1, 1, 1, -1)
        x = k.expand(1, self.channels, 1, k.shape[-1])
        lower = self._logits(x - 0.5, params)
        upper = self._logits(x + 0.5, params)
        sign = -torch.sign(lower + upper)
        pmf = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).view(self.channels, -1)
        pmf = pmf.clamp_min(1e-9)
        return pmf / pmf.sum(dim=1, keepdim=True)


class _FeatureExtractor(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Sequential(DCB5(ch), DCB5(ch), DCB5(ch))
        self.conv2 = nn.Sequential(DCB5(ch), DCB5(ch), DCB5(ch))

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = self.conv1(feature)
        return ctx, self.conv2(ctx)


class _Encoder(nn.Module):
    def __init__(self, w: InterWidths):
        super().__init__()
        ch, mid = w.ch, w.ch_mid
        self.conv1 = nn.Sequential(
            DCB5(2 * ch, mid), DCB5(mid), DCB5(mid), DCB5(mid, ch), DCB5(ch), DCB5(ch)
        )
        self.conv2 = nn.Sequential(RBS(ch, ch), ResBlock(ch), conv1x1(ch, w.y))

    def forward(self, x_emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(torch.cat([x_emb, ctx], dim=1)))


class _ConvStack(nn.Module):
    """A ``conv`` Sequential (keys ``conv.N``)."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Decoder(nn.Module):
    def __init__(self, w: InterWidths):
        super().__init__()
        ch, mid = w.ch, w.ch_mid
        self.conv1 = nn.Sequential(conv1x1(w.y, ch), ResBlock(ch), RBU(ch, ch))
        self.conv2 = nn.Sequential(
            DCB5(2 * ch, mid), DCB5(mid), DCB5(mid), DCB5(mid, ch), DCB5(ch), DCB5(ch)
        )

    def forward(self, y_hat: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.cat([self.conv1(y_hat), ctx], dim=1))


class _ReconPix(nn.Module):
    def __init__(self, w: InterWidths):
        super().__init__()
        self.net = nn.Sequential(ResBlock(w.ch), ResBlock(w.ch), ResBlock(w.ch, w.ctrl))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.net(feature)


class _SemanticHead(nn.Module):
    def __init__(self, w: InterWidths):
        super().__init__()
        mid, s, g = w.ch_mid, w.semantic, w.norm_groups
        self.net_ds = nn.Sequential(RBS(w.ch, mid), RBS(mid, mid), ResBlock(mid))
        self.net_attn = nn.Sequential(
            nn.Conv2d(mid, s, kernel_size=2, stride=2),
            AttnBlock(s, groups=g), ConvFFN(s), AttnBlock(s, groups=g), ConvFFN(s),
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.net_attn(self.net_ds(feature))


class InterCodec(nn.Module):
    """DMC_OneDC inter codec built from :class:`~s2vc.presets.InterWidths`.

    With ``InterWidths()`` its ``state_dict`` equals the release's ``P …/model_1.safetensors`` (keys, shapes,
    dtypes, order, ``bit_estimator_z`` included). All tensors NCHW float32, batch B ≥ 1, H, W multiples of 64.
    """

    def __init__(self, widths: InterWidths | None = None):
        super().__init__()
        w = InterWidths() if widths is None else widths
        if w.y % 2 != 0:
            raise ValueError("InterWidths.y must be even (two checkerboard channel halves)")
        self.widths = w
        ch, y = w.ch, w.y
        self.bit_estimator_z = FactorizedPrior(w.z)
        self.pix_emb = nn.Conv2d(3, ch, kernel_size=8, stride=8)
        self.feature_adaptor_i = ResBlock(w.latent, ch)
        self.feature_adaptor_p = ResBlock(ch)
        self.feature_extractor = _FeatureExtractor(ch)
        self.encoder = _Encoder(w)
        self.hyper_encoder = _ConvStack(DCB4(y), DCB4(y), RBS(y, y), RBS(y, y), conv1x1(y, w.z))
        self.hyper_decoder = _ConvStack(conv1x1(w.z, y), RBU(y, y), RBU(y, y), DCB4(y), DCB4(y))
        self.temporal_prior_encoder = _ConvStack(RBS(ch, w.temporal), DCB4(w.temporal))
        self.y_prior_fusion = _ConvStack(DCB4(y + w.temporal, 3 * y), DCB4(3 * y), DCB4(3 * y))
        self.y_spatial_prior = _ConvStack(DCB4(4 * y, 3 * y), DCB4(3 * y), DCB4(3 * y, 2 * y))
        self.decoder = _Decoder(w)
        self.recon_pix = _ReconPix(w)
        self.recon_semantic = _SemanticHead(w)

    def context(
        self, ref_frame: torch.Tensor | None, ref_feature: torch.Tensor | None, reset: bool
    ) -> Context:
        """(ctx, ctx_t), each (B,ch,/8). reset → feature_adaptor_i(ref_frame) (x0 latent, ``latent`` ch /8);
        else feature_adaptor_p(ref_feature) (previous decoder feature); then the feature extractor."""
        if reset:
            if ref_frame is None:
                raise ValueError("a reset context needs ref_frame (the previous x0 latent)")
            feature = self.feature_adaptor_i(ref_frame)
        else:
            if ref_feature is None:
                raise ValueError("a non-reset context needs ref_feature (the previous decoder feature)")
            feature = self.feature_adaptor_p(ref_feature)
        return Context(*self.feature_extractor(feature))

    def encode(self, x: torch.Tensor, ctx: torch.Tensor) -> Latents:
        """x (B,3,H,W) in [-1,1], ctx (B,ch,/8) → (y (B,y,/16), z (B,z,/64)), both before rounding.

        y is replicate-padded right/bottom to a multiple of 4 before the hyper encoder (no-op for 64-aligned x).
        """
        y = self.encoder(self.pix_emb(x), ctx)
        ph, pw = (-y.shape[-2]) % 4, (-y.shape[-1]) % 4
        y_pad = F.pad(y, (0, pw, 0, ph), mode="replicate") if (ph or pw) else y
        z = self.hyper_encoder(y_pad)
        return Latents(y, z)

    def prior(
        self, z_hat: torch.Tensor, ctx_t: torch.Tensor
    ) -> InterPrior:
        """(ẑ (B,z,/64), ctx_t (B,ch,/8)) → (q_dec, scales, means, params).

        params = y_prior_fusion([hyper_decoder(ẑ) cropped to ctx_t's size / 2, temporal_prior_encoder(ctx_t)])
        (B,3y,/16), split in thirds q_dec | scales | means; q_dec is already max(q_dec, 0.5).
        """
        hyper = self.hyper_decoder(z_hat)
        th, tw = (ctx_t.shape[-2] + 1) // 2, (ctx_t.shape[-1] + 1) // 2
        hyper = hyper[..., :th, :tw]
        temporal = self.temporal_prior_encoder(ctx_t)
        params = self.y_prior_fusion(torch.cat([hyper, temporal], dim=1))
        q_dec, scales, means = params.chunk(3, dim=1)
        return InterPrior(torch.clamp_min(q_dec, 0.5), scales, means, params)

    def spatial_prior(self, y_hat_a: torch.Tensor, params: torch.Tensor) -> GaussianParams:
        """(ŷ_A (B,y,/16), params (B,3y,/16)) → (scales_B, means_B) = halves of y_spatial_prior([ŷ_A, params])."""
        return GaussianParams(*self.y_spatial_prior(torch.cat([y_hat_a, params], dim=1)).chunk(2, dim=1))

    def decode(self, y_hat: torch.Tensor, ctx: torch.Tensor) -> InterSynthesis:
        """(ŷ (B,y,/16), ctx (B,ch,/8)) → (feature (B,ch,/8), f_pix (B,ctrl,/8),
        tokens (B,(H/64)(W/64),semantic) row-major)."""
        feature = self.decoder(y_hat, ctx)
        f_pix = self.recon_pix(feature)
        tokens = self.recon_semantic(feature).flatten(2).transpose(1, 2)
        return InterSynthesis(feature, f_pix, tokens)
