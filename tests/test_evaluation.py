"""Evaluation building blocks: metrics, BD-rate, traditional-codec anchors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from s2vc_evaluation import bdrate, metrics
from s2vc_evaluation.anchors import ANCHORS, encode_anchor, sweep_to_bpp

FOREMAN = Path(__file__).resolve().parent / "fixtures" / "clips" / "foreman_352x288.h264"  # a cut kept in the repository


def _smooth_image(h=256, w=320, seed=0):
    rng = np.random.default_rng(seed)
    img = np.cumsum(rng.normal(0, 4, (h, w, 3)), axis=1) + np.cumsum(rng.normal(0, 2, (h, 1, 3)), axis=0) + 128
    return np.clip(img, 0, 255).astype(np.uint8)


def _noisy(img, sigma, seed=1):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------------------------ PSNR


def test_psnr_identical_and_known_error():
    a = _smooth_image(64, 80)
    assert metrics.psnr(a, a) == math.inf
    a2 = np.clip(a, 0, 250)  # half the rows off by exactly 5, none clipped: MSE = 25 / 2
    b2 = a2.astype(np.int16)
    b2[::2] += 5
    mse = 25 / 2
    assert metrics.psnr(a2, b2.astype(np.uint8)) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)


def test_psnr_gaussian_noise_close_to_theory():
    a = np.full((128, 128, 3), 128, np.uint8)
    b = _noisy(a, 10.0)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100), abs=0.1)


def test_psnr_yuv_611_weighting_hand_case():
    a = np.full((8, 8, 3), 100, np.uint8)  # a gray: Y'=16+219*100/255, Cb=Cr=128 in either matrix
    ycc = metrics.rgb_to_ycbcr(a)
    assert ycc[0, 0] == pytest.approx([16 + 219 * 100 / 255, 128, 128])
    # add +10 to R only: BT.709 gives ΔY' = 219·0.2126·10/255, ΔCr = 224·(1-0.2126)·10/255/(2·0.7874)...
    b = a.copy()
    b[..., 0] += 10
    kr, kb = 0.2126, 0.0722
    dy = 219 * kr * 10 / 255
    dcb = 224 * (-kr * 10 / 255) / (2 * (1 - kb))
    dcr = 224 * ((1 - kr) * 10 / 255) / (2 * (1 - kr))
    out = metrics.psnr_yuv(a, b)
    expect = [10 * math.log10(255**2 / d**2) for d in (dy, dcb, dcr)]
    assert [out["y"], out["u"], out["v"]] == pytest.approx(expect, abs=1e-9)
    assert out["yuv"] == pytest.approx((6 * expect[0] + expect[1] + expect[2]) / 8, abs=1e-9)
    # BT.601 differs, full range differs, identical frames give inf
    assert metrics.psnr_yuv(a, b, matrix="bt601")["y"] != pytest.approx(out["y"])
    assert metrics.psnr_yuv(a, a)["yuv"] == math.inf
    with pytest.raises(ValueError):
        metrics.psnr_yuv(a, b, matrix="bt2020")


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


# ------------------------------------------------------------------------------------------------ MS-SSIM


def test_ms_ssim_identical_and_monotonic_in_noise():
    a = _smooth_image()
    assert metrics.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    scores = [metrics.ms_ssim(a, _noisy(a, s)) for s in (2, 8, 20, 40)]
    assert all(x > y for x, y in zip(scores, scores[1:])), scores
    assert 0 < scores[-1] < 1
    assert metrics.ms_ssim(a, _noisy(a, 8), channel="y") < 1


def test_ms_ssim_too_small_is_an_error_and_odd_sizes_work():
    small = np.zeros((144, 176, 3), np.uint8)
    with pytest.raises(ValueError, match="161x161"):
        metrics.ms_ssim(small, small)
    a = _smooth_image(171, 203)
    assert 0.5 < metrics.ms_ssim(a, _noisy(a, 5)) < 1


def test_ms_ssim_matches_pytorch_msssim_reference():
    ref = pytest.importorskip("pytorch_msssim", reason="pytorch-msssim (test extra) is the reference implementation")
    import torch

    a = _smooth_image()
    b = _noisy(a, 10)
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None].double() for x in (a, b))
    assert metrics.ms_ssim(a, b) == pytest.approx(ref.ms_ssim(ta, tb, data_range=255).item(), abs=1e-6)
    assert metrics.ssim(a, b) == pytest.approx(ref.ssim(ta, tb, data_range=255).item(), abs=1e-6)


# ------------------------------------------------------------------------------------------------ VMAF, learned


def test_vmaf_or_clear_error():
    a = _smooth_image(144, 176)
    frames = [a, np.roll(a, 2, axis=1)]
    if metrics.find_ffmpeg(require_filter="libvmaf") is None:
        with pytest.raises(metrics.VmafUnavailableError, match="libvmaf"):
            metrics.vmaf(frames, frames)
        pytest.skip("no FFmpeg with libvmaf here (install the eval extra: imageio-ffmpeg)")
    same = metrics.vmaf(frames, frames)
    worse = metrics.vmaf(frames, [_noisy(f, 15) for f in frames])
    assert len(same["frames"]) == 2
    assert same["mean"] > 95 and worse["mean"] < same["mean"]


def test_vmaf_with_a_binary_without_libvmaf_says_what_to_install(tmp_path):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho ' .. psnr  VV->V  Calculate the PSNR'\n")
    fake.chmod(0o755)
    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(metrics.VmafUnavailableError, match="imageio-ffmpeg"):
        metrics.vmaf([a], [a], ffmpeg=str(fake))


def test_learned_metrics_need_local_weights(tmp_path):
    a = _smooth_image(64, 64)
    for fn in (metrics.lpips, metrics.dists):
        with pytest.raises(metrics.MissingWeightsError, match="weights"):
            fn(a, a)
        with pytest.raises(metrics.MissingWeightsError, match="does not exist"):
            fn(a, a, weights=tmp_path / "nope.pth", backbone=tmp_path / "nope2.pth")
    with pytest.raises(metrics.MissingWeightsError):
        metrics.fid([a, a], [a, a])


def test_lpips_and_dists_run_on_local_weights(tmp_path):
    """Random weights in the published layouts: identical frames give 0, different ones a positive value."""
    import torch

    g = torch.Generator().manual_seed(0)
    alex = {}
    for i, (cin, cout, k) in zip((0, 3, 6, 8, 10), ((3, 64, 11), (64, 192, 5), (192, 384, 3), (384, 256, 3), (256, 256, 3))):
        alex[f"features.{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.05
        alex[f"features.{i}.bias"] = torch.zeros(cout)
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(alex, tmp_path / "alex.pth")
    torch.save(lin, tmp_path / "lin.pth")
    a = _smooth_image(64, 64)
    b = _noisy(a, 20)
    kw = {"weights": tmp_path / "lin.pth", "backbone": tmp_path / "alex.pth"}
    assert metrics.lpips(a, a, **kw) == pytest.approx(0.0, abs=1e-6)
    assert metrics.lpips(a, b, **kw) > 0

    vgg, cin, idx = {}, 3, 0
    for v in metrics._VGG16_CFG:
        if v == "M":
            idx += 1
            continue
        vgg[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * 0.05
        vgg[f"features.{idx}.bias"] = torch.zeros(v)
        cin, idx = v, idx + 2
    torch.save(vgg, tmp_path / "vgg.pth")
    torch.save({"alpha": torch.rand(1, 1475, 1, 1, generator=g), "beta": torch.rand(1, 1475, 1, 1, generator=g)},
               tmp_path / "dists.pt")
    kw = {"weights": tmp_path / "dists.pt", "backbone": tmp_path / "vgg.pth"}
    assert metrics.dists(a, a, **kw) == pytest.approx(0.0, abs=1e-5)
    assert metrics.dists(a, b, **kw) > 1e-4


# ------------------------------------------------------------------------------------------------ BD-rate

RATES = np.array([0.02, 0.04, 0.07, 0.12])
PSNRS = np.array([29.0, 31.5, 33.2, 34.6])


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_a_curve_shifted_by_ten_percent(method):
    # the test codec needs 0.9x the anchor's rate at every quality: log-rate is shifted by log(0.9) everywhere,
    # so BD-rate = 0.9 - 1 = -10 %; seen the other way round, 1/0.9 - 1 = +11.11 %
    assert bdrate.bd_rate(RATES, PSNRS, 0.9 * RATES, PSNRS, method) == pytest.approx(-10.0, abs=1e-6)
    assert bdrate.bd_rate(0.9 * RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(100 / 9, abs=1e-6)
    assert bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-9)
    # 0.5 dB better at every rate: BD-PSNR = +0.5 dB
    assert bdrate.bd_quality(RATES, PSNRS, RATES, PSNRS + 0.5, method) == pytest.approx(0.5, abs=1e-9)


def test_bd_rate_on_lines_sampled_at_different_rates():
    # Q = 30 + 10·log10(R) for the anchor and Q = 30 + 10·log10(R / 0.8) for the test codec, sampled at
    # different rates and given out of order: the test codec needs 0.8x the rate → BD-rate −20 %,
    # and gives 10·log10(1/0.8) = 0.969 dB more at the same rate.
    ra = np.array([0.4, 0.05, 0.2, 0.1])
    rb = np.array([0.03, 0.07, 0.15, 0.33, 0.5])
    qa, qb = 30 + 10 * np.log10(ra), 30 + 10 * np.log10(rb / 0.8)
    assert bdrate.bd_rate(ra, qa, rb, qb) == pytest.approx(-20.0, abs=1e-6)
    assert bdrate.bd_psnr(ra, qa, rb, qb) == pytest.approx(10 * math.log10(1 / 0.8), abs=1e-9)
    assert bdrate.bd_rate(ra, qa, rb, qb, "cubic") == pytest.approx(-20.0, abs=1e-6)


def test_bd_rate_errors():
    with pytest.raises(ValueError, match="at least 2"):
        bdrate.bd_rate([0.1], [30], RATES, PSNRS)
    with pytest.raises(ValueError, match="at least 4"):
        bdrate.bd_rate(RATES[:3], PSNRS[:3], RATES, PSNRS, "cubic")
    with pytest.raises(ValueError, match="not monotonic"):
        bdrate.bd_rate(RATES, [29, 32, 31, 34], RATES, PSNRS)
    with pytest.raises(ValueError, match="do not overlap"):
        bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS + 10)
    with pytest.raises(ValueError, match="do not overlap"):
        bdrate.bd_quality(RATES, PSNRS, RATES * 100, PSNRS)
    with pytest.raises(ValueError, match="distinct"):
        bdrate.bd_rate([0.1, 0.1, 0.2], [30, 31, 32], RATES, PSNRS)
    with pytest.raises(ValueError, match="positive"):
        bdrate.bd_rate([0, 0.1], [30, 31], RATES, PSNRS)
    with pytest.raises(ValueError, match="method"):
        bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS, "linear")
    with pytest.raises(ValueError, match="finite"):
        bdrate.bd_rate(RATES, [29, 31, 33, math.inf], RATES, PSNRS)


# ------------------------------------------------------------------------------------------------ anchors


@pytest.fixture(scope="module")
def foreman():
    from s2vc.video_io import VideoReader

    return list(VideoReader(FOREMAN).frames(6))


def test_x264_anchor_is_p_only_and_rate_quality_monotonic(foreman):
    results = [encode_anchor(foreman, "x264-medium", crf) for crf in (36, 30, 24)]
    for r in results:
        assert r.num_bytes > 0 and r.num_bytes == sum(r.packet_sizes)
        assert len(r.decoded) == len(foreman)
        assert all(d.shape == (288, 352, 3) and d.dtype == np.uint8 for d in r.decoded)
        # only the first frame is a key frame, and there are no B-frames
        assert r.key_frames == [True] + [False] * (len(foreman) - 1)
        assert r.frame_types == "I" + "P" * (len(foreman) - 1)
        assert r.bpp == pytest.approx(8 * r.num_bytes / (352 * 288 * len(foreman)))
        assert r.kbps == pytest.approx(8 * r.num_bytes * 25 / len(foreman) / 1000)
    quality = [np.mean([metrics.psnr(a, b) for a, b in zip(foreman, r.decoded)]) for r in results]
    sizes = [r.num_bytes for r in results]
    assert quality[0] < quality[1] < quality[2], quality
    assert sizes[0] < sizes[1] < sizes[2], sizes


def test_anchor_checks_frame_types_independently_with_pyav(foreman):
    """Re-parse the produced stream with PyAV's own parser: one key packet, then non-key packets in order."""
    import av

    r = encode_anchor(foreman[:4], "x264-medium", 30, rc="qp")
    assert r.rc == "qp" and r.frame_types == "IPPP" and len(r.bitstream) == r.num_bytes
    parser = av.CodecContext.create("h264", "r")
    packets = parser.parse(r.bitstream) + parser.parse(None)
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    assert [int(f.pict_type) for f in frames] == [1, 2, 2, 2]  # AV_PICTURE_TYPE_I, then P; B would be 3
    assert [f.key_frame for f in frames] == [True, False, False, False]
    # odd sizes are padded for 4:2:0 and cropped back
    odd = encode_anchor([f[:143, :175] for f in foreman[:2]], "x264-medium", 30)
    assert odd.decoded[0].shape == (143, 175, 3)
    assert "h264" in av.codecs_available


