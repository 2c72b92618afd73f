"""Differentiable frame coding for training: the step API's computation with rounding made trainable.

Mirrors :mod:`s2vc.codec` pass for pass (same masks, same priors, same order), but quantisation is a
straight-through rounding and the rate is the model's own information content (−log2 of the quantised Gaussian
mass for y, of the factorised prior for P-frame z, log2 L per FSQ symbol for I-frame z) instead of real bytes.
Frames are cascaded: a P-frame takes the buffers of the previous frame *with* their gradients, so training over
T frames teaches the codec to keep its own buffers useful.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from s2vc.codec import DEFAULT_RESET_INTERVAL, INTER_Y_RANGE, INTER_Z_RANGE, INTRA_Y_RANGE, pad_to_multiple
from s2vc.entropy import SCALE_MAX, SCALE_MIN
from s2vc.model import RateModel
from s2vc.networks.inter import checkerboard_masks
from s2vc.networks.intra import intra_pass_masks
from s2vc.networks.vae import CodecVAE

_LOG2 = math.log(2.0)


def ste_round(x: Tensor) -> Tensor:
    """round(x) in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def gaussian_bits(q: Tensor, scales: Tensor) -> Tensor:
    """Information content (bits) of integer residuals ``q`` under a zero-mean quantised Gaussian, per element."""
    s = scales.float().clamp(SCALE_MIN, SCALE_MAX) * math.sqrt(2.0)
    a = q.float().abs()  # evaluated in the upper tail with erfc, which stays accurate far from the mean
    mass = 0.5 * (torch.erfc((a - 0.5) / s) - torch.erfc((a + 0.5) / s))
    return -torch.log(mass.clamp_min(1e-9)) / _LOG2


@dataclass
class TrainState:
    """The decoded picture buffer during training (tensors keep their autograd history)."""

    ref_frame: Tensor
    ref_feature: Tensor | None
    unet_feats: list[Tensor]
    p_index: int = 0


@dataclass
class FrameResult:
    x_hat: Tensor  # (B, 3, H, W) in about [-1, 1], cropped to the input size
    bits: Tensor  # (B,) estimated bits of the frame
    bpp: Tensor  # (B,) bits per original pixel
    state: TrainState
    latent_mse: Tensor | None  # (B,) mean squared distance of x0 from the VAE latent of the frame (None: not asked for)


def latent_mse(x0: Tensor, target: Tensor) -> Tensor:
    """Per item: how far the U-Net's x0 lies from the VAE's own latent of the frame. The frozen VAE decoder starts
    with GroupNorm, so without this anchor a codec trained only through it can drift to latents far outside the
    VAE's distribution (measured: ≈ 140× the latent's spread) that it decodes blurrily."""
    return (x0.float() - target.float()).pow(2).flatten(1).mean(1)


def _masked_pass(y: Tensor, y_hat: Tensor, sel: Tensor, scales: Tensor, means: Tensor, symbol_range) -> tuple[Tensor, Tensor]:
    q = ste_round(y - means).clamp(*symbol_range)
    bits = (gaussian_bits(q, scales) * sel).flatten(1).sum(1)
    return y_hat + torch.where(sel, q + means, torch.zeros_like(q)), bits


def code_intra(nets: RateModel, vae: CodecVAE, x: Tensor) -> FrameResult:
    """I-frame: x (B, 3, H, W) in [-1, 1] → reconstruction, estimated bits and the new buffer."""
    h, w = x.shape[-2:]
    xp = pad_to_multiple(x)
    latent = vae.encode(xp)
    y, z = nets.intra.encode(xp, latent)
    z_hat, _ = nets.intra.quantize_z(z)
    params, reduced, z_semantic = nets.intra.hyper_decode(z_hat)
    masks = intra_pass_masks(y.shape[1], y.shape[2], y.shape[3], device=y.device)
    y_hat = torch.zeros_like(y)
    bits = torch.zeros(x.shape[0], device=x.device)
    for k in range(4):
        scales, means = params.chunk(2, 1) if k == 0 else nets.intra.spatial_prior(k, y_hat, reduced)
        y_hat, pass_bits = _masked_pass(y, y_hat, masks[k].bool().unsqueeze(0), scales, means, INTRA_Y_RANGE)
        bits = bits + pass_bits
    levels = torch.tensor(nets.intra.widths.fsq_levels, dtype=torch.float32, device=x.device)
    bits = bits + torch.log2(levels).sum() * z.shape[2] * z.shape[3]
    f_pix, tokens = nets.intra.decode(y_hat, z_semantic)
    x0, feats = nets.unet(f_pix, tokens, None, "iframe")
    x_hat = vae.decode(x0)[..., :h, :w]
    state = TrainState(ref_frame=x0, ref_feature=None, unet_feats=list(feats))
    return FrameResult(x_hat, bits, bits / (h * w), state, latent_mse(x0, latent.detach()))


