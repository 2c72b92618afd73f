"""The FLOP accounting of ``make bench`` (evaluation/bench_codec.py --networks)."""

from __future__ import annotations

import numpy as np
import pytest

from s2vc_evaluation.bench_codec import network_gflop, pair_gflop
from s2vc.model import build_model
from s2vc.presets import get_preset


def test_a_p_frame_round_trip_costs_exactly_its_networks():
    """One P-frame encode + decode runs the context twice, the encoder once, prior, spatial prior, decoder and U-Net
    twice and the output VAE decode once; everything else the codec does between them is FLOP-free."""
    model = build_model(get_preset("tiny"), num_rates=1)
    per_network = network_gflop(model, 128, 192)
    assert all(v > 0 for v in per_network.values())
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (128, 192, 3), dtype=np.uint8)
    pair = pair_gflop(model, [np.roll(base, 3 * i, axis=1) for i in range(4)])
    g = per_network
    composed = g["vae_decoder"] + 2 * g["inter_context"] + g["inter_encoder"] + 2 * (
        g["inter_prior"] + g["inter_spatial_prior"] + g["inter_decoder"] + g["unet_pframe"])
    assert pair == pytest.approx(composed, rel=0.01)