@pytest.mark.parametrize("anchor", ["x265-medium", "svtav1"])
def test_other_pyav_anchors_are_low_delay(foreman, anchor):
    r = encode_anchor(foreman[:3], anchor, 35)
    assert r.num_bytes > 0 and r.frame_types == "IPP" and r.key_frames == [True, False, False]


def test_vvenc_anchor_or_clear_error(foreman):
    from s2vc_evaluation.anchors import AnchorUnavailableError

    if metrics.find_ffmpeg(require_encoder="libvvenc") is None:
        with pytest.raises(AnchorUnavailableError, match="libvvenc"):
            encode_anchor(foreman[:2], "vvenc-faster", 37)
        pytest.skip("no FFmpeg with libvvenc here (install the eval extra: imageio-ffmpeg)")
    r = encode_anchor(foreman[:3], "vvenc-faster", 37)
    # low-delay B: inter pictures reference past pictures only; nothing after the first is a key frame
    assert r.num_bytes > 0 and r.key_frames == [True, False, False] and r.frame_types[0] == "I"
    assert metrics.psnr(foreman[0], r.decoded[0]) > 25


def test_sweep_to_bpp_lands_in_range(foreman):
    found = sweep_to_bpp(foreman[:3], "x264-medium", bpp_range=(0.0, 0.1), points=2, start=30, step=4)
    assert len(found) == 2
    assert all(0 < r.bpp <= 0.1 for r in found)
    assert found[0].bpp > found[1].bpp
    with pytest.raises(ValueError):
        sweep_to_bpp(foreman[:1], "nope")


