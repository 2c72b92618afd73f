"""Inference fast paths: merged-LoRA U-Net forward and the GEMM 1×1 convolution."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F

from s2vc.networks.blocks import Conv1x1, conv1x1
from s2vc.networks.unet import CodecUNet
from s2vc.presets import TINY

# Merged weights (W + B·A·s) and the PEFT wrapper (W·x + B·(A·x)·s) differ only in float32 summation order.
MERGED_RTOL = 1e-4


def _unet(seed: int = 0) -> CodecUNet:
    torch.manual_seed(seed)
    unet = CodecUNet(TINY.unet).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".lora_B." in name or "zero_conv" in name:  # non-zero adapters and fusion, so both paths matter
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return unet


def _inputs(h: int = 16, w: int = 24, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    u = TINY.unet
    return torch.randn(1, u.in_channels, h, w, generator=g), torch.randn(1, 6, u.cross_attention_dim, generator=g)


def _peft(unet: CodecUNet, *args):
    """The unmerged PEFT path, forced."""
    unet._merge_ok, ok = False, unet._merge_ok
    try:
        with torch.no_grad():
            return unet(*args)
    finally:
        unet._merge_ok = ok


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = b.abs().max().item()
    assert (a - b).abs().max().item() <= MERGED_RTOL * max(scale, 1.0)


@pytest.mark.parametrize("adapter", ["iframe", "pframe"])
def test_merged_lora_matches_peft(adapter):
    unet = _unet()
    f_pix, tokens = _inputs()
    _, prev = _peft(unet, f_pix, tokens, None, adapter)
    ref, ref_feats = _peft(unet, f_pix, tokens, prev, adapter)
    with torch.inference_mode():
        assert unet.uses_merged_lora()
        out, feats = unet(f_pix, tokens, prev, adapter)
    _close(out, ref)
    for a, b in zip(feats, ref_feats):
        _close(a, b)
    with torch.no_grad():  # plain no-grad takes the fast path too, and gives the same bits
        again, _ = unet(f_pix, tokens, prev, adapter)
    assert torch.equal(again, out)


def test_a_merged_call_leaves_other_calls_alone():
    """Nothing is swapped: a PEFT-path call after a fast one is PEFT's, and fast calls of both adapters in two
    threads at once give what each gives alone."""
    unet = _unet()
    f_pix, tokens = _inputs()
    with torch.inference_mode():
        alone = {a: unet(f_pix, tokens, None, a)[0] for a in ("iframe", "pframe")}
    peft, _ = _peft(unet, f_pix, tokens, None, "pframe")
    _close(alone["pframe"], peft)

    def run(adapter: str) -> torch.Tensor:
        with torch.inference_mode():
            return unet(f_pix, tokens, None, adapter)[0]

    with ThreadPoolExecutor(2) as pool:
        together = dict(zip(("iframe", "pframe"), pool.map(run, ("iframe", "pframe"))))
    assert all(torch.equal(together[a], alone[a]) for a in alone)


def test_fast_path_only_without_autograd_and_in_eval():
    unet = _unet()
    assert not unet.uses_merged_lora()  # grad enabled
    with torch.no_grad():
        assert unet.uses_merged_lora()
        unet.train()
        assert not unet.uses_merged_lora()


def test_adapters_are_cached_separately():
    unet = _unet()
    f_pix, tokens = _inputs()
    with torch.inference_mode():
        a, _ = unet(f_pix, tokens, None, "iframe")
        b, _ = unet(f_pix, tokens, None, "pframe")
        a2, _ = unet(f_pix, tokens, None, "iframe")
    assert not torch.equal(a, b) and torch.equal(a, a2)
    assert set(unet._merged) == {"iframe", "pframe"}


def test_cache_invalidated_by_in_place_weight_change():
    unet = _unet()
    f_pix, tokens = _inputs()
    with torch.inference_mode():
        before, _ = unet(f_pix, tokens, None, "pframe")
    layer = unet.lora_layers()[3]
    with torch.no_grad():
        layer.lora_B["pframe"].weight.add_(0.5)
    ref, _ = _peft(unet, f_pix, tokens, None, "pframe")
    with torch.inference_mode():
        after, _ = unet(f_pix, tokens, None, "pframe")
    assert not torch.equal(before, after)
    _close(after, ref)


def test_cache_invalidated_by_load_state_dict_and_train():
    unet, other = _unet(0), _unet(5)
    f_pix, tokens = _inputs()
    with torch.inference_mode():
        unet(f_pix, tokens, None, "pframe")
    unet.load_state_dict(other.state_dict())
    with torch.inference_mode():
        out, _ = unet(f_pix, tokens, None, "pframe")
        ref, _ = other(f_pix, tokens, None, "pframe")
    assert torch.equal(out, ref)
    unet.train()
    assert unet._merged == {}
    with torch.no_grad():  # swapping a Parameter object is caught too
        layer = unet.lora_layers()[0]
        layer.base_layer.weight = torch.nn.Parameter(layer.base_layer.weight * 2)
    unet.eval()
    with torch.inference_mode():
        unet(f_pix, tokens, None, "pframe")
        key = unet._merged_key
        layer.base_layer.weight = torch.nn.Parameter(layer.base_layer.weight * 2)
        unet(f_pix, tokens, None, "pframe")
        assert unet._merged_key != key


def test_deepcopy_keeps_working():
    unet = _unet()
    f_pix, tokens = _inputs()
    with torch.inference_mode():
        a, _ = unet(f_pix, tokens, None, "pframe")
    clone = copy.deepcopy(unet)
    with torch.inference_mode():
        b, _ = clone(f_pix, tokens, None, "pframe")
    assert torch.equal(a, b)


def test_training_path_has_gradients():
    unet = _unet().train()
    f_pix, tokens = _inputs()
    out, _ = unet(f_pix, tokens, None, "pframe")
    out.sum().backward()
    layer = unet.lora_layers()[0]
    assert layer.lora_A["pframe"].weight.grad is not None


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_conv1x1_gemm_matches_conv2d(batch, bias):
    torch.manual_seed(0)
    conv = conv1x1(12, 20, bias=bias)
    assert isinstance(conv, Conv1x1) and isinstance(conv, torch.nn.Conv2d)
    assert set(conv.state_dict()) == ({"weight", "bias"} if bias else {"weight"})
    x = torch.randn(batch, 12, 7, 9)
    ref = F.conv2d(x, conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)
    strided = conv1x1(12, 20, stride=2, bias=bias)
    torch.testing.assert_close(strided(x), F.conv2d(x, strided.weight, strided.bias, stride=2))
    # gradients flow like a convolution
    x.requires_grad_(True)
    conv(x).sum().backward()
    assert x.grad is not None and conv.weight.grad is not None
