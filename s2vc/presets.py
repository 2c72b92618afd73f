"""Network widths by preset.

One set of classes builds every model; a :class:`Preset` only chooses widths. ``official`` reproduces the
public S²VC release tensor for tensor (its ``state_dict`` keys, shapes and dtypes equal the release manifests);
``tiny`` keeps every part of the architecture at widths small enough for real-time CPU coding.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


PREDICTIONS = ("epsilon", "x0")


@dataclass(frozen=True)
class IntraWidths:
    """OneDC intra codec (``IntraNoAR``)."""

    pix_emb: int = 192  # enc.pix_emb output channels
    ctrl: int = 320  # pix_fusion output = U-Net input channels (C_diff)
    internal: int = 512  # enc U-Net conv_in output, trans_coding, hyper_enc tail, decoder trunk
    unet_channels: tuple[int, ...] = (512, 768, 768)  # enc.unet block_out_channels
    attention_head_dim: int = 8  # enc.unet: heads = C / attention_head_dim
    semantic: int = 768  # semantic tokens (cross-attention dim of the codec U-Net)
    y: int = 128  # N, latent y channels
    fsq_levels: tuple[int, ...] = (4, 4, 4, 4, 4, 4, 4)  # one level count per z channel
    norm_groups: int = 32  # GroupNorm groups of VQGAN blocks / enc.unet
    latent: int = 4  # VAE latent channels the encoder takes beside the pixel embedding (= VAEWidths.latent_channels)


@dataclass(frozen=True)
class InterWidths:
    """DCVC-RT-style inter codec (``DMC_OneDC``)."""

    ch: int = 384  # feature / context channels
    ch_mid: int = 576  # encoder/decoder DCB5 mid width and SemanticHead width
    y: int = 128
    z: int = 64
    temporal: int = 256  # temporal prior encoder output
    ctrl: int = 320  # recon_pix output = U-Net input channels (C_diff)
    semantic: int = 768
    norm_groups: int = 32  # GroupNorm groups of the SemanticHead AttnBlocks
    latent: int = 4  # channels of the x0 latent a reset P-frame's context is built from (= VAEWidths.latent_channels)


@dataclass(frozen=True)
class UNetWidths:
    """Codec U-Net: SD1.5 ``UNet2DConditionModel`` + LoRA adapters + codec heads + TCG fusion."""

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    cross_attention_dim: int = 768
    attention_head_dim: int = 8  # diffusers uses this as the number of heads for SD1.5
    norm_groups: int = 32
    in_channels: int = 320  # replaced conv_in input (C_diff)
    lora_rank: int = 64
    lora_alpha: float = 8.0
    motion_channels: int = 160  # zero "motion" channels of the TCG blocks
    latent: int = 4  # channels of x_t, ε and x0 (= VAEWidths.latent_channels)
    prediction: str = "epsilon"  # what conv_out predicts at t = 999: "epsilon" (the release) or "x0" directly


@dataclass(frozen=True)
class VAEWidths:
    """SD2.1 ``AutoencoderKL`` with windowed mid-block attention."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_groups: int = 32
    scaling_factor: float = 0.18215
    attn_window: int = 16
    # The encoder folds each patch_size×patch_size block of pixels into channels before its first conv (pixel
    # unshuffle), and the decoder unfolds its last conv's output the same way, so no conv runs at full resolution.
    # 1 (none) is the SD VAE; with p > 1 the blocks start at /p and patch_size·2^(blocks−1) must still be 8.
    patch_size: int = 1


