"""Golden vectors: the fixed micro model on fixed frames must give exactly the stored bytes and frames."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from s2vc.codec import Codec
from s2vc.pipeline import decode_stream

from .golden import GOLDEN, encode_golden, frames_digest, build_golden_model


def test_encoder_output_is_the_golden_bytes():
    expected = json.loads((GOLDEN / "expected.json").read_text())
    data, recons = encode_golden(build_golden_model())
    assert data == (GOLDEN / "stream.s2vc").read_bytes(), "bitstream changed: if deliberate, run python -m tests.golden --write"
    assert hashlib.sha256(data).hexdigest() == expected["stream_sha256"]
    assert frames_digest(recons) == expected["frames_sha256"]


def test_golden_stream_decodes_to_the_golden_frames():
    expected = json.loads((GOLDEN / "expected.json").read_text())
    codec = Codec(build_golden_model())
    _, frames = decode_stream(codec, (GOLDEN / "stream.s2vc").read_bytes())
    decoded = [f for f, _ in frames]
    assert len(decoded) == 3 and all(f.dtype == np.uint8 for f in decoded)
    assert frames_digest(decoded) == expected["frames_sha256"]
