"""Training losses: λ·R + L1 + a perceptual term + an adversarial term + a temporal-consistency term.

No pretrained network is available offline (LPIPS/VGG weights would have to be downloaded), so the perceptual
term is multi-scale structural similarity (1 − MS-SSIM over three scales), which rewards the texture and
structure that L1 alone blurs away. The adversarial term uses a small PatchGAN discriminator with hinge losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def ssim_terms(a: Tensor, b: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
    """(SSIM, contrast-structure) maps' means for images in [0, 1], per batch item."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window.shape[-1] // 2
    mu_a = F.conv2d(a, window, padding=pad, groups=3)
    mu_b = F.conv2d(b, window, padding=pad, groups=3)
    var_a = F.conv2d(a * a, window, padding=pad, groups=3) - mu_a**2
    var_b = F.conv2d(b * b, window, padding=pad, groups=3) - mu_b**2
    cov = F.conv2d(a * b, window, padding=pad, groups=3) - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    ssim = ((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim_loss(x_hat: Tensor, x: Tensor, scales: int = 3) -> Tensor:
    """1 − MS-SSIM (equal weights over ``scales``) for images in [-1, 1]; differentiable, per batch item."""
    a, b = (x_hat.clamp(-1, 1) + 1) / 2, (x + 1) / 2
    window = _gaussian_window(device=x.device)
    values = []
    for s in range(scales):
        ssim, cs = ssim_terms(a, b, window)
        values.append((ssim if s == scales - 1 else cs).clamp_min(1e-6))
        if s < scales - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return 1 - torch.stack(values, 0).prod(0) ** (1.0 / scales)


def temporal_loss(x_hat: Tensor, x_hat_prev: Tensor, x: Tensor, x_prev: Tensor) -> Tensor:
    """L1 between the reconstructed and the true frame-to-frame change (flicker penalty), per batch item."""
    return ((x_hat - x_hat_prev) - (x - x_prev)).abs().flatten(1).mean(1)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: stride-2 convs with LeakyReLU, a 1-channel map of real/fake logits."""

    def __init__(self, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = channels
        for _ in range(layers - 1):
            mods += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.GroupNorm(8, ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        mods.append(nn.Conv2d(ch, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def generator_adv_loss(disc: PatchDiscriminator, x_hat: Tensor) -> Tensor:
    return -disc(x_hat).mean()


def discriminator_loss(disc: PatchDiscriminator, x: Tensor, x_hat: Tensor) -> Tensor:
    """Hinge loss on real frames and (detached) reconstructions."""
    return F.relu(1 - disc(x)).mean() + F.relu(1 + disc(x_hat.detach())).mean()
