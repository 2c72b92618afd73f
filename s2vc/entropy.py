"""Entropy coding of S²VC on ``constriction``'s range coder.

Every symbol of a frame goes through one :class:`constriction.stream.queue.RangeEncoder`
(a queue: symbols are decoded in the order they were encoded). Three probability models:

* :class:`GaussianModel` -- the latent ``y``: a zero-mean quantised Gaussian whose standard deviation is
  snapped to :data:`SCALE_TABLE` (128 log-spaced values from 0.11 to 16, the table the release was trained
  with). The caller quantises ``y − mean`` and adds the mean back (``ŷ = q + mean``). Whether the mean is first
  rounded to :data:`MEAN_GRID` with :func:`round_means` is a property of the preset (``Preset.round_means``):
  the release does not round, so the official preset does not either (docs/official.md: rounding changed ~1 % of
  its symbols against the official code); the tiny preset and checkpoints older than the field do. Rounding
  does not make the decoder immune to float differences in the mean: it moves the decision boundary to the
  grid's half steps.
* :class:`CategoricalModel` -- one explicit table per channel (the factorised prior of the P-frame ``z``).
* :class:`UniformModel` -- the FSQ indices of the I-frame ``z`` (one alphabet size per channel).

Determinism. The probability tables are turned into integer frequencies (24-bit fixed point, every symbol
of the alphabet gets at least ``1 / 2**24``, so every in-range symbol can be coded) by this module with
IEEE-754 basic operations only (``+ - * /``, ``floor``, ``sqrt``, ``ldexp``, sequential cumulative sums):
the Gaussian CDF uses a series for ``erf`` and an ``exp`` written with those operations, not the platform's
``libm``. The integer frequencies ``f`` are handed to ``constriction.stream.model.Categorical(f - 1,
perfect=False)``, whose fast quantiser reproduces them exactly (sum ``2**24 - K`` makes its scale exactly
one). Hence encoder and decoder build bit-identical models on every machine, and :meth:`bits` reports the
exact information content of the model that is actually coded with.

Error detection. A range coder cannot tell a corrupted payload from a valid one: a flipped bit decodes to
other (in-range) symbols without any error most of the time. The unit CRC-32 (see :mod:`s2vc.bitstream`)
catches corruption in transit, and the codec stores a checksum of the decoded symbols
(:func:`symbols_crc32`) in the payload to catch a model mismatch between encoder and decoder. Only when
``constriction`` itself notices impossible data does decoding raise :class:`CorruptStreamError` here.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable, Sequence

import constriction
import numpy as np
import torch

from .errors import CorruptStreamError

__all__ = [
    "PRECISION",
    "SCALE_MIN",
    "SCALE_MAX",
    "SCALE_LEVELS",
    "SCALE_TABLE",
    "MEAN_GRID",
    "MAX_ALPHABET",
    "scale_index",
    "round_means",
    "quantize_pmf",
    "gaussian_pmf_table",
    "GaussianModel",
    "CategoricalModel",
    "UniformModel",
    "new_encoder",
    "encoder_bytes",
    "new_decoder",
    "symbols_crc32",
]

PRECISION = 24  # fixed-point precision of constriction's default categorical models (u32 words)
_TOTAL = 1 << PRECISION
MAX_ALPHABET = 1 << 16  # largest alphabet any model here accepts

SCALE_MIN = 0.11
SCALE_MAX = 16.0
SCALE_LEVELS = 128
MEAN_GRID = 1.0 / 256.0

# ln(0.11) and ln(16) as float64 literals (the correctly rounded values), so no libm log is involved.
_LN_SCALE_MIN = -2.2072749131897207
_LN_SCALE_MAX = 2.772588722239781

# exp() from IEEE basic operations only (Cody-Waite reduction + Taylor polynomial), identical on every machine.
_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # trailing zeros: k * _LN2_HI is exact for |k| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_EXP_TERMS = 16


def _det_exp(x: np.ndarray) -> np.ndarray:
    """``exp(x)`` for float64 ``x`` in about [-700, 700], to ~1 ulp, using only + - * / rint ldexp."""
    x = np.asarray(x, dtype=np.float64)
    k = np.rint(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= ~0.347
    p = np.ones_like(r)
    for n in range(_EXP_TERMS, 0, -1):  # Horner form of sum r^n / n!
        p = 1.0 + p * r / float(n)
    return np.ldexp(p, k.astype(np.int64))


_ERF_CLIP = 6.0  # erf(6) = 1 - 2.2e-17, which is 1.0 in float64
_ERF_TERMS = 180
_TWO_OVER_SQRT_PI = 1.1283791670955126


def _det_erf(x: np.ndarray) -> np.ndarray:
    """``erf(x)`` to ~1e-16 absolute error from basic IEEE operations (deterministic across machines).

    erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n x^(2n+1) 2^n / (1*3*...*(2n+1)) -- all terms positive, so no
    cancellation; exact to double precision for |x| <= 6 with 180 terms; erf(x) = sign(x) beyond.
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), _ERF_CLIP)
    a2 = a * a
    two_a2 = 2.0 * a2
    term = a.copy()
    total = a.copy()
    for n in range(1, _ERF_TERMS):
        term = term * two_a2 / float(2 * n + 1)
        total = total + term
    val = _TWO_OVER_SQRT_PI * _det_exp(-a2) * total
    val = np.minimum(val, 1.0)
    val = np.where(np.abs(x) >= _ERF_CLIP, 1.0, val)
    return np.where(x < 0, -val, val)