@dataclass(frozen=True)
class Preset:
    name: str
    intra: IntraWidths = field(default_factory=IntraWidths)
    inter: InterWidths = field(default_factory=InterWidths)
    unet: UNetWidths = field(default_factory=UNetWidths)
    vae: VAEWidths = field(default_factory=VAEWidths)
    # Round the Gaussian means to a 1/256 grid before quantising (s2vc.entropy.round_means). The release does not;
    # checkpoints written before this field existed did (``from_dict`` keeps that for them).
    round_means: bool = False
    # Signalled latent offset, a coding tool with no weights (docs/bitstream.md, "Latent offset"): an I or P unit
    # may carry, per latent channel, how far the mean of the frame's source latent lies from the mean of the x0 the
    # decoder synthesises, in steps of this size; the decoder adds it to x0 before the output VAE decode (never to
    # the reference). It removes the colour cast of a model that cannot keep each picture's mean colour on its own.
    # 0 = off (the release).
    latent_offset_step: float = 0.0

    def __post_init__(self) -> None:
        latent = self.vae.latent_channels
        for part, widths in (("intra", self.intra), ("inter", self.inter), ("unet", self.unet)):
            if widths.latent != latent:
                raise ValueError(f"preset {self.name!r}: {part}.latent={widths.latent} differs from vae.latent_channels={latent}")
        if self.intra.unet_channels[-1] != self.intra.semantic:
            raise ValueError(f"preset {self.name!r}: intra.unet_channels[-1]={self.intra.unet_channels[-1]} must equal intra.semantic={self.intra.semantic} (the encoder U-Net's deepest features are the semantic features)")
        for part, dim in (("intra.semantic", self.intra.semantic), ("inter.semantic", self.inter.semantic)):
            if dim != self.unet.cross_attention_dim:
                raise ValueError(f"preset {self.name!r}: {part}={dim} must equal unet.cross_attention_dim={self.unet.cross_attention_dim} (the U-Net attends to those tokens)")
        stride = self.vae.patch_size * 2 ** (len(self.vae.block_out_channels) - 1)
        if self.vae.patch_size < 1 or stride != 8:
            raise ValueError(f"preset {self.name!r}: the VAE latent must be at /8 of the frame, but vae.patch_size={self.vae.patch_size} "
                             f"with {len(self.vae.block_out_channels)} blocks puts it at /{stride}")
        if not 0.0 <= self.latent_offset_step <= 1.0:
            raise ValueError(f"preset {self.name!r}: latent_offset_step must be 0 (off) .. 1, got {self.latent_offset_step}")
        if self.unet.prediction not in PREDICTIONS:
            raise ValueError(f"preset {self.name!r}: unet.prediction must be one of {PREDICTIONS}, got {self.unet.prediction!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preset":
        def build(kind: type, values: dict[str, Any]) -> Any:
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = set(values) - names
            if unknown:
                raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown preset fields: {sorted(unknown)}")
        return cls(
            name=data["name"],
            intra=build(IntraWidths, data.get("intra", {})),
            inter=build(InterWidths, data.get("inter", {})),
            unet=build(UNetWidths, data.get("unet", {})),
            vae=build(VAEWidths, data.get("vae", {})),
            round_means=bool(data.get("round_means", True)),  # absent: written before the field, which rounded
            latent_offset_step=float(data.get("latent_offset_step", 0.0)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


OFFICIAL = Preset(name="official")

TINY = Preset(
    name="tiny",
    # Version 2, designed for picture quality per FLOP on a 2-core CPU (docs/results.md, "tiny v2"):
    # * a 16-channel latent at /8 (version 1 had 4, which capped foreman at 24.8 dB before any coding), made by a
    #   VAE that folds 4×4 pixel blocks into 48 channels and runs 64 channels at /4 and 128 at /8: no conv at full
    #   resolution. After 600 equal steps it reached foreman 23.8 / mobile 15.5 dB in 4 CPU minutes, where a VAE
    #   with convs at every scale (8, 8, 16, 64 channels at /1../8) reached 22.4 / 14.9 in 10 minutes and one
    #   folding 2×2 blocks (32, 48, 96 at /2../8) 24.3 / 15.6 in 15 (docs/results.md, "tiny v2");
    #   Its GroupNorms use 2 groups, so no GroupNorm normalises a colour channel on its own (a GroupNorm of one
    #   channel a group right before conv_out erases each picture's mean colour: version 1's cast);
    # * the codec, hyperprior and U-Net at 24-32 channels at /8 and below (version 1: 8-24), where a channel costs
    #   1/64 of what it costs at full resolution;
    # * the U-Net predicts x0 directly: at t = 999 the release's ε-parametrisation multiplies every error of ε by
    #   √((1-ᾱ)/ᾱ) ≈ 14.6, which a model trained from scratch cannot afford;
    # * means rounded to a 1/256 grid before quantisation (the release does not round);
    # * a signalled latent offset in steps of 1/32 (every frame's mean colour: -10 to +19 levels of cast without it,
    #   within 1.2 on foreman with it; docs/results.md).
    # One attention head in the U-Net (diffusers' ``attention_head_dim`` is the head count for SD1.5 blocks).
    # Random-weight streams must stay finite over tens of P-frames (the inter feature loop is not normalised):
    # re-check with the codec tests after changing any width, since every width reshuffles the seeded initialisation.
    intra=IntraWidths(
        pix_emb=16, ctrl=32, internal=24, unet_channels=(24, 32, 32), attention_head_dim=8,
        semantic=32, y=32, fsq_levels=(4, 4, 4, 4), norm_groups=4, latent=16,
    ),
    inter=InterWidths(ch=32, ch_mid=32, y=32, z=16, temporal=16, ctrl=32, semantic=32, norm_groups=8, latent=16),
    unet=UNetWidths(
        block_out_channels=(32, 32, 32, 32), layers_per_block=1, cross_attention_dim=32, attention_head_dim=1,
        norm_groups=8, in_channels=32, lora_rank=2, lora_alpha=0.25, motion_channels=8, latent=16, prediction="x0",
    ),
    vae=VAEWidths(block_out_channels=(64, 128), layers_per_block=1, latent_channels=16, norm_groups=2, attn_window=16, patch_size=4),
    round_means=True,
    latent_offset_step=1 / 32,
)

# Version 1 of the tiny preset (widths 8-24, a 4-channel latent, ε-prediction), chosen for a 40 ms round trip: the
# shipped default until version 2 is trained (weights/default records these widths), and what
# training/train_default.sh and refine_default.sh train.
TINY_V1 = Preset(
    name="tiny-v1",
    intra=IntraWidths(
        pix_emb=8, ctrl=16, internal=16, unet_channels=(16, 16, 16), attention_head_dim=8,
        semantic=16, y=8, fsq_levels=(4, 4, 4, 4), norm_groups=8,
    ),
    inter=InterWidths(ch=24, ch_mid=32, y=16, z=8, temporal=16, ctrl=16, semantic=16, norm_groups=8),
    unet=UNetWidths(
        block_out_channels=(16, 16, 16, 16), layers_per_block=1, cross_attention_dim=16,
        attention_head_dim=1, norm_groups=8, in_channels=16, lora_rank=2, lora_alpha=0.25, motion_channels=8,
    ),
    vae=VAEWidths(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_groups=4, attn_window=16),
    round_means=True,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (OFFICIAL, TINY, TINY_V1)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None
