"""Step API end to end on a real clip: encode → bitstream → decode is bit exact and bpp equals the file size."""

from __future__ import annotations

import io

import numpy as np
import pytest

from s2vc.bitstream import StreamReader, UnitType
from s2vc.codec import Codec, pad_to_multiple
from s2vc.errors import InputError, ModelMismatchError
from s2vc.pipeline import decode_stream, encode_frames
from s2vc.video_io import VideoReader

from .conftest import clip

import torch


@pytest.fixture(scope="module")
def foreman_frames():
    return list(VideoReader(clip("foreman_352x288.h264")).frames(10))


@pytest.fixture(scope="module")
def coded(tiny_model, foreman_frames):
    codec = Codec(tiny_model, reset_interval=4)
    params = codec.sequence_params(352, 288, 25, rate=1)
    out = io.BytesIO()
    summary, recons = encode_frames(codec, foreman_frames, out, params)
    return codec, summary, recons, out.getvalue()


def test_roundtrip_is_bit_exact(coded):
    codec, summary, recons, data = coded
    params, frames = decode_stream(codec, data)
    decoded = [f for f, _ in frames]
    assert len(decoded) == 10 == summary.frames
    for recon, frame in zip(recons, decoded):
        assert frame.shape == (288, 352, 3) and frame.dtype == np.uint8
        assert np.array_equal(recon, frame)


def test_bpp_counts_the_whole_file_on_the_original_size(coded):
    _, summary, _, data = coded
    assert summary.total_bytes == len(data)
    assert summary.bpp == pytest.approx(len(data) * 8 / (352 * 288 * 10))
    assert summary.kbps == pytest.approx(len(data) * 8 * 25 / 10 / 1000)


def test_unit_sequence_has_resets_and_one_intra(coded):
    _, summary, _, data = coded
    reader = StreamReader(data)
    units = list(reader)
    assert [u.type for u in units] == [UnitType.I] + [UnitType.P] * 9 + [UnitType.END]
    assert [u.frame_index for u in units[:10]] == list(range(10))
    # reset interval 4: P-frames 1, 5, 9 re-anchor on the previous x0 latent
    assert [bool(u.flags & 1) for u in units[1:10]] == [True, False, False, False, True, False, False, False, True]
    assert all(u.rate == 1 for u in units[:10])
    assert all(u.state_check != 0 for u in units[1:10])


def test_intra_period(tiny_model, foreman_frames):
    codec = Codec(tiny_model, intra_period=3)
    state = codec.new_state(352, 288)
    types = []
    for frame in foreman_frames[:7]:
        unit, state, _ = codec.encode_frame(state, frame, reconstruct=False)
        types.append(unit.type)
    assert types == [UnitType.I, UnitType.P, UnitType.P] * 2 + [UnitType.I]


def test_state_is_not_modified_in_place(tiny_model, foreman_frames):
    codec = Codec(tiny_model)
    s0 = codec.new_state(352, 288)
    _, s1, _ = codec.encode_frame(s0, foreman_frames[0], reconstruct=False)
    before = s1.ref_frame.clone()
    u_a, _, _ = codec.encode_frame(s1, foreman_frames[1], reconstruct=False)
    u_b, _, _ = codec.encode_frame(s1, foreman_frames[1], reconstruct=False)
    assert torch.equal(s1.ref_frame, before)
    assert u_a == u_b  # the same state and frame give the same unit


def test_padding_reflects_and_crops_back():
    x = torch.arange(2 * 3 * 70 * 65, dtype=torch.float32).reshape(2, 3, 70, 65)
    y = pad_to_multiple(x)
    assert y.shape == (2, 3, 128, 128)
    assert torch.equal(y[..., :70, :65], x)
    assert torch.equal(y[..., 70, :65], x[..., 68, :])  # reflection, not replication
    tiny = pad_to_multiple(torch.ones(1, 3, 5, 3))
    assert tiny.shape == (1, 3, 64, 64) and torch.all(tiny == 1)


def test_odd_sizes_round_trip(tiny_model):
    codec = Codec(tiny_model)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (37, 50, 3), dtype=np.uint8) for _ in range(3)]
    out = io.BytesIO()
    _, recons = encode_frames(codec, frames, out, codec.sequence_params(50, 37))
    _, decoded = decode_stream(codec, out.getvalue())
    assert all(np.array_equal(a, b) for a, (b, _) in zip(recons, decoded))


def test_bad_frames_are_input_errors(tiny_model):
    codec = Codec(tiny_model)
    state = codec.new_state(64, 64)
    with pytest.raises(InputError):
        codec.encode_frame(state, np.zeros((64, 48, 3), np.uint8))
    with pytest.raises(InputError):
        codec.encode_frame(state, np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ModelMismatchError):
        codec.encode_frame(state, np.zeros((64, 64, 3), np.uint8), rate=7)
    with pytest.raises(InputError):
        codec.new_state(0, 64)
