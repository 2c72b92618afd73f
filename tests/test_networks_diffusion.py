"""Codec U-Net (s2vc.networks.unet) and SD2.1-style VAE (s2vc.networks.vae)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn

from s2vc.networks.unet import ALPHA_BAR_999, CodecUNet, alpha_bar, eps_to_x0
from s2vc.networks.vae import CodecVAE, WindowedAttnProcessor, window_slices
from s2vc.presets import OFFICIAL, TINY

MANIFESTS = Path(__file__).resolve().parent / "fixtures" / "manifests"  # copies of the official manifests (tests/fixtures/manifests/README.md)


def _manifest(name: str) -> dict[str, tuple[list[int], str]]:
    path = MANIFESTS / name
    if not path.is_file():
        pytest.skip(f"release manifest {path} not available")
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return {k: ([int(s) for s in shape.strip("[]").split(",") if s.strip()], dtype) for k, shape, dtype, _ in rows}


def _described(module: nn.Module) -> dict[str, tuple[list[int], str]]:
    return {k: (list(t.shape), str(t.dtype).removeprefix("torch.")) for k, t in module.state_dict().items()}


def _assert_same(mine: dict, ref: dict) -> None:
    missing, extra = sorted(set(ref) - set(mine)), sorted(set(mine) - set(ref))
    assert not missing and not extra, f"missing {missing[:5]} ({len(missing)}), unexpected {extra[:5]} ({len(extra)})"
    bad = [(k, mine[k], ref[k]) for k in ref if mine[k] != ref[k]]
    assert not bad, bad[:5]


# ---------------------------------------------------------------------------------------------- official widths
@pytest.fixture(scope="module")
def official_unet() -> CodecUNet:
    with torch.device("meta"):
        return CodecUNet(OFFICIAL.unet)


def test_official_unet_state_dict_matches_release(official_unet):
    _assert_same(_described(official_unet), _manifest("P_model.tsv"))


def test_official_unet_parameter_counts(official_unet):
    assert sum(p.numel() for p in official_unet.parameters()) == 1_220_514_380
    layers = official_unet.lora_layers()
    assert len(layers) == 278
    kinds = [type(layer.get_base_layer()) for layer in layers]
    assert kinds.count(nn.Linear) == 182 and kinds.count(nn.Conv2d) == 96
    for adapter in ("iframe", "pframe"):
        n = sum(p.numel() for k, p in official_unet.named_parameters() if f".lora_A.{adapter}." in k or f".lora_B.{adapter}." in k)
        assert n == 67_252_224
    # conv_in is plain (not LoRA-wrapped) and every parameter is trainable by default
    assert type(official_unet.conv_in) is nn.Conv2d
    assert all(p.requires_grad for p in official_unet.parameters())
    fusion = [sum(p.numel() for p in official_unet.motion_fusion(i).parameters()) for i in range(3)]
    assert [round(n / 1e4) for n in fusion] == [1246, 4422, 16796]


def test_official_vae_state_dict_matches_release():
    with torch.device("meta"):
        vae = CodecVAE(OFFICIAL.vae)
    _assert_same(_described(vae), _manifest("SD21_vae.tsv"))
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863


def test_vae_from_config_dict():
    cfg = {  # stable-diffusion-2-1/vae/config.json
        "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
        "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 768,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    with torch.device("meta"):
        vae = CodecVAE.from_config_dict(cfg)
    assert vae.widths == OFFICIAL.vae
    with pytest.raises(ValueError):
        CodecVAE.from_config_dict({**cfg, "shift_factor": 0.1})


# ---------------------------------------------------------------------------------------------- tiny U-Net
@pytest.fixture(scope="module")
def tiny_unet() -> CodecUNet:
    torch.manual_seed(0)
    return CodecUNet(TINY.unet).eval()


def _inputs(h: int, w: int, batch: int = 1, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    u = TINY.unet
    f_pix = torch.randn(batch, u.in_channels, h, w, generator=g)
    tokens = torch.randn(batch, (h // 8) * (w // 8), u.cross_attention_dim, generator=g)
    return f_pix, tokens


def _randomize_lora(unet: CodecUNet, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("h,w", [(8, 8), (16, 24)])
@pytest.mark.parametrize("adapter", ["iframe", "pframe"])
def test_tiny_unet_forward_shapes(tiny_unet, h, w, adapter):
    f_pix, tokens = _inputs(h, w)
    bo = TINY.unet.block_out_channels
    with torch.no_grad():
        x0, feats = tiny_unet(f_pix, tokens, None, adapter)
        x0b, feats_b = tiny_unet(f_pix, tokens, feats, adapter)
    for out, fs in ((x0, feats), (x0b, feats_b)):
        assert out.shape == (1, TINY.unet.latent, h, w) and out.dtype == torch.float32
        assert [tuple(f.shape) for f in fs] == [(1, bo[0], h // 2, w // 2), (1, bo[1], h // 4, w // 4), (1, bo[2], h // 8, w // 8)]
        assert torch.isfinite(out).all()


def test_tiny_unet_batch(tiny_unet):
    f_pix, tokens = _inputs(16, 24, batch=2)
    with torch.no_grad():
        x0, feats = tiny_unet(f_pix, tokens, None, "iframe")
        x0_1, _ = tiny_unet(f_pix[1:], tokens[1:], None, "iframe")
        x0b, _ = tiny_unet(f_pix, tokens, feats, "pframe")
    assert x0.shape == x0b.shape == (2, TINY.unet.latent, 16, 24)
    torch.testing.assert_close(x0[1:], x0_1, rtol=1e-4, atol=1e-4)


def test_adapter_switch_changes_output_and_keeps_no_state():
    torch.manual_seed(0)
    unet = CodecUNet(TINY.unet).eval()
    f_pix, tokens = _inputs(16, 24)
    with torch.no_grad():
        a0, _ = unet(f_pix, tokens, None, "iframe")
        b0, _ = unet(f_pix, tokens, None, "pframe")
        torch.testing.assert_close(a0, b0, rtol=0, atol=0)  # LoRA B initialised to zero
        _randomize_lora(unet)
        a1, fa = unet(f_pix, tokens, None, "iframe")
        b1, fb = unet(f_pix, tokens, None, "pframe")
        a2, _ = unet(f_pix, tokens, None, "iframe")
    assert not torch.allclose(a1, b1, atol=1e-3)
    assert not torch.allclose(a1, a0, atol=1e-3)
    assert not torch.allclose(fa[0], fb[0], atol=1e-4)
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    assert unet.active_adapter == "iframe"
    with pytest.raises(ValueError):
        unet(f_pix, tokens, None, "bframe")


def test_adapter_switch_keeps_requires_grad():
    torch.manual_seed(0)
    unet = CodecUNet(TINY.unet)
    for name, p in unet.named_parameters():
        p.requires_grad_(".lora_" in name and ".pframe." in name)
    before = {n: p.requires_grad for n, p in unet.named_parameters()}
    f_pix, tokens = _inputs(8, 8)
    with torch.no_grad():
        unet(f_pix, tokens, None, "iframe")
        unet(f_pix, tokens, None, "pframe")
    assert before == {n: p.requires_grad for n, p in unet.named_parameters()}


def test_motion_fusion_effect():
    torch.manual_seed(0)
    unet = CodecUNet(TINY.unet).eval()
    f_pix, tokens = _inputs(16, 24)
    prev_pix, prev_tokens = _inputs(16, 24, seed=7)
    with torch.no_grad():
        _, prev = unet(prev_pix, prev_tokens, None, "iframe")
        x_none, f_none = unet(f_pix, tokens, None, "pframe")
        x_zero, f_zero = unet(f_pix, tokens, prev, "pframe")
        # zero_conv initialised to zero: fusion is the identity
        torch.testing.assert_close(x_none, x_zero, rtol=0, atol=0)
        for i in range(3):
            nn.init.normal_(unet.motion_fusion(i).zero_conv.weight, std=0.2)
        x_none2, f_none2 = unet(f_pix, tokens, None, "pframe")
        x_fused, f_fused = unet(f_pix, tokens, prev, "pframe")
    torch.testing.assert_close(x_none, x_none2, rtol=0, atol=0)  # no prev: fusion never runs
    assert not torch.allclose(x_none, x_fused, atol=1e-4)
    # feats are pre-fusion: block 0's output does not see fusion, later ones see the fused running tensor
    torch.testing.assert_close(f_none[0], f_fused[0], rtol=0, atol=0)
    assert not torch.allclose(f_none[1], f_fused[1], atol=1e-5)


def test_skip_connections_keep_unfused_values():
    torch.manual_seed(0)
    unet = CodecUNet(TINY.unet).eval()
    for i in range(3):
        nn.init.normal_(unet.motion_fusion(i).zero_conv.weight, std=0.2)
    f_pix, tokens = _inputs(16, 24)
    _, prev = unet(*_inputs(16, 24, seed=3), None, "iframe")
    seen = {}

    def grab(idx):
        def hook(module, args, kwargs):
            seen[idx] = kwargs["res_hidden_states_tuple"]
        return hook

    handles = [unet.up_blocks[j].register_forward_pre_hook(grab(j), with_kwargs=True) for j in range(3)]
    try:
        with torch.no_grad():
            _, feats = unet(f_pix, tokens, prev, "pframe")
    finally:
        for hd in handles:
            hd.remove()
    # up block j consumes (down block (2-j)'s downsampled output, ...) first: it must be the unfused h_{2-j}
    for j in range(3):
        assert seen[j][0] is feats[2 - j]


def test_inputs_not_mutated(tiny_unet):
    f_pix, tokens = _inputs(16, 24)
    with torch.no_grad():
        _, prev = tiny_unet(f_pix, tokens, None, "iframe")
    prev_list = list(prev)
    copies = [t.clone() for t in (f_pix, tokens, *prev_list)]
    with torch.no_grad():
        tiny_unet(f_pix, tokens, prev_list, "pframe")
    assert len(prev_list) == 3 and all(a is b for a, b in zip(prev_list, prev))
    for a, b in zip((f_pix, tokens, *prev_list), copies):
        assert torch.equal(a, b)


def test_bad_prev_feats(tiny_unet):
    f_pix, tokens = _inputs(8, 8)
    with torch.no_grad():
        _, feats = tiny_unet(f_pix, tokens, None, "iframe")
        with pytest.raises(ValueError):
            tiny_unet(f_pix, tokens, feats[:2], "pframe")
        with pytest.raises(ValueError):
            tiny_unet(f_pix, tokens, [feats[0], feats[2], feats[1]], "pframe")


def test_alpha_bar_and_x0():
    assert ALPHA_BAR_999 == 0.00466009508818388
    assert alpha_bar(999) == ALPHA_BAR_999
    g = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(1, 4, 3, 5, generator=g), torch.randn(1, 4, 3, 5, generator=g)
    x0 = eps_to_x0(x_t, eps)
    assert x0.dtype == torch.float32
    a = torch.tensor(ALPHA_BAR_999, dtype=torch.float64)
    ref = ((x_t.double() - (1 - a).sqrt() * eps.double()) / a.sqrt()).float()
    assert torch.equal(x0, ref)
    torch.testing.assert_close(x0, (x_t - 0.9976672 * eps) * 14.6488, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------- VAE
@pytest.fixture(scope="module")
def tiny_vae() -> CodecVAE:
    torch.manual_seed(0)
    return CodecVAE(TINY.vae).eval()


def test_window_slices():
    assert window_slices(24, 16) == [(0, 16), (16, 24)]
    assert window_slices(40, 16) == [(0, 16), (16, 32), (32, 40)]
    assert window_slices(8, 16) == [(0, 8)]


def _attn(vae: CodecVAE):
    attns = vae.mid_attentions()
    assert len(attns) == 2 and all(isinstance(a.processor, WindowedAttnProcessor) for a in attns)
    return attns[0]


def _run_attn(attn, processor, x):
    old = attn.processor
    attn.set_processor(processor)
    try:
        with torch.no_grad():
            return attn(x)
    finally:
        attn.set_processor(old)


def test_windowed_attention_global_when_window_covers_map(tiny_vae):
    attn = _attn(tiny_vae)
    c = attn.to_q.in_features
    x = torch.randn(2, c, 12, 20, generator=torch.Generator().manual_seed(0))
    ref = _run_attn(attn, AttnProcessor2_0(), x)
    for window in (20, 32):
        torch.testing.assert_close(_run_attn(attn, WindowedAttnProcessor(window), x), ref, rtol=0, atol=0)
    assert not torch.allclose(_run_attn(attn, WindowedAttnProcessor(8), x), ref, atol=1e-5)


def test_windowed_attention_is_local_and_per_window(tiny_vae):
    attn = _attn(tiny_vae)
    c = attn.to_q.in_features
    x = torch.randn(1, c, 24, 40, generator=torch.Generator().manual_seed(0))
    out = _run_attn(attn, WindowedAttnProcessor(16), x)
    # equals the stock attention applied window by window (edge windows partial)
    for r0, r1 in window_slices(24, 16):
        for c0, c1 in window_slices(40, 16):
            ref = _run_attn(attn, AttnProcessor2_0(), x[:, :, r0:r1, c0:c1].contiguous())
            torch.testing.assert_close(out[:, :, r0:r1, c0:c1], ref, rtol=1e-5, atol=1e-5)
    # a perturbation inside the window rows 16..24 × cols 32..40 changes only that window
    y = x.clone()
    y[:, :, 18, 35] += 5.0
    out2 = _run_attn(attn, WindowedAttnProcessor(16), y)
    changed = (out2 - out).abs().amax(dim=1)[0] > 0
    assert changed[16:24, 32:40].all()
    changed[16:24, 32:40] = False
    assert not changed.any()


def test_tiny_vae_encode_decode(tiny_vae):
    x = torch.rand(1, 3, 128, 192, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        z = tiny_vae.encode(x)
        z_s1 = tiny_vae.encode(x, sample=True, generator=torch.Generator().manual_seed(5))
        z_s2 = tiny_vae.encode(x, sample=True, generator=torch.Generator().manual_seed(5))
        y = tiny_vae.decode(z)
    assert z.shape == (1, TINY.vae.latent_channels, 16, 24) and y.shape == (1, 3, 128, 192)
    assert torch.equal(z_s1, z_s2) and not torch.allclose(z, z_s1)
    mean, logvar = tiny_vae.moments(x)
    torch.testing.assert_close(z, 0.18215 * mean)
    assert logvar.min() >= -30 and logvar.max() <= 20
    assert tiny_vae.state_dict().keys() == CodecVAE(TINY.vae).state_dict().keys()


def test_vae_patch_size_folds_pixels_into_channels():
    """patch_size p runs the diffusers model at /p: its first conv sees 3p² channels, its last conv's output is
    unfolded back to pixels, and the preset refuses a patch size that moves the latent off /8."""
    from dataclasses import replace

    widths = replace(TINY.vae, block_out_channels=(16, 32), patch_size=4, norm_groups=2)
    vae = CodecVAE(widths).eval()
    assert vae.encoder.conv_in.in_channels == 48 and vae.decoder.conv_out.out_channels == 48
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x)
        y = vae.decode(z)
        direct = torch.nn.functional.pixel_shuffle(vae.decoder(vae.post_quant_conv(z / vae.scaling_factor)), 4)
    assert z.shape == (1, widths.latent_channels, 8, 12) and y.shape == x.shape
    torch.testing.assert_close(y, direct)
    with pytest.raises(ValueError, match="latent must be at /8"):
        replace(TINY, vae=replace(TINY.vae, patch_size=2))
    with pytest.raises(ValueError, match="latent must be at /8"):
        replace(TINY, vae=replace(TINY.vae, patch_size=0))