def test_unknown_anchor():
    with pytest.raises(ValueError, match="unknown anchor"):
        encode_anchor([np.zeros((16, 16, 3), np.uint8)], "x266")
    assert "x264-veryslow" in ANCHORS


# ------------------------------------------------------------------------------------------------ drift


def test_drift_compares_the_first_and_last_frames_of_a_real_coding(tmp_path):
    """``python -m s2vc_evaluation.drift``: codes for real, decodes the bytes, and reports both ends' mean PSNR."""
    import json

    from s2vc_evaluation import drift

    out = tmp_path / "drift.json"
    args = [str(FOREMAN), "--frames", "6", "--window", "2", "--rates", "0"]
    assert drift.main([*args, "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rates"][0]
    per_frame = row["per_frame"]
    assert row["frames"] == len(per_frame) == 6 and row["rate"] == 0
    assert row["first"] == pytest.approx(np.mean(per_frame[:2]), abs=1e-2)
    assert row["last"] == pytest.approx(np.mean(per_frame[-2:]), abs=1e-2)
    assert row["drop"] == pytest.approx(row["first"] - row["last"], abs=1e-9)
    assert 0 < row["bpp"] < 1 and len(row["bias"]) == 3
    # the last window again from a fresh I-frame: another coding of the same frames, so another figure
    assert row["fresh"] != row["last"] and row["decay"] == pytest.approx(row["fresh"] - row["last"], abs=1e-9)
    assert drift.main([*args, "--max-drop", "-1000"]) == 1  # any result "drops" by more than −1000 dB
    assert drift.main([*args, "--max-decay", "-1000"]) == 1
    with pytest.raises(SystemExit):
        drift.main([str(FOREMAN), "--frames", "6", "--window", "4"])  # two windows of 4 need 8 frames