@torch.no_grad()
def match_x0_scale(nets: RateModel, vae: CodecVAE, x: Tensor) -> float:
    """Rescale the U-Net's two output layers (the ``vae_reduction`` tail that makes x_t, and ``conv_out`` that makes
    ε) by one factor k so that the I-frame x0 of ``x`` has the spread of the VAE latent. x0 = (x_t − √(1−ᾱ)·ε)/√ᾱ is
    linear in (x_t, ε), so x0 becomes exactly x0/k. Used once on a model whose x0 drifted out of the VAE's latent
    distribution (see :func:`latent_mse`) before training it with the latent term. Returns k."""
    x0 = code_intra(nets, vae, x).state.ref_frame
    k = float(x0.std() / vae.encode(pad_to_multiple(x)).std())
    if not math.isfinite(k) or k <= 0:
        raise ValueError(f"cannot match the x0 scale: factor {k}")
    unet = nets.unet
    for conv in (unet.vae_reduction.blocks[-1], unet.vae_reduction.short_cut, unet.conv_out):
        conv.weight.div_(k)
        conv.bias.div_(k)
    return k


def code_inter(nets: RateModel, vae: CodecVAE, x: Tensor, state: TrainState, reset_interval: int = DEFAULT_RESET_INTERVAL,
               with_latent: bool = False) -> FrameResult:
    """P-frame against ``state`` (gradients flow into the previous frames through the buffer)."""
    h, w = x.shape[-2:]
    xp = pad_to_multiple(x)
    reset = state.p_index % reset_interval == 0
    ctx, ctx_t = nets.inter.context(state.ref_frame, state.ref_feature, reset)
    y, z = nets.inter.encode(xp, ctx)
    z_hat = ste_round(z).clamp(*INTER_Z_RANGE)
    bits = (-torch.log2(nets.inter.bit_estimator_z.likelihood(z_hat))).flatten(1).sum(1)
    q_dec, scales, means, params = nets.inter.prior(z_hat, ctx_t)
    y_scaled = y / q_dec
    mask_a, mask_b = checkerboard_masks(y.shape[1], y.shape[2], y.shape[3], device=y.device)
    y_hat = torch.zeros_like(y)
    for k, mask in enumerate((mask_a, mask_b)):
        if k == 1:
            scales, means = nets.inter.spatial_prior(y_hat, params)
        y_hat, pass_bits = _masked_pass(y_scaled, y_hat, mask.bool().expand_as(y), scales, means, INTER_Y_RANGE)
        bits = bits + pass_bits
    feature, f_pix, tokens = nets.inter.decode(y_hat * q_dec, ctx)
    x0, feats = nets.unet(f_pix, tokens, state.unet_feats, "pframe")
    x_hat = vae.decode(x0)[..., :h, :w]
    new_state = TrainState(ref_frame=x0, ref_feature=feature, unet_feats=list(feats), p_index=state.p_index + 1)
    distance = None
    if with_latent:  # an extra VAE encode per P-frame, only when the latent term is on
        with torch.no_grad():
            target = vae.encode(xp)
        distance = latent_mse(x0, target)  # outside no_grad: the gradient reaches x0
    return FrameResult(x_hat, bits, bits / (h * w), new_state, distance)


def code_sequence(nets: RateModel, vae: CodecVAE, frames: Tensor, reset_interval: int = DEFAULT_RESET_INTERVAL,
                  with_latent: bool = False) -> list[FrameResult]:
    """Cascade over (B, T, 3, H, W): frame 0 as I, the rest as P-frames on the running buffer."""
    results = [code_intra(nets, vae, frames[:, 0])]
    for t in range(1, frames.shape[1]):
        results.append(code_inter(nets, vae, frames[:, t], results[-1].state, reset_interval, with_latent))
    return results
