"""The signalled latent offset (docs/bitstream.md, "Latent offset"): which units carry it, that the decoder keeps
the last one, that it is covered by the unit's checks, and that a model without the tool refuses it."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

from s2vc.bitstream import FLAG_OFFSET, FLAG_RESET, StreamReader, UnitType
from s2vc.codec import LATENT_OFFSET_MAX, Codec
from s2vc.errors import CorruptStreamError
from s2vc.model import build_model
from s2vc.pipeline import encode_frames
from s2vc.presets import TINY, Preset
from s2vc.video_io import VideoReader

from .conftest import clip


@pytest.fixture(scope="module")
def frames():
    return [f[:128, :192] for f in VideoReader(clip("foreman_352x288.h264")).frames(7)]


def _code(model, frames, **codec_args):
    codec = Codec(model, reset_interval=4, **codec_args)
    out = io.BytesIO()
    _, recons = encode_frames(codec, frames, out, codec.sequence_params(192, 128, 25, rate=0))
    return codec, recons, out.getvalue()


def _decode(model, data: bytes) -> list:
    """(frame, state) per I/P unit, decoded one unit at a time."""
    codec = Codec(model, reset_interval=4)
    state, out = codec.new_state(192, 128), []
    for unit in StreamReader(data):
        if unit.type in (UnitType.I, UnitType.P):
            frame, state = codec.decode_frame(state, unit)
            out.append((frame, state))
    return out


def _offset_flags(data: bytes) -> list[bool]:
    return [bool(u.flags & FLAG_OFFSET) for u in StreamReader(data) if u.type in (UnitType.I, UnitType.P)]


@pytest.mark.parametrize("interval, expected", [(1, [True] * 7), (3, [True, True, False, False, True, False, False]),
                                                (0, [True] + [False] * 6), (None, [False] * 7)])
def test_units_carry_the_offset_as_the_interval_says_and_decode_exactly(tiny_model, frames, interval, expected):
    codec, recons, data = _code(tiny_model, frames, offset_interval=interval)
    assert _offset_flags(data) == expected
    decoded = _decode(tiny_model, data)
    assert len(decoded) == len(recons) == 7
    for recon, (frame, state) in zip(recons, decoded):
        assert np.array_equal(recon, frame)  # a unit without the offset reuses the last one, on both sides
    assert (decoded[-1][1].latent_offset is not None) == any(expected)


def test_the_offset_changes_the_picture_and_not_the_reference(tiny_model, frames):
    _, with_offset, data_on = _code(tiny_model, frames, offset_interval=1)
    _, without, data_off = _code(tiny_model, frames, offset_interval=None)
    _, states_on = zip(*_decode(tiny_model, data_on))
    _, states_off = zip(*_decode(tiny_model, data_off))
    assert any(not np.array_equal(a, b) for a, b in zip(with_offset, without))
    for on, off in zip(states_on, states_off):  # the references (and so the P-frames' symbols) are the same
        assert on.check() == off.check()
    offsets = np.stack([s.latent_offset.numpy().ravel() for s in states_on]) / TINY.latent_offset_step
    assert np.array_equal(offsets, np.round(offsets)) and np.abs(offsets).max() <= LATENT_OFFSET_MAX
    # the offset costs a few bytes a frame: 16 channels of 31 levels
    assert 0 < len(data_on) - len(data_off) <= 7 * 16 * 5 / 8 + 7 * 2


def test_an_offset_flag_set_by_hand_fails_the_symbol_check(tiny_model, frames):
    codec, _, data = _code(tiny_model, frames[:2], offset_interval=0)
    units = list(StreamReader(data))
    p = units[1]
    assert p.type == UnitType.P and not p.flags & FLAG_OFFSET
    forged = dataclasses.replace(p, flags=p.flags | FLAG_OFFSET)
    state = codec.new_state(192, 128)
    state = codec.decode_frame(state, units[0]).state
    with pytest.raises(CorruptStreamError):
        codec.decode_frame(state, forged)


def test_a_model_without_the_tool_refuses_units_that_carry_an_offset(tiny_model, frames):
    codec, _, data = _code(tiny_model, frames[:1], offset_interval=1)
    bare = build_model(Preset.from_dict({**TINY.to_dict(), "latent_offset_step": 0.0}), num_rates=2, seed=0)
    other = Codec(bare, reset_interval=4)
    unit = next(iter(StreamReader(data)))
    assert unit.type == UnitType.I and unit.flags & FLAG_OFFSET and not unit.flags & FLAG_RESET
    with pytest.raises(CorruptStreamError, match="latent offset"):
        other.decode_frame(other.new_state(192, 128), unit)


def test_preset_field_defaults_to_off_and_is_bounded():
    data = TINY.to_dict()
    del data["latent_offset_step"]
    assert Preset.from_dict(data).latent_offset_step == 0.0
    with pytest.raises(ValueError, match="latent_offset_step"):
        dataclasses.replace(TINY, latent_offset_step=-0.1)
    with pytest.raises(ValueError):
        Codec(build_model(TINY, num_rates=1, seed=0), offset_interval=-1)
