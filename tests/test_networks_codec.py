"""Intra / inter codec networks: release-checkpoint layout (official widths, on meta) and tiny-preset behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from s2vc.networks.blocks import DCB4, DCB5, RBS, RBU, AttnBlock, ResBlock, VResnet
from s2vc.networks.inter import InterCodec, checkerboard_masks
from s2vc.networks.intra import IntraCodec, intra_pass_masks, unet_features
from s2vc.presets import TINY, IntraWidths, InterWidths

MANIFESTS = Path(__file__).resolve().parent / "fixtures" / "manifests"  # copies of the official release's manifests
SIZES = [(64, 64), (128, 192)]


def _manifest(name: str) -> list[tuple[str, str, str]]:
    path = MANIFESTS / name
    if not path.is_file():
        pytest.skip(f"release manifest {path} not available")
    lines = path.read_text().splitlines()[1:]
    return [tuple(line.split("\t")[:3]) for line in lines if line.strip()]


def _layout(module: torch.nn.Module) -> list[tuple[str, str, str]]:
    return [(k, str(list(v.shape)), str(v.dtype).removeprefix("torch.")) for k, v in module.state_dict().items()]


def _by_key(rows: list[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    return {k: (shape, dtype) for k, shape, dtype in rows}


@pytest.fixture(scope="module")
def official_intra() -> IntraCodec:
    with torch.device("meta"):
        return IntraCodec(IntraWidths())


@pytest.fixture(scope="module")
def official_inter() -> InterCodec:
    with torch.device("meta"):
        return InterCodec(InterWidths())


@pytest.fixture(scope="module")
def tiny_intra() -> IntraCodec:
    torch.manual_seed(0)
    return IntraCodec(TINY.intra).eval()


@pytest.fixture(scope="module")
def tiny_inter() -> InterCodec:
    torch.manual_seed(0)
    return InterCodec(TINY.inter).eval()


# ---------------------------------------------------------------------------------------------- release layout
def test_intra_state_dict_matches_release_manifest(official_intra):
    expected = _manifest("I_model_1.tsv")
    got = _layout(official_intra)
    assert _by_key(got) == _by_key(expected)  # keys, shapes, dtypes
    assert got == expected  # and the release's order


def test_inter_state_dict_matches_release_manifest(official_inter):
    expected = _manifest("P_model_1.tsv")
    got = _layout(official_inter)
    assert _by_key(got) == _by_key(expected)
    assert got == expected


def test_official_parameter_counts(official_intra, official_inter):
    assert sum(p.numel() for p in official_intra.parameters()) == 394_147_783
    assert sum(p.numel() for p in official_inter.parameters()) == 143_976_768
    assert not list(official_intra.buffers()) and not list(official_inter.buffers())


def test_official_block_parameter_counts():
    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    with torch.device("meta"):
        # DepthConv 512→128 (1×1, dw 3×3, 1×1, adaptor) + ConvFFN(128).
        assert count(DCB4(512, 128)) == (512 * 512 + 512) + (512 * 9 + 512) + 2 * (128 * 512 + 128) + (
            512 * 128 + 512
        ) + (128 * 256 + 128)
        assert count(VResnet(320, 512)) == 2 * 320 + 512 * 320 * 9 + 2 * 512 + 512 * 512 * 9 + 512 * 512
        assert count(AttnBlock(768)) == 2 * 768 + 4 * (768 * 768 + 768)
        assert count(RBS(384, 576)) == (576 * 384 * 9 + 576) + (576 * 576 * 9 + 576) + (576 * 384 + 576)
        assert count(RBU(128, 128)) == 2 * (512 * 128 + 512) + (128 * 128 * 9 + 128)
        assert count(ResBlock(4, 384)) == (384 * 4 * 9 + 384) + (384 * 384 * 9 + 384) + (384 * 4 + 384)
        dcb5 = DCB5(768, 576)
        assert [k for k in dcb5.state_dict() if k.endswith("weight")] == [
            "block.0.convs.0.weight", "block.0.convs.2.weight", "block.0.convs.3.weight",
            "block.1.conv.weight", "block.1.conv_out.weight",
            "block.2.conv1.0.weight", "block.2.depth_conv.weight", "block.2.conv2.weight", "block.2.adaptor.weight",
            "block.3.conv.weight", "block.3.conv_out.weight",
        ]


# ---------------------------------------------------------------------------------------------- blocks
def test_vresnet_in_ne_out_quirk():
    torch.manual_seed(1)
    block = VResnet(4, 8, groups=2).eval()
    x = torch.randn(1, 4, 5, 6)
    h = block.conv2(F.silu(block.norm2(block.conv1(F.silu(block.norm1(x))))))
    w = block.nin_shortcut.weight[:, :, 0, 0]
    expected = h + torch.einsum("oc,bchw->bohw", w, h)
    torch.testing.assert_close(block(x), expected)
    # in == out: plain identity residual
    same = VResnet(8, groups=2).eval()
    y = torch.randn(1, 8, 5, 6)
    h2 = same.conv2(F.silu(same.norm2(same.conv1(F.silu(same.norm1(y))))))
    torch.testing.assert_close(same(y), h2 + y)
    assert same.nin_shortcut is None


def test_attn_block_matches_explicit_softmax():
    torch.manual_seed(2)
    block = AttnBlock(8, groups=4).eval()
    x = torch.randn(2, 8, 3, 5)
    hn = block.norm(x)
    q, k, v = (m(hn).flatten(2) for m in (block.q, block.k, block.v))  # (B, C, N)
    attn = torch.softmax(torch.einsum("bcn,bcm->bnm", q, k) * 8**-0.5, dim=-1)
    out = torch.einsum("bnm,bcm->bcn", attn, v).reshape(2, 8, 3, 5)
    torch.testing.assert_close(block(x), x + block.proj_out(out), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- tiny intra
@pytest.mark.parametrize("hw", SIZES)
def test_tiny_intra_shapes(tiny_intra, hw):
    w = TINY.intra
    h, wd = hw
    b = 2 if hw == SIZES[0] else 1
    x = torch.rand(b, 3, h, wd) * 2 - 1
    latent = torch.randn(b, TINY.intra.latent, h // 8, wd // 8)
    with torch.no_grad():
        y, z = tiny_intra.encode(x, latent)
        assert y.shape == (b, w.y, h // 16, wd // 16)
        assert z.shape == (b, len(w.fsq_levels), h // 64, wd // 64)
        z_hat, index = tiny_intra.quantize_z(z)
        assert z_hat.dtype == torch.float32 and index.dtype == torch.int64 and index.shape == z.shape
        params, reduced, z_sem = tiny_intra.hyper_decode(z_hat)
        assert params.shape == (b, 2 * w.y, h // 16, wd // 16)
        assert reduced.shape == (b, w.y, h // 16, wd // 16)
        assert z_sem.shape == (b, w.y, h // 64, wd // 64)
        y_hat_sum = torch.zeros_like(y)
        for k in (1, 2, 3):
            scales, means = tiny_intra.spatial_prior(k, y_hat_sum, reduced)
            assert scales.shape == means.shape == y.shape
            y_hat_sum = y_hat_sum + means
        with pytest.raises(ValueError):
            tiny_intra.spatial_prior(0, y_hat_sum, reduced)
        f_pix, tokens = tiny_intra.decode(torch.round(y), z_sem)
        assert f_pix.shape == (b, w.ctrl, h // 8, wd // 8)
        assert tokens.shape == (b, (h // 64) * (wd // 64), w.semantic)
        # row-major tokens
        y_sem = tiny_intra.semantic_adaptor(z_sem)
        torch.testing.assert_close(tokens[:, -1], y_sem[:, :, -1, -1])
        if h // 64 > 1:
            torch.testing.assert_close(tokens[:, wd // 64], y_sem[:, :, 1, 0])
    for t in (y, z, params, f_pix, tokens):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()


def test_unet_features_matches_diffusers_forward(tiny_intra):
    unet = tiny_intra.enc.unet
    feat = torch.randn(1, TINY.intra.ctrl, 16, 24)
    with torch.no_grad():
        out, sem = unet_features(unet, feat)
        ref = unet(feat, 999).sample
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert out.shape == (1, TINY.intra.internal, 8, 12)
    assert sem.shape == (1, TINY.intra.unet_channels[-1], 2, 3)


def test_fsq_l4_matches_reference_formula(tiny_intra):
    torch.manual_seed(3)
    z = torch.randn(3, len(TINY.intra.fsq_levels), 4, 5) * 3
    z_hat, index = tiny_intra.quantize_z(z)
    half_l = 1.5 * (1 + 1e-3)
    ref = torch.round(torch.tanh(z + torch.atanh(torch.tensor(0.5 / half_l))) * half_l - 0.5) / 2
    torch.testing.assert_close(z_hat, ref, rtol=0, atol=0)
    assert set(z_hat.unique().tolist()) <= {-1.0, -0.5, 0.0, 0.5}
    torch.testing.assert_close(index, (2 * z_hat + 2).to(torch.int64), rtol=0, atol=0)


def test_fsq_index_round_trip_general_levels():
    levels = (3, 4, 5, 8)
    codec = IntraCodec(IntraWidths(**{**TINY.intra.__dict__, "fsq_levels": levels}))
    z = torch.linspace(-4, 4, 84).view(2, 1, 6, 7).expand(2, len(levels), 6, 7).contiguous()
    z_hat, index = codec.quantize_z(z)
    for c, lv in enumerate(levels):
        assert index[:, c].min() >= 0 and index[:, c].max() <= lv - 1
        # all levels are reached by a dense sweep of z
        assert index[:, c].unique().numel() == lv
    torch.testing.assert_close(codec.dequantize_z(index), z_hat, rtol=0, atol=0)
    # every index value round-trips through z_hat: pick z at the centre of each level's tanh bucket
    lv = torch.tensor(levels, dtype=torch.float64).view(1, -1, 1, 1)
    all_idx = torch.stack([torch.arange(8).clamp_max(n - 1) for n in levels]).view(1, len(levels), 1, 8)
    half_l = (lv - 1) * (1 + 1e-3) / 2
    offset = (lv.remainder(2) == 0).double() * 0.5
    q = all_idx.double() - torch.div(lv, 2, rounding_mode="floor")
    z_centre = torch.atanh((q + offset) / half_l) - torch.atanh(offset / half_l)
    z_hat2, idx2 = codec.quantize_z(z_centre.float())
    torch.testing.assert_close(idx2, all_idx, rtol=0, atol=0)
    torch.testing.assert_close(codec.dequantize_z(all_idx), z_hat2, rtol=0, atol=0)


def test_intra_pass_masks_partition():
    masks = intra_pass_masks(8, 5, 6)
    assert masks.shape == (4, 8, 5, 6) and masks.dtype == torch.float32
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(masks.sum(0), torch.ones(8, 5, 6))
    # pass 0 covers p0 (even, even) in group 0 and p3 (odd, odd) in group 3; pass 1 covers p3 in group 0
    assert masks[0, 0, 0, 0] == 1 and masks[0, 0, 0, 1] == 0 and masks[0, 7, 1, 1] == 1
    assert masks[1, 0, 1, 1] == 1 and masks[2, 4, 0, 0] == 1 and masks[3, 6, 1, 0] == 1
    with pytest.raises(ValueError):
        intra_pass_masks(6, 4, 4)


# ---------------------------------------------------------------------------------------------- tiny inter
@pytest.mark.parametrize("hw", SIZES)
def test_tiny_inter_shapes(tiny_inter, hw):
    w = TINY.inter
    h, wd = hw
    b = 2 if hw == SIZES[0] else 1
    x = torch.rand(b, 3, h, wd) * 2 - 1
    with torch.no_grad():
        ctx, ctx_t = tiny_inter.context(torch.randn(b, TINY.inter.latent, h // 8, wd // 8), None, reset=True)
        assert ctx.shape == ctx_t.shape == (b, w.ch, h // 8, wd // 8)
        y, z = tiny_inter.encode(x, ctx)
        assert y.shape == (b, w.y, h // 16, wd // 16)
        assert z.shape == (b, w.z, h // 64, wd // 64)
        q_dec, scales, means, params = tiny_inter.prior(torch.round(z), ctx_t)
        for t in (q_dec, scales, means):
            assert t.shape == y.shape
        assert params.shape == (b, 3 * w.y, h // 16, wd // 16)
        assert (q_dec >= 0.5).all()
        mask_a, mask_b = checkerboard_masks(w.y, h // 16, wd // 16)
        y_hat_a = (torch.round((y / q_dec - means) * mask_a) + means) * mask_a
        scales_b, means_b = tiny_inter.spatial_prior(y_hat_a, params)
        assert scales_b.shape == means_b.shape == y.shape
        feature, f_pix, tokens = tiny_inter.decode(y_hat_a * q_dec, ctx)
        assert feature.shape == (b, w.ch, h // 8, wd // 8)
        assert f_pix.shape == (b, w.ctrl, h // 8, wd // 8)
        assert tokens.shape == (b, (h // 64) * (wd // 64), w.semantic)
        sem = tiny_inter.recon_semantic(feature)
        torch.testing.assert_close(tokens[:, -1], sem[:, :, -1, -1])
        if h // 64 > 1:
            torch.testing.assert_close(tokens[:, wd // 64], sem[:, :, 1, 0])
        ctx2, ctx_t2 = tiny_inter.context(None, feature, reset=False)
        assert ctx2.shape == ctx_t2.shape == ctx.shape
    for t in (y, z, params, feature, f_pix, tokens, ctx2):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()


def test_checkerboard_masks_partition():
    mask_a, mask_b = checkerboard_masks(6, 4, 5)
    assert mask_a.shape == mask_b.shape == (1, 6, 4, 5) and mask_a.dtype == torch.float32
    torch.testing.assert_close(mask_a + mask_b, torch.ones(1, 6, 4, 5))
    assert mask_a[0, 0, 0, 0] == 1 and mask_a[0, 0, 0, 1] == 0 and mask_a[0, 0, 1, 1] == 1
    assert mask_a[0, 3, 0, 0] == 0 and mask_a[0, 3, 0, 1] == 1  # second half: c1


def test_bit_estimator_pmf_table(tiny_inter):
    est = tiny_inter.bit_estimator_z
    table = est.pmf_table(-8, 8)
    assert table.dtype == torch.float64 and table.shape == (TINY.inter.z, 17)
    assert (table > 0).all()
    torch.testing.assert_close(table.sum(1), torch.ones(TINY.inter.z, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(table, est.pmf_table(-8, 8))  # deterministic
    # float32 likelihood agrees with the table away from the clamp
    z = torch.arange(-3, 4, dtype=torch.float32).view(1, 1, 1, 7).expand(1, TINY.inter.z, 1, 7)
    lik = est.likelihood(z)[0, :, 0, :].double()
    sub = table[:, 5:12]
    torch.testing.assert_close(lik / lik.sum(1, keepdim=True), sub / sub.sum(1, keepdim=True), rtol=1e-4, atol=1e-6)
