"""Bjøntegaard delta rate and delta quality (VCEG-M33; JVET/CTC practice).

``bd_rate`` answers "how many percent more (+) or fewer (−) bits does the *test* codec need than the *anchor*
for the same quality, averaged over the quality range both curves cover": log-rate is interpolated as a
function of quality for each curve, both interpolants are integrated over the overlapping quality interval,
and the mean log-rate difference ``d`` gives ``(exp(d) − 1) · 100``. ``bd_quality`` (BD-PSNR when the quality
is PSNR) interpolates quality as a function of log-rate and averages the difference over the overlapping
log-rate interval; positive means the test codec is better.

Interpolation:

* ``"pchip"`` (default) — piecewise cubic Hermite (Fritsch–Carlson, ``scipy.interpolate.PchipInterpolator``)
  through the points, integrated exactly: the method of the JVET common-test-condition spreadsheets
  (JCTVC-F009 / VCEG-AL22) and the ``bjontegaard`` package's default. Needs 2 or more points per curve.
* ``"cubic"`` — the original VCEG-M33 least-squares cubic polynomial (``numpy.polyfit`` degree 3), needs at
  least 4 points per curve.

Both are exact for straight lines in the (log-rate, quality) plane, which the tests use as hand cases.
Rates can be bpp, kbps or bytes (any unit; both curves in the same one). The points of a curve are sorted by
rate; quality must rise strictly with rate, rates must be positive and distinct, or ``ValueError`` is raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["bd_rate", "bd_quality", "bd_psnr"]

METHODS = ("pchip", "cubic")


def _curve(rates: Sequence[float], quality: Sequence[float], name: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rates, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.size != q.size:
        raise ValueError(f"{name} curve: {r.size} rates but {q.size} quality values")
    need = 4 if method == "cubic" else 2
    if r.size < need:
        raise ValueError(f"{name} curve: the {method!r} method needs at least {need} rate points, got {r.size}")
    if not (np.isfinite(r).all() and np.isfinite(q).all()):
        raise ValueError(f"{name} curve: rates and quality values must be finite (an identical frame gives PSNR inf)")
    if (r <= 0).any():
        raise ValueError(f"{name} curve: rates must be positive, got {r.tolist()}")
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    if (np.diff(r) <= 0).any():
        raise ValueError(f"{name} curve: rates must be distinct, got {r.tolist()}")
    if (np.diff(q) <= 0).any():
        raise ValueError(f"{name} curve is not monotonic: quality must rise strictly with rate, "
                         f"got rates {r.tolist()} with quality {q.tolist()}")
    return np.log(r), q


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Mean of the interpolant y(x) through the points over [lo, hi]."""
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        integral = PchipInterpolator(x, y, extrapolate=False).integrate(lo, hi)
    elif method == "cubic":
        poly = np.polyint(np.polyfit(x, y, 3))
        integral = np.polyval(poly, hi) - np.polyval(poly, lo)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return float(integral) / (hi - lo)


def _overlap(a: np.ndarray, b: np.ndarray, what: str) -> tuple[float, float]:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if not hi > lo:
        raise ValueError(f"the curves do not overlap in {what}: anchor covers [{a.min():.4g}, {a.max():.4g}], "
                         f"test covers [{b.min():.4g}, {b.max():.4g}]")
    return float(lo), float(hi)


def _curves(anchor_rates, anchor_quality, test_rates, test_quality, method: str):
    """Both curves validated, as (log-rate, quality) arrays."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return _curve(anchor_rates, anchor_quality, "anchor", method), _curve(test_rates, test_quality, "test", method)


def bd_rate(anchor_rates: Sequence[float], anchor_quality: Sequence[float], test_rates: Sequence[float],
            test_quality: Sequence[float], method: str = "pchip") -> float:
    """BD-rate of the test curve against the anchor in percent (negative: the test codec saves bits)."""
    (lr1, q1), (lr2, q2) = _curves(anchor_rates, anchor_quality, test_rates, test_quality, method)
    lo, hi = _overlap(q1, q2, "quality")
    diff = _mean_over(q2, lr2, lo, hi, method) - _mean_over(q1, lr1, lo, hi, method)
    return (math.exp(diff) - 1.0) * 100.0


def bd_quality(anchor_rates: Sequence[float], anchor_quality: Sequence[float], test_rates: Sequence[float],
               test_quality: Sequence[float], method: str = "pchip") -> float:
    """BD-quality (BD-PSNR for PSNR) of the test curve against the anchor, in the quality's unit."""
    (lr1, q1), (lr2, q2) = _curves(anchor_rates, anchor_quality, test_rates, test_quality, method)
    lo, hi = _overlap(lr1, lr2, "rate")
    return _mean_over(lr2, q2, lo, hi, method) - _mean_over(lr1, q1, lo, hi, method)


bd_psnr = bd_quality
