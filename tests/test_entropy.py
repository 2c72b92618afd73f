"""Entropy models of s2vc.entropy: round trips, exact rates, determinism, error paths."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from s2vc import entropy as E
from s2vc.errors import CorruptStreamError

RNG_SEED = 1234


def _roundtrip_gaussian(model, symbols, idx):
    enc = E.new_encoder()
    model.encode(enc, symbols, idx)
    data = E.encoder_bytes(enc)
    out = model.decode(E.new_decoder(data), idx)
    return data, out


def _gaussian_sample(rng, n, lo=-128, hi=127):
    idx = rng.integers(0, E.SCALE_LEVELS, n)
    sym = np.clip(np.round(rng.normal(0.0, E.SCALE_TABLE[idx])), lo, hi).astype(np.int32)
    return sym, idx


# ---------------------------------------------------------------------------------------------- scale table


def test_scale_table_formula():
    ref = np.exp(np.linspace(np.log(0.11), np.log(16.0), 128))
    assert E.SCALE_TABLE.dtype == np.float64 and E.SCALE_TABLE.shape == (128,)
    np.testing.assert_allclose(E.SCALE_TABLE, ref, rtol=1e-13, atol=0)
    assert E.SCALE_TABLE[0] == 0.11 and E.SCALE_TABLE[-1] == 16.0
    assert np.all(np.diff(E.SCALE_TABLE) > 0)
    assert not E.SCALE_TABLE.flags.writeable


def test_scale_table_and_gaussian_tables_golden():
    """Bit-exact tables on every machine: a change here breaks every stream ever written."""
    assert hashlib.sha256(E.SCALE_TABLE.tobytes()).hexdigest()[:16] == "9c0159d99533a596"
    freq = E.GaussianModel(-128, 127).freq
    assert freq.shape == (128, 256)
    assert hashlib.sha256(freq.astype("<i8").tobytes()).hexdigest()[:16] == "1a92fcbe807c5292"


def test_det_exp_and_erf_accuracy():
    x = np.linspace(-700, 700, 20001)
    np.testing.assert_allclose(E._det_exp(x), np.exp(x), rtol=1e-15)
    x = np.linspace(-8, 8, 20001)
    ref = np.array([math.erf(v) for v in x])
    assert np.abs(E._det_erf(x) - ref).max() < 5e-15


def _formula_index(s: torch.Tensor) -> torch.Tensor:
    s = s.to(torch.float64).clamp(0.11, 16.0)
    v = (torch.log(s) - math.log(0.11)) * 127.0 / (math.log(16.0) - math.log(0.11))
    return torch.trunc(v).clamp(0, 127).to(torch.int64)


def test_scale_index_matches_formula():
    g = torch.Generator().manual_seed(RNG_SEED)
    s = torch.exp(torch.empty(200_000, dtype=torch.float64).uniform_(-4.0, 4.0, generator=g))
    idx = E.scale_index(s.to(torch.float32))
    assert idx.dtype == torch.int64 and idx.shape == s.shape
    assert torch.equal(idx, _formula_index(s.to(torch.float32)))


def test_scale_index_edges():
    table = torch.from_numpy(E.SCALE_TABLE.copy())
    assert torch.equal(E.scale_index(table), torch.arange(128))
    below = torch.nextafter(table[1:], torch.zeros(127, dtype=torch.float64))
    assert torch.equal(E.scale_index(below), torch.arange(127))
    special = torch.tensor([0.0, -3.0, 1e-9, 0.11, 16.0, 1e9, float("inf"), float("-inf"), float("nan")])
    assert E.scale_index(special).tolist() == [0, 0, 0, 0, 127, 127, 127, 0, 127]
    assert E.scale_index(torch.ones(2, 3, 4)).shape == (2, 3, 4)


def test_round_means():
    m = torch.tensor([0.0, 1 / 512, 3 / 512, -0.3, 12.345678, -100.001], dtype=torch.float32)
    r = E.round_means(m)
    assert r.dtype == torch.float32
    assert torch.all((r * 256) == torch.round(r * 256))
    assert torch.all((r - m).abs() <= 1 / 512)
    q = torch.tensor([-128, 127, 5, 0, -7, 3], dtype=torch.float32)
    y = q + r
    assert torch.equal(y - r, q)  # exact: ŷ − mean gives back the symbol
    assert torch.equal(E.round_means(m.to(torch.float64)), r)


# ---------------------------------------------------------------------------------------------- quantisation


def test_quantize_pmf_properties():
    rng = np.random.default_rng(RNG_SEED)
    p = rng.random((5, 17)) ** 4
    p[0, 3] = 0.0
    f = E.quantize_pmf(p)
    assert f.dtype == np.int64 and np.all(f >= 1) and np.all(f.sum(-1) == 2**24)
    np.testing.assert_allclose(f / 2**24, p / p.sum(-1, keepdims=True), atol=3e-6)
    assert np.array_equal(f, E.quantize_pmf(p.copy()))
    for bad in (np.ones(1), np.array([1.0, -1.0]), np.array([1.0, np.nan]), np.zeros(3), np.ones((2, 0))):
        with pytest.raises(ValueError):
            E.quantize_pmf(bad)


def test_gaussian_pmf_table_normalised_and_symmetric():
    t = E.gaussian_pmf_table(-20, 20)
    np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-14)
    np.testing.assert_allclose(t, t[:, ::-1], atol=1e-15)
    # central mass of the narrowest and widest model
    assert abs(t[0, 20] - math.erf(0.5 / (0.11 * math.sqrt(2)))) < 1e-14
    assert abs(t[-1, 20] - math.erf(0.5 / (16 * math.sqrt(2)))) < 1e-14


# ---------------------------------------------------------------------------------------------- Gaussian


@pytest.mark.parametrize("lo,hi", [(-128, 127), (-8, 8), (-1024, 1023), (0, 1)])
def test_gaussian_roundtrip_random(lo, hi):
    rng = np.random.default_rng(RNG_SEED)
    model = E.GaussianModel(lo, hi)
    sym, idx = _gaussian_sample(rng, 5000, lo, hi)
    data, out = _roundtrip_gaussian(model, sym, idx)
    assert out.dtype == np.int32 and np.array_equal(out, sym)
    assert len(data) % 4 == 0


def test_gaussian_extremes():
    model = E.GaussianModel(-128, 127)
    ends = np.array([-128, 127, -128, 127, 0, -1, 1], dtype=np.int32)
    for idx_value in (0, 1, 63, 126, 127):
        idx = np.full(ends.shape, idx_value)
        _, out = _roundtrip_gaussian(model, ends, idx)
        assert np.array_equal(out, ends)
    # tiny scale: the end symbols have the floor probability 1 / 2**24 -> 24 bits each
    assert model.bits(np.array([127]), np.array([0])) == pytest.approx(24.0)
    assert model.bits(np.array([-128]), np.array([0])) == pytest.approx(24.0)


def test_gaussian_empty_and_dtypes():
    model = E.GaussianModel(-128, 127)
    enc = E.new_encoder()
    model.encode(enc, np.zeros(0, np.int32), np.zeros(0, np.int64))
    assert model.decode(E.new_decoder(E.encoder_bytes(enc)), np.zeros(0, np.int64)).shape == (0,)
    sym = np.array([3, -2, 0], dtype=np.int64)
    idx = np.array([10, 10, 127], dtype=np.uint8)
    _, out = _roundtrip_gaussian(model, sym, idx)
    assert np.array_equal(out, sym)


def test_gaussian_rejects_bad_input():
    model = E.GaussianModel(-128, 127)
    enc = E.new_encoder()
    with pytest.raises(ValueError):
        model.encode(enc, np.array([128], np.int32), np.array([5]))
    with pytest.raises(ValueError):
        model.encode(enc, np.array([-129], np.int32), np.array([5]))
    with pytest.raises(ValueError):
        model.encode(enc, np.array([0, 1], np.int32), np.array([5]))
    with pytest.raises(ValueError):
        model.encode(enc, np.array([0], np.int32), np.array([128]))
    with pytest.raises(ValueError):
        model.encode(enc, np.array([0.5]), np.array([1]))
    with pytest.raises(ValueError):
        model.encode(enc, np.zeros((2, 2), np.int32), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError):
        E.GaussianModel(3, 3)


def test_gaussian_bits_match_compressed_size():
    rng = np.random.default_rng(RNG_SEED)
    model = E.GaussianModel(-128, 127)
    for n in (100, 40960):
        sym, idx = _gaussian_sample(rng, n)
        enc = E.new_encoder()
        model.encode(enc, sym, idx)
        actual = enc.num_bits()
        est = model.bits(sym, idx)
        assert abs(actual - est) <= 64 + 1e-3 * est, (actual, est)
    # rare symbols: an off-by-one in the quantised table would show as ~1 bit per symbol
    sym = np.full(2000, 127, np.int32)
    idx = np.zeros(2000, np.int64)
    enc = E.new_encoder()
    model.encode(enc, sym, idx)
    assert abs(enc.num_bits() - model.bits(sym, idx)) <= 64
    assert model.bits(sym, idx) == pytest.approx(2000 * 24)


def test_gaussian_deterministic_and_golden():
    rng = np.random.default_rng(7)
    model = E.GaussianModel(-128, 127)
    sym, idx = _gaussian_sample(rng, 64)
    a, _ = _roundtrip_gaussian(model, sym, idx)
    b, _ = _roundtrip_gaussian(E.GaussianModel(-128, 127), sym.copy(), idx.copy())
    assert a == b
    sym = np.array([0, 1, -1, 2, -3, 127, -128, 0, 0, 5], dtype=np.int32)
    idx = np.array([0, 20, 40, 60, 80, 100, 127, 64, 3, 90])
    data, out = _roundtrip_gaussian(model, sym, idx)
    assert np.array_equal(out, sym)
    assert data.hex() == GOLDEN_GAUSSIAN


GOLDEN_GAUSSIAN = "e9d9e7fba4e6959600000000"


# ---------------------------------------------------------------------------------------------- categorical


def test_categorical_roundtrip_and_bits():
    rng = np.random.default_rng(RNG_SEED)
    C, K = 64, 17
    pmf = rng.random((C, K)) ** 3
    pmf[:, 0] = 0.0  # zero-probability symbols still codable
    model = E.CategoricalModel(pmf, -8)
    assert model.freq.shape == (C, K)
    sym = rng.integers(-8, 9, (C, 300)).astype(np.int32)
    sym[:, 0] = -8
    sym[:, 1] = 8
    enc = E.new_encoder()
    model.encode(enc, sym)
    est = model.bits(sym)
    assert abs(enc.num_bits() - est) <= 64 + 1e-3 * est
    out = model.decode(E.new_decoder(E.encoder_bytes(enc)), 300)
    assert out.dtype == np.int32 and np.array_equal(out, sym)
    assert model.decode(E.new_decoder(b""), 0).shape == (C, 0)


def test_categorical_rejects_bad_input():
    with pytest.raises(ValueError):
        E.CategoricalModel(np.ones(5), 0)
    with pytest.raises(ValueError):
        E.CategoricalModel(np.array([[1.0, np.inf]]), 0)
    with pytest.raises(ValueError):
        E.CategoricalModel(np.array([[0.0, 0.0]]), 0)
    model = E.CategoricalModel(np.ones((2, 4)), -2)
    with pytest.raises(ValueError):
        model.encode(E.new_encoder(), np.array([[2], [0]]))
    with pytest.raises(ValueError):
        model.encode(E.new_encoder(), np.zeros((3, 1), np.int32))


# ---------------------------------------------------------------------------------------------- uniform


def test_uniform_fsq_roundtrip_exact_bits():
    rng = np.random.default_rng(RNG_SEED)
    model = E.UniformModel([4] * 7)
    idx = rng.integers(0, 4, (7, 500)).astype(np.int32)
    assert model.bits(idx) == 7 * 500 * 2
    enc = E.new_encoder()
    model.encode(enc, idx)
    assert abs(enc.num_bits() - 7000) <= 64
    assert np.array_equal(model.decode(E.new_decoder(E.encoder_bytes(enc)), 500), idx)


def test_uniform_mixed_levels():
    rng = np.random.default_rng(RNG_SEED)
    levels = [1, 2, 3, 5, 8, 1000]
    model = E.UniformModel(levels)
    idx = np.stack([rng.integers(0, v, 200) for v in levels]).astype(np.int32)
    idx[:, 0] = np.array(levels) - 1
    enc = E.new_encoder()
    model.encode(enc, idx)
    assert np.array_equal(model.decode(E.new_decoder(E.encoder_bytes(enc)), 200), idx)
    assert model.bits(idx) == pytest.approx(200 * sum(math.log2(v) for v in levels), rel=1e-5)
    with pytest.raises(ValueError):
        model.encode(E.new_encoder(), np.ones((6, 1), np.int32))  # channel 0 has one level
    with pytest.raises(ValueError):
        E.UniformModel([0])
    with pytest.raises(ValueError):
        E.UniformModel([])


# ---------------------------------------------------------------------------------------------- streams


def test_mixed_substreams_in_order():
    """z (categorical or FSQ) then y in two passes, one range coder: decoded in the encoding order."""
    rng = np.random.default_rng(RNG_SEED)
    zmodel = E.CategoricalModel(rng.random((4, 17)), -8)
    fsq = E.UniformModel([4] * 3)
    ymodel = E.GaussianModel(-128, 127)
    z = rng.integers(-8, 9, (4, 20)).astype(np.int32)
    f = rng.integers(0, 4, (3, 20)).astype(np.int32)
    ya, ia = _gaussian_sample(rng, 700)
    yb, ib = _gaussian_sample(rng, 900)
    enc = E.new_encoder()
    zmodel.encode(enc, z)
    fsq.encode(enc, f)
    ymodel.encode(enc, ya, ia)
    ymodel.encode(enc, yb, ib)
    dec = E.new_decoder(E.encoder_bytes(enc))
    assert np.array_equal(zmodel.decode(dec, 20), z)
    assert np.array_equal(fsq.decode(dec, 20), f)
    assert np.array_equal(ymodel.decode(dec, ia), ya)
    assert np.array_equal(ymodel.decode(dec, ib), yb)


def test_encoder_bytes_little_endian():
    enc = E.new_encoder()
    E.GaussianModel(-8, 8).encode(enc, np.array([1, 2, 3], np.int32), np.array([5, 5, 5]))
    words = enc.get_compressed()
    assert E.encoder_bytes(enc) == b"".join(int(w).to_bytes(4, "little") for w in words)


def test_new_decoder_rejects_partial_words():
    for n in (1, 2, 3, 5, 7):
        with pytest.raises(CorruptStreamError):
            E.new_decoder(b"\0" * n)


def test_garbage_payload_decodes_or_raises_corrupt():
    rng = np.random.default_rng(RNG_SEED)
    model = E.GaussianModel(-128, 127)
    idx = rng.integers(0, 128, 300)
    for _ in range(200):
        data = rng.integers(0, 256, 4 * int(rng.integers(0, 8)), dtype=np.uint8).tobytes()
        try:
            out = model.decode(E.new_decoder(data), idx)
        except CorruptStreamError:
            continue
        assert out.shape == (300,) and out.min() >= -128 and out.max() <= 127


def test_symbols_crc32():
    a = np.arange(10, dtype=np.int32)
    b = np.arange(10, dtype=np.int64).reshape(2, 5)
    assert E.symbols_crc32([a]) == E.symbols_crc32([b])
    assert E.symbols_crc32([a, a]) != E.symbols_crc32([a])
    assert 0 <= E.symbols_crc32([a]) < 2**32
