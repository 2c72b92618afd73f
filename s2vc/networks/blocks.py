"""Shared building blocks of the S²VC codecs (ARCHITECTURE.md §1).

Every block is a pure ``nn.Module`` (no state kept between calls) whose parameter names match the public
release checkpoints: the attribute names below are part of the checkpoint format, do not rename them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Conv1x1",
    "conv1x1_mm",
    "conv1x1",
    "conv3x3",
    "subpel_conv1x1",
    "DepthConv",
    "DepthConv3",
    "ConvFFN",
    "DCB4",
    "DCB5",
    "ResidualBlockWithStride",
    "ResidualBlockUpsample",
    "RBS",
    "RBU",
    "ResBlock",
    "AttnBlock",
    "VResnet",
]


class Conv1x1(nn.Conv2d):
    """``nn.Conv2d`` with a 1×1 kernel (same parameters and state-dict keys) computed as one matrix product.

    On CPU oneDNN's 1×1 convolution costs about three times a plain GEMM at the small widths and /8 maps the
    codecs run at; the result is the same up to float summation order. Strided ones use the regular path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1) or self.padding != (0, 0) or x.dim() != 4:
            return super().forward(x)
        return conv1x1_mm(x, self.weight.view(self.out_channels, -1), self.bias)


def conv1x1_mm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Stride-1 1×1 convolution of NCHW ``x`` with a (out, in) ``weight`` as one matrix product."""
    b, c, h, w = x.shape
    out_ch = weight.shape[0]
    if b == 1:
        flat = x.reshape(c, h * w)
        out = torch.mm(weight, flat) if bias is None else torch.addmm(bias.unsqueeze(1), weight, flat)
        return out.view(1, out_ch, h, w)
    out = torch.matmul(weight, x.reshape(b, c, h * w))
    if bias is not None:
        out = out + bias.view(1, -1, 1)
    return out.view(b, out_ch, h, w)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """1×1 convolution (a :class:`Conv1x1`)."""
    return Conv1x1(in_ch, out_ch, kernel_size=1, stride=stride, bias=bias)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """3×3 convolution with padding 1 (stride 2 halves an even size exactly)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=bias)


def subpel_conv1x1(in_ch: int, out_ch: int, r: int = 2) -> nn.Sequential:
    """1×1 conv in→out·r² followed by PixelShuffle(r) (×r upsampling); the conv is key ``0``."""
    return nn.Sequential(conv1x1(in_ch, out_ch * r * r), nn.PixelShuffle(r))


class DepthConv(nn.Module):
    """1×1 → LReLU(0.01) → depthwise 3×3 → 1×1 (in→out), plus identity or a 1×1 ``adaptor`` when in≠out.

    Keys: ``conv1.0``, ``depth_conv``, ``conv2``, ``adaptor`` (only when in≠out).
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Sequential(conv1x1(in_ch, in_ch), nn.LeakyReLU(0.01))
        self.depth_conv = nn.Conv2d(in_ch, in_ch, kernel_size=3, padding=1, groups=in_ch)
        self.conv2 = conv1x1(in_ch, out_ch)
        self.adaptor = conv1x1(in_ch, out_ch) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.adaptor is None else self.adaptor(x)
        return self.conv2(self.depth_conv(self.conv1(x))) + identity


class DepthConv3(nn.Module):
    """Inverted bottleneck with a depthwise 5×5: 1×1 in→e·in, LReLU(0.01), depthwise 5×5, 1×1 e·in→in; + x.

    Keys: ``convs.0``, ``convs.2``, ``convs.3``.
    """

    def __init__(self, channels: int, kernel_size: int = 5, expansion: int = 2):
        super().__init__()
        mid = channels * expansion
        self.convs = nn.Sequential(
            conv1x1(channels, mid),
            nn.LeakyReLU(0.01),
            nn.Conv2d(mid, mid, kernel_size=kernel_size, padding=kernel_size // 2, groups=mid),
            conv1x1(mid, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x) + x


class ConvFFN(nn.Module):
    """Conv FFN (the release's ConvFFN3 / ConvFFN4, expansion e = 2): 1×1 in→2·e·in, halves a|b,
    LReLU(0.1)(a) + LReLU(0.01)(b), 1×1 e·in→in; + x.

    Keys: ``conv``, ``conv_out``.
    """

    def __init__(self, channels: int, expansion: int = 2):
        super().__init__()
        hidden = channels * expansion
        self.conv = conv1x1(channels, hidden * 2)
        self.conv_out = conv1x1(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return self.conv_out(F.leaky_relu(a, 0.1) + F.leaky_relu(b, 0.01)) + x


class DCB4(nn.Module):
    """DepthConv(in, out) → ConvFFN(out). Keys ``block.0``, ``block.1``."""

    def __init__(self, in_ch: int, out_ch: int | None = None):
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.block = nn.Sequential(DepthConv(in_ch, out_ch), ConvFFN(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DCB5(nn.Module):
    """DepthConv3(in) → ConvFFN(in) → DepthConv(in, out) → ConvFFN(out). Keys ``block.0..3``."""

    def __init__(self, in_ch: int, out_ch: int | None = None):
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.block = nn.Sequential(DepthConv3(in_ch), ConvFFN(in_ch), DepthConv(in_ch, out_ch), ConvFFN(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ResidualBlockWithStride(nn.Module):
    """×½ residual block: 3×3/2 conv, LReLU(0.01), 3×3 conv, LReLU(0.1); + 1×1/2 ``downsample`` shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride=stride)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.downsample = conv1x1(in_ch, out_ch, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), 0.01)
        out = F.leaky_relu(self.conv2(out), 0.1)
        return out + self.downsample(x)