def _make_scale_table() -> np.ndarray:
    i = np.arange(SCALE_LEVELS, dtype=np.float64)
    t = _LN_SCALE_MIN + (_LN_SCALE_MAX - _LN_SCALE_MIN) * (i / float(SCALE_LEVELS - 1))
    table = _det_exp(t)
    table[0] = SCALE_MIN  # the end points are exact by definition
    table[-1] = SCALE_MAX
    table.flags.writeable = False
    return table


#: float64 ``exp(linspace(ln 0.11, ln 16, 128))`` (computed without libm; equal to numpy's to ~1 ulp).
SCALE_TABLE: np.ndarray = _make_scale_table()
_SCALE_BOUNDS = torch.from_numpy(SCALE_TABLE[1:].copy())  # idx >= k  <=>  sigma >= SCALE_TABLE[k]


def scale_index(scales: torch.Tensor) -> torch.Tensor:
    """Snap standard deviations to the index of :data:`SCALE_TABLE` (int64, same shape, in [0, 127]).

    Defined as ``trunc((ln clamp(σ, 0.11, 16) − ln 0.11) · 127 / (ln 16 − ln 0.11))``. It is evaluated as
    "how many of ``SCALE_TABLE[1:]`` are <= σ" in float64 -- the same function (``SCALE_TABLE[k]`` is exactly
    where the formula reaches ``k``) without a logarithm, so it does not depend on the platform's ``log``.
    NaN maps to 127 (the widest model).
    """
    s = torch.as_tensor(scales).detach().to(device="cpu", dtype=torch.float64)
    s = torch.nan_to_num(s, nan=SCALE_MAX, posinf=SCALE_MAX, neginf=SCALE_MIN)
    s = s.clamp(SCALE_MIN, SCALE_MAX)
    idx = torch.bucketize(s, _SCALE_BOUNDS, right=True)
    return idx.clamp_(0, SCALE_LEVELS - 1).to(torch.int64)


def round_means(means: torch.Tensor) -> torch.Tensor:
    """Round means to multiples of :data:`MEAN_GRID` (1/256), float32 (used where ``Preset.round_means`` is set).

    Scaling by 256 is exact in binary floating point and ``round`` is half-to-even on every backend, so
    equal means give equal rounded means; ``q + round_means(μ)`` is exact for ``|q + μ| < 2**15``. Means that
    differ in their last bits across a half step of the grid still round apart.
    """
    m = torch.as_tensor(means).to(torch.float32)
    return torch.round(m * 256.0) / 256.0


