"""Golden vectors: the fixed micro model on fixed frames must give the stored units and (within a level) frames.

See ``tests/golden.py`` for what is pinned exactly and what depends on the CPU's float arithmetic.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from s2vc.bitstream import StreamReader, UnitType
from s2vc.codec import Codec
from s2vc.pipeline import decode_stream

from .golden import GOLDEN, build_golden_model, encode_golden, frames_digest, load_golden_frames

REGENERATE = "if deliberate, run python -m tests.golden --write"


@pytest.fixture(scope="module")
def golden():
    data = (GOLDEN / "stream.s2vc").read_bytes()
    expected = json.loads((GOLDEN / "expected.json").read_text())
    assert hashlib.sha256(data).hexdigest() == expected["stream_sha256"], "stream.s2vc does not match expected.json"
    return data, load_golden_frames()


@pytest.fixture(scope="module")
def encoded():
    return encode_golden(build_golden_model())


def assert_within_a_level(frames: list[np.ndarray], reference: list[np.ndarray]) -> None:
    assert len(frames) == len(reference) == 3
    for frame, ref in zip(frames, reference):
        assert frame.dtype == np.uint8 and frame.shape == ref.shape
        diff = np.abs(frame.astype(np.int16) - ref.astype(np.int16))
        assert diff.max() <= 1 and diff.mean() < 0.01, f"frames changed (max {diff.max()}, mean {diff.mean():.4f}): {REGENERATE}"


def test_encoder_output_is_the_golden_bytes(golden, encoded):
    data, frames = golden
    ours, recons = encoded
    units = list(StreamReader(ours))
    assert [u.type for u in units] == [UnitType.I, UnitType.P, UnitType.P, UnitType.END]
    assert all(u.state_check != 0 for u in units if u.type in (UnitType.I, UnitType.P))
    # every byte is pinned, the state checks (CRCs of the scale indices, format version 2) included
    assert ours == data, f"bitstream changed: {REGENERATE}"
    assert_within_a_level(recons, frames)


def test_golden_stream_decodes_to_the_golden_frames(golden, encoded):
    data, frames = golden
    _, frames_iter = decode_stream(Codec(build_golden_model()), data)
    decoded = [frame for frame, _ in frames_iter]
    assert frames_digest(decoded) == frames_digest(encoded[1]), "decoder and encoder of one machine must agree exactly"
    assert_within_a_level(decoded, frames)


def test_golden_stream_decodes_on_any_thread_count(golden, encoded):
    """Format version 2: the stored stream decodes for 1 and 2 threads alike (the state networks run on one)."""
    import torch

    data, _ = golden
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            _, frames = decode_stream(Codec(build_golden_model()), data)
            assert len([f for f, _ in frames]) == 3
    finally:
        torch.set_num_threads(before)
