"""OneDC intra codec (``IntraNoAR`` of the release, ARCHITECTURE.md §3).

The module only computes tensors; quantisation of y and entropy coding live in the step API. FSQ of the hyper
latent z is part of this module (it has no parameters and its result feeds the hyper decoder directly).

Shapes (x padded to multiples of 64, "/k" = H/k × W/k): latent ``latent`` (4 in the release) × /8, y ``y`` × /16, z ``len(fsq_levels)`` × /64,
common params 2y × /16, z_semantic y × /64, semantic tokens (H/64·W/64) × ``semantic``, f_pix ``ctrl`` × /8.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import nn

from ..presets import IntraWidths
from ..protocol import GaussianParams, IntraHyper, Latents, QuantizedZ, Synthesis
from .blocks import DCB4, RBU, AttnBlock, VResnet, conv1x1, conv3x3

__all__ = ["IntraCodec", "intra_pass_masks", "unet_features", "INTRA_PASS_PARTS", "UNET_TIMESTEP"]

#: Constant diffusion timestep of the one-step model.
UNET_TIMESTEP = 999

#: For pass k and channel group g, which position p of the 2×2 cell is coded
#: (p0 = (even row, even col), p1 = (even, odd), p2 = (odd, even), p3 = (odd, odd)).
INTRA_PASS_PARTS: tuple[tuple[int, int, int, int], ...] = ((0, 1, 2, 3), (3, 2, 1, 0), (2, 3, 0, 1), (1, 0, 3, 2))


def intra_pass_masks(channels: int, h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """0/1 float32 masks (4, channels, h, w) of the four spatial-prior passes (§3.7).

    Channels form four equal groups; pass k covers position ``INTRA_PASS_PARTS[k][g]`` of every 2×2 cell in
    group g. The four masks partition all (channel, row, col) positions.
    """
    if channels % 4 != 0:
        raise ValueError(f"intra_pass_masks needs channels divisible by 4, got {channels}")
    rows = torch.arange(h, device=device).remainder(2).view(h, 1)
    cols = torch.arange(w, device=device).remainder(2).view(1, w)
    position = rows * 2 + cols  # (h, w) in 0..3
    parts = torch.tensor(INTRA_PASS_PARTS, device=device)  # (pass, group)
    group = torch.arange(channels, device=device) // (channels // 4)  # (channels,)
    wanted = parts[:, group]  # (4, channels)
    return (position.view(1, 1, h, w) == wanted.view(4, channels, 1, 1)).to(torch.float32)


def unet_features(
    unet: UNet2DModel, sample: torch.Tensor, timestep: int = UNET_TIMESTEP
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a diffusers ``UNet2DModel`` (no class conditioning, no skip blocks) at a fixed timestep.

    Same computation as ``UNet2DModel.forward`` but returns (up-path output after GN/SiLU/conv_out,
    mid-block output); the mid-block output is the semantic feature ``sem`` of the intra codec.
    """
    timesteps = torch.full((sample.shape[0],), timestep, dtype=torch.long, device=sample.device)
    emb = unet.time_embedding(unet.time_proj(timesteps).to(dtype=sample.dtype))
    sample = unet.conv_in(sample)
    res_samples: tuple[torch.Tensor, ...] = (sample,)
    for block in unet.down_blocks:
        sample, res = block(hidden_states=sample, temb=emb)
        res_samples += res
    sample = unet.mid_block(sample, emb)
    sem = sample
    for block in unet.up_blocks:
        n = len(block.resnets)
        res, res_samples = res_samples[-n:], res_samples[:-n]
        sample = block(sample, res, emb)
    sample = unet.conv_out(unet.conv_act(unet.conv_norm_out(sample)))
    return sample, sem