# ----------------------------------------------------------------------------------------------------------
# integer frequency tables


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Integer frequencies (int64, last axis sums to ``2**24``, every entry >= 1) for float pmf rows.

    ``c_i = floor((cumsum(p)_i / sum(p)) · (2**24 − K))`` is monotone and ends exactly at ``2**24 − K``;
    the frequency of symbol i is ``c_i − c_{i−1} + 1``. Only IEEE basic operations and a sequential
    cumulative sum are used, so the result is the same on every machine.
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim == 0 or p.shape[-1] < 2 or p.shape[-1] > MAX_ALPHABET:
        raise ValueError(f"a pmf needs 2..{MAX_ALPHABET} entries on its last axis, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("pmf entries must be finite and >= 0")
    k = p.shape[-1]
    cum = np.cumsum(p, axis=-1)  # sequential: deterministic
    total = cum[..., -1:]
    if np.any(total <= 0):
        raise ValueError("every pmf row needs a positive sum")
    free = float(_TOTAL - k)
    c = np.floor((cum / total) * free)
    c[..., -1] = free
    c = c.astype(np.int64)
    freq = np.diff(c, axis=-1, prepend=0) + 1
    return freq


def _models_from_freq(freq: np.ndarray) -> list:
    """One concrete constriction Categorical per row of integer frequencies (sum 2**24 each)."""
    freq = np.atleast_2d(np.asarray(freq, dtype=np.int64))
    assert np.all(freq >= 1) and np.all(freq.sum(axis=-1) == _TOTAL)
    weights = (freq - 1).astype(np.float64)  # sums to 2**24 - K exactly -> constriction's scale is 1.0
    return [constriction.stream.model.Categorical(np.ascontiguousarray(w), perfect=False) for w in weights]


def _neg_log2_freq(freq: np.ndarray) -> np.ndarray:
    return PRECISION - np.log2(freq.astype(np.float64))


def gaussian_pmf_table(symbol_min: int, symbol_max: int) -> np.ndarray:
    """float64 (128, K) masses of zero-mean Gaussians with std ``SCALE_TABLE[i]`` on bins ``[s−½, s+½]``.

    The tails beyond the range are folded into the two end symbols (the caller clamps to the range).
    """
    symbol_min, symbol_max = _check_range(symbol_min, symbol_max)
    inner = np.arange(symbol_min, symbol_max, dtype=np.float64) + 0.5  # K-1 inner bin edges
    denom = SCALE_TABLE[:, None] * np.sqrt(2.0)
    e = _det_erf(inner[None, :] / denom)  # (128, K-1), erf of edge / (σ√2)
    ones = np.ones((SCALE_LEVELS, 1))
    e = np.concatenate([-ones, e, ones], axis=1)  # erf at -inf, edges, +inf
    mass = 0.5 * (e[:, 1:] - e[:, :-1])
    return np.maximum(mass, 0.0)


def _check_range(symbol_min: int, symbol_max: int) -> tuple[int, int]:
    symbol_min, symbol_max = int(symbol_min), int(symbol_max)
    k = symbol_max - symbol_min + 1
    if k < 2 or k > MAX_ALPHABET:
        raise ValueError(f"symbol range [{symbol_min}, {symbol_max}] must hold 2..{MAX_ALPHABET} symbols")
    if symbol_min < -(2**31) or symbol_max >= 2**31:
        raise ValueError("symbol range must fit in int32")
    return symbol_min, symbol_max


@functools.lru_cache(maxsize=16)
def _gaussian_tables(symbol_min: int, symbol_max: int) -> tuple[np.ndarray, tuple, np.ndarray]:
    freq = quantize_pmf(gaussian_pmf_table(symbol_min, symbol_max))
    freq.flags.writeable = False
    info = _neg_log2_freq(freq)
    info.flags.writeable = False
    return freq, tuple(_models_from_freq(freq)), info


def _as_symbols(symbols, lo: int, hi: int, what: str) -> np.ndarray:
    s = np.asarray(symbols)
    if s.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integers, got dtype {s.dtype}")
    if s.size and (s.min() < lo or s.max() > hi):
        raise ValueError(f"{what} outside [{lo}, {hi}] (min {s.min()}, max {s.max()}); clamp first")
    return s


def _decode(decoder, model, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    try:
        return np.asarray(decoder.decode(model, int(n)), dtype=np.int32)
    except Exception as exc:  # constriction signals impossible data with a panic -> AssertionError
        raise CorruptStreamError(f"entropy-coded payload is invalid: {exc}") from None


# ----------------------------------------------------------------------------------------------------------
# models


class GaussianModel:
    """Zero-mean quantised Gaussian over the integers ``[symbol_min, symbol_max]``, std = SCALE_TABLE[idx].

    Symbols are coded grouped by scale index (index 0 first, each group in its original order), which lets
    each group use one precomputed table; the decoder, knowing the indices, rebuilds the same order.
    """

    def __init__(self, symbol_min: int, symbol_max: int):
        self.symbol_min, self.symbol_max = _check_range(symbol_min, symbol_max)
        self._freq, self._models, self._info = _gaussian_tables(self.symbol_min, self.symbol_max)

    @property
    def freq(self) -> np.ndarray:
        """(128, K) int64 frequencies (out of ``2**24``) that are coded with."""
        return self._freq

    def _check_idx(self, scale_idx, n: int | None) -> np.ndarray:
        idx = np.asarray(scale_idx)
        if idx.ndim != 1 or (n is not None and idx.shape[0] != n):
            raise ValueError(f"scale_idx must be 1-D with one entry per symbol, got shape {idx.shape}")
        if idx.dtype.kind not in "iu":
            raise ValueError(f"scale_idx must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= SCALE_LEVELS):
            raise ValueError(f"scale_idx outside [0, {SCALE_LEVELS - 1}]")
        return idx.astype(np.intp, copy=False)

    def encode(self, encoder, symbols: np.ndarray, scale_idx: np.ndarray) -> None:
        s = _as_symbols(symbols, self.symbol_min, self.symbol_max, "symbols")
        if s.ndim != 1:
            raise ValueError(f"symbols must be 1-D, got shape {s.shape}")
        idx = self._check_idx(scale_idx, s.shape[0])
        if s.size == 0:
            return
        order = np.argsort(idx, kind="stable")
        shifted = (s.astype(np.int64)[order] - self.symbol_min).astype(np.int32)
        counts = np.bincount(idx, minlength=SCALE_LEVELS)
        start = 0
        for i in np.flatnonzero(counts):
            stop = start + int(counts[i])
            encoder.encode(shifted[start:stop], self._models[i])
            start = stop

    def decode(self, decoder, scale_idx: np.ndarray) -> np.ndarray:
        idx = self._check_idx(scale_idx, None)
        out = np.empty(idx.shape[0], dtype=np.int32)
        if idx.size == 0:
            return out
        order = np.argsort(idx, kind="stable")
        counts = np.bincount(idx, minlength=SCALE_LEVELS)
        parts = [_decode(decoder, self._models[i], int(counts[i])) for i in np.flatnonzero(counts)]
        out[order] = np.concatenate(parts) + self.symbol_min
        return out

    def bits(self, symbols: np.ndarray, scale_idx: np.ndarray) -> float:
        """Exact information content ``−Σ log2 p`` (bits) of the symbols under the coded model."""
        s = _as_symbols(symbols, self.symbol_min, self.symbol_max, "symbols").reshape(-1)
        idx = self._check_idx(np.asarray(scale_idx).reshape(-1), s.shape[0])
        return float(self._info[idx, s.astype(np.int64) - self.symbol_min].sum())


class CategoricalModel:
    """One categorical distribution per channel over ``symbol_min .. symbol_min + K − 1``.

    ``pmf`` is float64 (C, K), non-negative rows with a positive sum (they need not be normalised); each row
    is quantised with :func:`quantize_pmf`. Channel c codes row c of the (C, n) symbol array, channel 0 first.
    """

    def __init__(self, pmf: np.ndarray, symbol_min: int):
        p = np.asarray(pmf, dtype=np.float64)
        if p.ndim != 2:
            raise ValueError(f"pmf must be (C, K), got shape {p.shape}")
        self.symbol_min, self.symbol_max = _check_range(symbol_min, int(symbol_min) + p.shape[1] - 1)
        self.freq = quantize_pmf(p)
        self._info = _neg_log2_freq(self.freq)
        self._models = _models_from_freq(self.freq)
        self.channels = p.shape[0]

    def _check(self, symbols) -> np.ndarray:
        s = _as_symbols(symbols, self.symbol_min, self.symbol_max, "symbols")
        if s.ndim != 2 or s.shape[0] != self.channels:
            raise ValueError(f"symbols must be ({self.channels}, n), got shape {s.shape}")
        return s

    def encode(self, encoder, symbols: np.ndarray) -> None:
        s = self._check(symbols)
        shifted = (s.astype(np.int64) - self.symbol_min).astype(np.int32)
        if shifted.shape[1] == 0:
            return
        for c in range(self.channels):
            encoder.encode(np.ascontiguousarray(shifted[c]), self._models[c])

    def decode(self, decoder, n: int) -> np.ndarray:
        n = int(n)
        if n < 0:
            raise ValueError("n must be >= 0")
        out = np.empty((self.channels, n), dtype=np.int32)
        for c in range(self.channels):
            out[c] = _decode(decoder, self._models[c], n)
        return out + np.int32(self.symbol_min) if n else out

    def bits(self, symbols: np.ndarray) -> float:
        s = self._check(symbols).astype(np.int64) - self.symbol_min
        return float(np.take_along_axis(self._info, s, axis=1).sum())


class UniformModel:
    """Uniform indices ``0 .. levels[c] − 1`` per channel (FSQ codes); a channel with 1 level costs nothing."""

    def __init__(self, levels: Sequence[int]):
        lv = [int(v) for v in levels]
        if not lv or any(v < 1 or v > MAX_ALPHABET for v in lv):
            raise ValueError(f"levels must be 1..{MAX_ALPHABET} per channel, got {list(levels)}")
        self.levels = tuple(lv)
        self._models: dict[int, object] = {}
        self._info: dict[int, np.ndarray] = {}
        for v in set(lv):
            if v >= 2:
                freq = quantize_pmf(np.ones(v))
                self._models[v] = _models_from_freq(freq)[0]
                self._info[v] = _neg_log2_freq(freq)

    @property
    def channels(self) -> int:
        return len(self.levels)

    def _check(self, index) -> np.ndarray:
        s = np.asarray(index)
        if s.ndim != 2 or s.shape[0] != self.channels:
            raise ValueError(f"index must be ({self.channels}, n), got shape {s.shape}")
        if s.dtype.kind not in "iu":
            raise ValueError(f"index must be integers, got dtype {s.dtype}")
        lv = np.asarray(self.levels)[:, None]
        if s.size and (np.any(s < 0) or np.any(s >= lv)):
            raise ValueError("index outside [0, levels[c]) for some channel")
        return s

    def encode(self, encoder, index: np.ndarray) -> None:
        s = self._check(index).astype(np.int32)
        if s.shape[1] == 0:
            return
        for c, v in enumerate(self.levels):
            if v >= 2:
                encoder.encode(np.ascontiguousarray(s[c]), self._models[v])

    def decode(self, decoder, n: int) -> np.ndarray:
        n = int(n)
        if n < 0:
            raise ValueError("n must be >= 0")
        out = np.zeros((self.channels, n), dtype=np.int32)
        for c, v in enumerate(self.levels):
            if v >= 2:
                out[c] = _decode(decoder, self._models[v], n)
        return out

    def bits(self, index: np.ndarray) -> float:
        s = self._check(index).astype(np.int64)
        total = 0.0
        for c, v in enumerate(self.levels):
            if v >= 2:
                total += float(self._info[v][s[c]].sum())
        return total


# ----------------------------------------------------------------------------------------------------------
# coder helpers


def new_encoder():
    """A fresh range encoder (``constriction.stream.queue.RangeEncoder``)."""
    return constriction.stream.queue.RangeEncoder()


def encoder_bytes(encoder) -> bytes:
    """The encoder's compressed words as little-endian uint32 bytes (length a multiple of 4)."""
    words = np.asarray(encoder.get_compressed(), dtype=np.uint32)
    return words.astype("<u4", copy=False).tobytes()


def new_decoder(data: bytes):
    """A range decoder over ``data`` (from :func:`encoder_bytes`).

    Raises :class:`CorruptStreamError` if the length is not a multiple of 4. The range coder cannot detect
    most corruption by itself (altered words decode to other valid symbols); the unit CRC-32 and the codec's
    symbol checksum (:func:`symbols_crc32`) do.
    """
    buf = bytes(data)
    if len(buf) % 4:
        raise CorruptStreamError(f"entropy-coded payload length {len(buf)} is not a multiple of 4")
    words = np.frombuffer(buf, dtype="<u4").astype(np.uint32)
    return constriction.stream.queue.RangeDecoder(words)


def symbols_crc32(arrays: Iterable[np.ndarray]) -> int:
    """CRC-32 of integer symbol arrays (each as little-endian int32, in order): a check of decoded symbols."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(np.asarray(a), dtype="<i4").tobytes(), crc)
    return crc & 0xFFFFFFFF
