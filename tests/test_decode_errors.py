"""Bad input to the decoder: every case raises its documented error and never returns noise."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from s2vc.bitstream import StreamReader, StreamWriter, Unit, UnitType, pack_header
from s2vc.codec import Codec
from s2vc.errors import (
    BitstreamError,
    CorruptStreamError,
    ModelMismatchError,
    S2VCError,
    StateMismatchError,
    TruncatedStreamError,
    UnitOrderError,
)
from s2vc.model import build_model
from s2vc.pipeline import decode_stream, encode_frames

from .golden import MICRO, build_golden_model


@pytest.fixture(scope="module")
def tiny_model():
    """The fixed-weight golden micro model (fast, and independent of the tiny preset's current widths)."""
    return build_golden_model()


@pytest.fixture(scope="module")
def stream(tiny_model):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    frames = [np.roll(base, 2 * i, axis=1) for i in range(5)]
    codec = Codec(tiny_model)
    out = io.BytesIO()
    _, recons = encode_frames(codec, frames, out, codec.sequence_params(64, 64))
    data = out.getvalue()
    params = StreamReader(data).params
    units = [u for u in StreamReader(data) if u.type in (UnitType.I, UnitType.P)]
    return codec, data, params, units, recons


def rebuild(params, units) -> bytes:
    out = io.BytesIO()
    with StreamWriter(out, params) as w:
        for u in units:
            w.write_unit(u)
    return out.getvalue()


def decode_all(codec, data):
    _, frames = decode_stream(codec, data)
    return [f for f, _ in frames]


def test_intact_stream_decodes(stream):
    codec, data, _, _, recons = stream
    assert all(np.array_equal(a, b) for a, b in zip(decode_all(codec, data), recons))


@pytest.mark.parametrize("cut", [3, 10, 40, -1, -5, -30])
def test_truncated(stream, cut):
    codec, data, *_ = stream
    with pytest.raises(TruncatedStreamError):
        decode_all(codec, data[:cut] if cut > 0 else data[: len(data) + cut - 8])


def test_bit_flips_are_detected(stream):
    codec, data, *_ = stream
    positions = np.random.default_rng(3).choice(len(data), 40, replace=False)
    for pos in positions:
        corrupt = bytearray(data)
        corrupt[pos] ^= 1 << int(pos % 8)
        with pytest.raises(BitstreamError):
            decode_all(codec, bytes(corrupt))


def test_reordered_units(stream):
    codec, _, params, units, _ = stream
    swapped = [units[0], units[2], units[1], *units[3:]]
    with pytest.raises(UnitOrderError, match="missing"):
        decode_all(codec, rebuild(params, swapped))


def test_lost_unit(stream):
    codec, _, params, units, _ = stream
    with pytest.raises(UnitOrderError):
        decode_all(codec, rebuild(params, [units[0], units[1], units[3]]))


def test_repeated_unit(stream):
    codec, _, params, units, _ = stream
    with pytest.raises(UnitOrderError):
        decode_all(codec, rebuild(params, [units[0], units[1], units[1]]))


def test_p_unit_first(stream):
    codec, _, params, units, _ = stream
    with pytest.raises(UnitOrderError, match="without a preceding I"):
        decode_all(codec, rebuild(params, units[1:]))


def test_other_model(stream):
    _, data, *_ = stream
    other = Codec(build_model(MICRO, num_rates=2, seed=123))
    with pytest.raises(ModelMismatchError):
        decode_all(other, data)


def test_other_weights_under_a_forged_identity_do_not_give_noise(stream):
    """Same model id and hash but different weights: the symbol or state check fires, no frame comes out."""
    _, data, *_ = stream
    impostor = build_model(MICRO, num_rates=2, seed=99)
    impostor.model_id = stream[0].model.model_id
    impostor._weight_hash = stream[0].model.weight_hash
    with pytest.raises((StateMismatchError, CorruptStreamError)):
        decode_all(Codec(impostor), data)


def test_drifted_state(stream):
    """A state that drifted in its float bytes decodes while its entropy parameters still match (format version 2);
    one whose entropy parameters moved fails before producing the picture."""
    codec, _, params, units, _ = stream
    state = codec.new_state(64, 64)
    _, state = codec.decode_frame(state, units[0])
    frame, _ = codec.decode_frame(state.replace(ref_frame=state.ref_frame + 1e-6), units[1])
    exact, _ = codec.decode_frame(state, units[1])  # the untouched state decodes exactly
    assert frame.shape == (64, 64, 3) and np.abs(frame.astype(int) - exact.astype(int)).max() <= 2
    drifted = state.replace(ref_frame=torch.randn(state.ref_frame.shape, generator=torch.Generator().manual_seed(0)) * 20)
    with pytest.raises(StateMismatchError, match="frame 1"):
        codec.decode_frame(drifted, units[1])


def test_recovery_at_next_intra(tiny_model):
    """After a lost unit the decoder resynchronises on the next I unit."""
    codec = Codec(tiny_model, intra_period=3)
    frames = [np.full((64, 64, 3), 20 * i, np.uint8) for i in range(6)]
    enc = codec.new_state(64, 64)
    units, recons = [], []
    for f in frames:
        u, enc, r = codec.encode_frame(enc, f)
        units.append(u)
        recons.append(r)
    dec = codec.new_state(64, 64)
    _, dec = codec.decode_frame(dec, units[0])
    with pytest.raises(UnitOrderError):
        codec.decode_frame(dec, units[2])  # unit 1 lost
    frame, dec = codec.decode_frame(dec, units[3])  # I unit
    assert np.array_equal(frame, recons[3])
    frame, dec = codec.decode_frame(dec, units[4])
    assert np.array_equal(frame, recons[4])


def test_corrupt_payload_with_valid_crc(stream):
    """A unit whose payload was altered and re-checksummed (a buggy relay): the symbol check catches it."""
    codec, _, params, units, _ = stream
    u = units[0]
    payload = bytearray(u.payload)
    payload[-3] ^= 0x55
    forged = Unit(type=u.type, flags=u.flags, rate=u.rate, frame_index=u.frame_index, state_check=u.state_check, payload=bytes(payload))
    with pytest.raises((StateMismatchError, CorruptStreamError)):
        decode_all(codec, rebuild(params, [forged]))


def test_random_garbage_raises_only_documented_errors(stream):
    codec, data, *_ = stream
    rng = np.random.default_rng(5)
    header = pack_header(StreamReader(data).params)
    for _ in range(30):
        junk = header + rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
        with pytest.raises(S2VCError):
            decode_all(codec, junk)
