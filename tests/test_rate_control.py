"""Rate control holds a target bitrate: on a synthetic cost model and on a real clip with the shipped model."""

from __future__ import annotations

import io

import numpy as np
import pytest

from s2vc.checkpoint import load_model
from s2vc.codec import Codec
from s2vc.pipeline import encode_frames
from s2vc.rate_control import RateController
from s2vc.video_io import VideoReader

from .conftest import clip


def _synthetic_bits(rate: int, intra: bool, rng: np.random.Generator) -> int:
    """A codec whose frames cost 2000 * 1.8^rate bits (I-frames 5x), with 20% noise."""
    return int(2000 * 1.8**rate * (5 if intra else 1) * rng.uniform(0.8, 1.2))


def _run(rc: RateController, frames: int, rng: np.random.Generator, bits_fn=_synthetic_bits) -> list[int]:
    spent = []
    for _ in range(frames):
        intra = rc.keyframe_due()
        rate = rc.choose(intra)
        bits = bits_fn(rate, intra, rng)
        rc.update(rate, intra, bits)
        spent.append(bits)
    return spent


def test_holds_a_target_between_rate_points():
    rng = np.random.default_rng(0)
    rc = RateController(num_rates=4, target_kbps=100, fps=25)  # 4000 bits/frame: between rate 1 (3600) and 2 (6480)
    spent = _run(rc, 250, rng)
    kbps = sum(spent[25:]) * 25 / len(spent[25:]) / 1000
    assert abs(kbps - 100) / 100 < 0.05, kbps


def test_follows_a_new_target_within_a_second():
    rng = np.random.default_rng(1)
    rc = RateController(num_rates=4, target_kbps=100, fps=25)
    _run(rc, 100, rng)
    rc.set_target(300)  # 12000 bits/frame: above rate 3 (11664) -> the top rate point
    _run(rc, 25, rng)
    assert rc.rate == 3
    rc.set_target(40)  # 1600 bits/frame: below rate 0 -> the bottom
    _run(rc, 25, rng)
    assert rc.rate == 0


def test_congestion_lowers_the_rate():
    rng = np.random.default_rng(2)
    rc = RateController(num_rates=4, target_kbps=250, fps=25)
    _run(rc, 60, rng)
    before = rc.rate
    rc.congestion(40_000)  # 320 kbit queued in the transport
    _run(rc, 5, rng)
    assert rc.rate < before


def test_keyframe_requests_are_spaced():
    rng = np.random.default_rng(3)
    rc = RateController(num_rates=2, target_kbps=100, fps=25, min_keyframe_interval=10)
    keyframes = []
    for i in range(40):
        intra = rc.keyframe_due(requested=True)  # a peer asking every frame
        rate = rc.choose(intra)
        rc.update(rate, intra, _synthetic_bits(rate, intra, rng))
        keyframes.append(intra)
    assert [i for i, k in enumerate(keyframes) if k] == [0, 10, 20, 30]


@pytest.mark.parametrize("bad", [0, -5, float("nan")])
def test_rejects_a_meaningless_target(bad):
    with pytest.raises(ValueError, match="positive"):
        RateController(num_rates=2, target_kbps=bad)


def test_holds_a_target_on_a_real_clip():
    """The shipped model on foreman: a target between its lowest and highest rate point, held within 15%."""
    frames = list(VideoReader(clip("foreman_352x288.h264")).frames(75))
    codec = Codec(load_model(None))
    params = codec.sequence_params(frames[0].shape[1], frames[0].shape[0], 25)

    def steady_kbps(**options) -> float:  # after the first second (the I-frame is paid back by then)
        summary, _ = encode_frames(codec, frames, io.BytesIO(), params, reconstruct=False, **options)
        return sum(summary.frame_bytes[25:]) * 8 * 25 / len(summary.frame_bytes[25:]) / 1000

    top = codec.model.num_rates - 1
    low_kbps, high_kbps = steady_kbps(rate=0), steady_kbps(rate=top)
    assert high_kbps > 1.5 * low_kbps
    target = (low_kbps * high_kbps) ** 0.5
    held_kbps = steady_kbps(controller=RateController(num_rates=codec.model.num_rates, target_kbps=target, fps=25))
    print(f"foreman: rate 0 {low_kbps:.1f} kbps, rate {top} {high_kbps:.1f} kbps, target {target:.1f}, held {held_kbps:.1f}")
    assert abs(held_kbps - target) / target < 0.15
