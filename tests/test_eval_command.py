"""``s2vc eval`` on one short real clip against one anchor: CSVs, BD-rate rows and plots come out."""

from __future__ import annotations

import csv

import pytest

from typer.testing import CliRunner

from s2vc.cli import app

from .conftest import clip


def test_eval_runs_on_one_clip_against_one_anchor(tmp_path):
    source = clip("foreman_352x288.h264")
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", str(source), "--model", "tiny", "--rates", "0,1", "--anchors", "x264-medium",
                                      "--frames", "3", "--metrics", "psnr,psnr_yuv", "--out", str(out), "--bpp-max", "2.0", "--fixed-range"])
    assert result.exit_code == 0, result.output
    with open(out / "points.csv") as f:
        points = list(csv.DictReader(f))
    codecs = {p["codec"] for p in points}
    assert codecs == {"s2vc", "x264-medium"}
    s2vc = [p for p in points if p["codec"] == "s2vc"]
    assert len(s2vc) == 2 and all(float(p["bpp"]) > 0 and float(p["psnr"]) > 0 for p in s2vc)
    with open(out / "bd_rate.csv") as f:
        bd = list(csv.DictReader(f))
    assert {r["clip"] for r in bd} >= {"foreman_352x288", "mean"} and {r["metric"] for r in bd} >= {"psnr", "psnr_yuv"}
    with open(out / "speed.csv") as f:
        assert {r["codec"] for r in csv.DictReader(f)} == codecs
    assert (out / "rd_foreman_352x288_psnr.png").stat().st_size > 1000
    with open(out / "ceiling.csv") as f:
        ceiling = list(csv.DictReader(f))
    assert [r["clip"] for r in ceiling] == ["foreman_352x288"] and 0 < float(ceiling[0]["psnr"]) < 100


def test_the_shipped_model_codes_below_its_autoencoder_ceiling():
    """The ceiling is the VAE's own round trip at the source size, and the trained codec stays under it."""
    import numpy as np

    from s2vc_evaluation.evaluate import autoencoder_roundtrip, load_frames
    from s2vc_evaluation.metrics import psnr
    from s2vc.checkpoint import load_model
    from s2vc.codec import Codec

    model = load_model(None)
    frames = load_frames(clip("foreman_352x288.h264"), 2, 1)
    ceiling = autoencoder_roundtrip(model, frames)
    assert [f.shape for f in ceiling] == [f.shape for f in frames] and all(f.dtype == np.uint8 for f in ceiling)
    top = model.num_rates - 1
    codec = Codec(model)
    state = codec.new_state(352, 288, top)
    coded = []
    for frame in frames:
        _, state, decoded = codec.encode_frame(state, frame, rate=top)
        coded.append(decoded)
    ceiling_db = np.mean([psnr(a, b) for a, b in zip(frames, ceiling)])
    coded_db = np.mean([psnr(a, b) for a, b in zip(frames, coded)])
    assert coded_db + 1.0 < ceiling_db < 60


def test_anchor_range_follows_the_tested_curve():
    from s2vc_evaluation.evaluate import matched_range

    assert matched_range([0.02, 0.07, 0.04], (0.005, 0.15)) == pytest.approx((0.02 / 1.4, 0.07 * 1.4))
    assert matched_range([0.004, 0.2], (0.005, 0.15)) == (0.005, 0.15)  # clipped to the limits
    assert matched_range([], (0.005, 0.15)) == (0.005, 0.15)
    assert matched_range([float("nan"), 0.0], (0.005, 0.15)) == (0.005, 0.15)
    assert matched_range([0.5, 0.9], (0.005, 0.15)) == (0.005, 0.15)  # no overlap left: the limits stand