class _IntraEncoder(nn.Module):
    def __init__(self, w: IntraWidths):
        super().__init__()
        g = w.norm_groups
        c0 = w.unet_channels[0]
        self.pix_emb = nn.Conv2d(3, w.pix_emb, kernel_size=8, stride=8)
        self.pix_fusion = conv1x1(w.pix_emb + w.latent, w.ctrl)
        self.unet = UNet2DModel(
            in_channels=w.ctrl,
            out_channels=w.internal,
            block_out_channels=tuple(w.unet_channels),
            down_block_types=("AttnDownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            layers_per_block=2,
            attention_head_dim=w.attention_head_dim,
            norm_num_groups=g,
            norm_eps=1e-5,
            act_fn="silu",
            time_embedding_type="positional",
            flip_sin_to_cos=True,
            freq_shift=0,
        )
        # Replaced conv_in: VResnet(ctrl→c0, in≠out quirk), 2×VResnet(c0), 3×3 stride-2 conv → /16.
        self.unet.conv_in = nn.Sequential(
            VResnet(w.ctrl, c0, groups=g),
            VResnet(c0, groups=g),
            VResnet(c0, groups=g),
            conv3x3(c0, c0, stride=2),
        )
        i = w.internal
        self.trans_coding = nn.Sequential(
            VResnet(i, groups=g), AttnBlock(i, groups=g), VResnet(i, groups=g), DCB4(i, i), DCB4(i, w.y)
        )


class _IntraDecoder(nn.Module):
    def __init__(self, w: IntraWidths):
        super().__init__()
        g, i, half = w.norm_groups, w.internal, w.internal // 2
        self.trans_coding = nn.Sequential(DCB4(w.y, i), DCB4(i))
        self.blocks = nn.Sequential(
            VResnet(i, groups=g), VResnet(i, groups=g), VResnet(i, groups=g),
            conv1x1(i, 4 * i), nn.PixelShuffle(2),
            conv3x3(i, half),
            VResnet(half, groups=g), VResnet(half, groups=g), VResnet(half, groups=g),
        )
        s = w.semantic
        self.sem_up = nn.Sequential(RBU(s, i), DCB4(i), RBU(i, half), DCB4(half), RBU(half, half))
        self.conv_out = DCB4(2 * half, w.ctrl)

    def forward(self, y_hat: torch.Tensor, y_semantic: torch.Tensor) -> torch.Tensor:
        feat = self.blocks(self.trans_coding(y_hat))
        return self.conv_out(torch.cat([feat, self.sem_up(y_semantic)], dim=1))


class _SemanticAdaptor(nn.Module):
    def __init__(self, w: IntraWidths):
        super().__init__()
        s, g = w.semantic, w.norm_groups
        self.to_semantic = nn.Sequential(
            DCB4(w.y, s),
            VResnet(s, groups=g), AttnBlock(s, groups=g), AttnBlock(s, groups=g),
            VResnet(s, groups=g), AttnBlock(s, groups=g), AttnBlock(s, groups=g),
            DCB4(s),
        )

    def forward(self, z_semantic: torch.Tensor) -> torch.Tensor:
        return self.to_semantic(z_semantic)


class _HyperEncoder(nn.Module):
    def __init__(self, w: IntraWidths):
        super().__init__()
        y, s, i, g = w.y, w.semantic, w.internal, w.norm_groups
        self.y_trans_coding = nn.Sequential(DCB4(y), conv3x3(y, y, stride=2), DCB4(y), conv3x3(y, y, stride=2))
        self.fusion = nn.Sequential(
            DCB4(y + s, s), AttnBlock(s, groups=g), DCB4(s, i), AttnBlock(i, groups=g), DCB4(i),
            conv1x1(i, len(w.fsq_levels)),
        )

    def forward(self, y: torch.Tensor, sem: torch.Tensor) -> torch.Tensor:
        return self.fusion(torch.cat([self.y_trans_coding(y), sem], dim=1))


class _HyperDecoder(nn.Module):
    def __init__(self, w: IntraWidths):
        super().__init__()
        y = w.y
        self.feat_in = nn.Sequential(conv1x1(len(w.fsq_levels), y), nn.LeakyReLU(0.01))
        self.to_entropy = nn.Sequential(DCB4(y), RBU(y, y), DCB4(y), RBU(y, y), DCB4(y))


class IntraCodec(nn.Module):
    """OneDC intra codec built from :class:`~s2vc.presets.IntraWidths`.

    With ``IntraWidths()`` its ``state_dict`` equals the release's ``I …/model_1.safetensors`` (keys, shapes,
    dtypes, order). All methods take and return NCHW float32 tensors, batch B ≥ 1, x in [-1, 1] with H, W
    multiples of 64.
    """

    def __init__(self, widths: IntraWidths | None = None):
        super().__init__()
        w = IntraWidths() if widths is None else widths
        if w.y % 4 != 0:
            raise ValueError("IntraWidths.y must be divisible by 4 (four channel groups of the spatial prior)")
        self.widths = w
        self.enc = _IntraEncoder(w)
        self.dec = _IntraDecoder(w)
        self.semantic_adaptor = _SemanticAdaptor(w)
        self.hyper_enc = _HyperEncoder(w)
        self.hyper_dec = _HyperDecoder(w)
        y2 = 2 * w.y
        self.y_prior_fusion = nn.Sequential(DCB4(w.y, y2), DCB4(y2))
        self.y_spatial_prior_reduction = conv1x1(y2, w.y)
        self.y_spatial_prior_adaptor_1 = DCB4(y2, y2)
        self.y_spatial_prior_adaptor_2 = DCB4(y2, y2)
        self.y_spatial_prior_adaptor_3 = DCB4(y2, y2)
        self.y_spatial_prior = nn.Sequential(DCB4(y2), DCB4(y2), DCB4(y2))

    # ------------------------------------------------------------------ analysis
    def encode(self, x: torch.Tensor, latent: torch.Tensor) -> Latents:
        """x (B,3,H,W) in [-1,1], VAE latent (B,latent,H/8,W/8) → (y (B,y,H/16,W/16), z (B,L,H/64,W/64)), z unquantised."""
        feat = self.enc.pix_fusion(torch.cat([self.enc.pix_emb(x), latent], dim=1))
        feat, sem = unet_features(self.enc.unet, feat)
        y = self.enc.trans_coding(feat)
        z = self.hyper_enc(y, sem)
        return Latents(y, z)

    # ------------------------------------------------------------------ FSQ
    def _fsq_levels(self, z: torch.Tensor) -> torch.Tensor:
        levels = self.widths.fsq_levels
        if z.shape[1] != len(levels):
            raise ValueError(f"z has {z.shape[1]} channels, expected {len(levels)} (one per FSQ level)")
        return torch.tensor(levels, dtype=torch.int64, device=z.device).view(1, -1, 1, 1)

    def quantize_z(self, z: torch.Tensor) -> QuantizedZ:
        """Finite scalar quantisation in fp32 → (z_hat float32, index int64 in 0..L−1 per channel).

        half_l = (L−1)(1+1e-3)/2, offset = ½ for even L else 0, shift = atanh(offset/half_l),
        q = round(tanh(z + shift)·half_l − offset), z_hat = q / (L//2), index = q + L//2.
        With autograd on and ``z`` requiring grad, z_hat carries a straight-through gradient (same values).
        """
        levels = self._fsq_levels(z)
        lf = levels.to(torch.float32)
        half_l = (lf - 1.0) * (1.0 + 1e-3) / 2.0
        offset = torch.where(levels % 2 == 0, torch.full_like(lf, 0.5), torch.zeros_like(lf))
        shift = torch.atanh(offset / half_l)
        bounded = torch.tanh(z.float() + shift) * half_l - offset
        q = torch.round(bounded)
        half_width = (levels // 2).to(torch.float32)
        if torch.is_grad_enabled() and z.requires_grad:  # training: straight-through gradient of the rounding
            z_hat = (bounded + (q - bounded).detach()) / half_width
        else:
            z_hat = q / half_width
        index = q.to(torch.int64) + levels // 2
        return QuantizedZ(z_hat, index)

    def dequantize_z(self, index: torch.Tensor) -> torch.Tensor:
        """Inverse of the FSQ index mapping: z_hat = (index − L//2) / (L//2), float32."""
        levels = self._fsq_levels(index)
        half = levels // 2
        return (index.to(torch.int64) - half).to(torch.float32) / half.to(torch.float32)

    # ------------------------------------------------------------------ priors
    def hyper_decode(self, z_hat: torch.Tensor) -> IntraHyper:
        """z_hat (B,L,/64) → (params P (B,2y,/16), reduced (B,y,/16), z_semantic (B,y,/64))."""
        z_semantic = self.hyper_dec.feat_in(z_hat)
        params = self.y_prior_fusion(self.hyper_dec.to_entropy(z_semantic))
        reduced = self.y_spatial_prior_reduction(params)
        return IntraHyper(params, reduced, z_semantic)

    def spatial_prior(
        self, k: int, y_hat_sum: torch.Tensor, reduced: torch.Tensor
    ) -> GaussianParams:
        """(scales, means) of pass k ∈ {1, 2, 3}.

        ``y_hat_sum`` = ŷ_0 + … + ŷ_{k−1} (B,y,/16); output = y_spatial_prior(adaptor_k([y_hat_sum, reduced]))
        split in halves, first half = scales. Pass 0 has no call here: it uses ``params`` from
        :meth:`hyper_decode` split in halves (first half = scales, second = means).
        """
        adaptors = {1: self.y_spatial_prior_adaptor_1, 2: self.y_spatial_prior_adaptor_2,
                    3: self.y_spatial_prior_adaptor_3}
        if k not in adaptors:
            raise ValueError(f"spatial prior pass must be 1, 2 or 3, got {k}")
        out = self.y_spatial_prior(adaptors[k](torch.cat([y_hat_sum, reduced], dim=1)))
        return GaussianParams(*out.chunk(2, dim=1))

    # ------------------------------------------------------------------ synthesis
    def decode(self, y_hat: torch.Tensor, z_semantic: torch.Tensor) -> Synthesis:
        """(ŷ (B,y,/16), z_semantic (B,y,/64)) → (f_pix (B,ctrl,/8), tokens (B,(H/64)(W/64),semantic) row-major)."""
        y_semantic = self.semantic_adaptor(z_semantic)
        tokens = y_semantic.flatten(2).transpose(1, 2)
        f_pix = self.dec(y_hat, y_semantic)
        return Synthesis(f_pix, tokens)