class ResidualBlockUpsample(nn.Module):
    """×2 residual block: subpel 1×1 + PixelShuffle, LReLU(0.01), 3×3 ``conv``, LReLU(0.1);
    + a separate subpel shortcut (``upsample.0``)."""

    def __init__(self, in_ch: int, out_ch: int, upsample: int = 2):
        super().__init__()
        self.subpel_conv = subpel_conv1x1(in_ch, out_ch, upsample)
        self.conv = conv3x3(out_ch, out_ch)
        self.upsample = subpel_conv1x1(in_ch, out_ch, upsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.subpel_conv(x), 0.01)
        out = F.leaky_relu(self.conv(out), 0.1)
        return out + self.upsample(x)


RBS = ResidualBlockWithStride
RBU = ResidualBlockUpsample


class ResBlock(nn.Module):
    """3×3 conv, GELU, 3×3 conv, GELU, + skip (1×1 ``skip`` when in≠out, else identity)."""

    def __init__(self, in_ch: int, out_ch: int | None = None):
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.conv1 = conv3x3(in_ch, out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.skip = conv1x1(in_ch, out_ch) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.gelu(self.conv1(x))
        out = F.gelu(self.conv2(out))
        return out + (x if self.skip is None else self.skip(x))


class AttnBlock(nn.Module):
    """VQGAN single-head self-attention over all H·W positions (scale C^-½), GN(groups, eps 1e-6); + x.

    Keys: ``norm``, ``q``, ``k``, ``v``, ``proj_out`` (1×1 convs).
    """

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=eps, affine=True)
        self.q = conv1x1(channels, channels)
        self.k = conv1x1(channels, channels)
        self.v = conv1x1(channels, channels)
        self.proj_out = conv1x1(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        # (B, 1, HW, C): one head of dimension C; SDPA's default scale is C^-1/2.
        q = self.q(hn).flatten(2).transpose(1, 2).unsqueeze(1)
        k = self.k(hn).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.v(hn).flatten(2).transpose(1, 2).unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class VResnet(nn.Module):
    """VQGAN ResnetBlock without time embedding: GN, SiLU, 3×3 (no bias), GN, SiLU, 3×3 (no bias), + x.

    Release quirk kept on purpose: when in≠out the residual is ``nin_shortcut(h)`` where ``h`` is the block's own
    output and ``nin_shortcut`` is a 1×1 out→out conv without bias, so the output is ``h + W·h`` and the input
    never reaches the output through a shortcut.
    """

    def __init__(self, in_ch: int, out_ch: int | None = None, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=eps, affine=True)
        self.conv1 = conv3x3(in_ch, out_ch, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_ch, eps=eps, affine=True)
        self.conv2 = conv3x3(out_ch, out_ch, bias=False)
        self.nin_shortcut = conv1x1(out_ch, out_ch, bias=False) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:
            return h + self.nin_shortcut(h)
        return h + x
