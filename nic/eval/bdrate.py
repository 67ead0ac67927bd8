"""Bjøntegaard deltas between two rate-distortion curves, with piecewise cubic (PCHIP) interpolation.

BD-rate is the mean difference of log-rate over the quality interval both curves cover, as a
percentage (negative: the test curve needs fewer bits for the same quality); BD-PSNR (or
BD-quality for any metric in dB) is the mean quality difference over the common log-rate
interval. PCHIP, unlike the original cubic fit, never overshoots between points. The
interpolants are integrated exactly. NumPy only, so that scipy is not a dependency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """One-sided three-point slope at an end, limited to keep the curve shape-preserving."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > 3 * abs(m0):
        return 3 * m0
    return d


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson slopes at the knots (as scipy's PchipInterpolator); x strictly increasing."""
    h, m = np.diff(x), np.diff(y) / np.diff(x)
    if len(x) == 2:
        return np.array([m[0], m[0]])
    d = np.zeros(len(x))
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    same = m[:-1] * m[1:] > 0  # a local extremum or a flat piece gets slope 0
    d[1:-1][same] = (w1 + w2)[same] / (w1[same] / m[:-1][same] + w2[same] / m[1:][same])
    d[0] = _end_slope(h[0], h[1], m[0], m[1])
    d[-1] = _end_slope(h[-1], h[-2], m[-1], m[-2])
    return d


def pchip(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The PCHIP interpolant of (x, y) and its derivative at points t inside [x[0], x[-1]]."""
    d = pchip_slopes(x, y)
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    value = ((2 * s**3 - 3 * s**2 + 1) * y[k] + (s**3 - 2 * s**2 + s) * h * d[k]
             + (3 * s**2 - 2 * s**3) * y[k + 1] + (s**3 - s**2) * h * d[k + 1])
    slope = ((6 * s**2 - 6 * s) * (y[k] - y[k + 1]) / h
             + (3 * s**2 - 4 * s + 1) * d[k] + (3 * s**2 - 2 * s) * d[k + 1])
    return value, slope


def pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral of the PCHIP interpolant over [lo, hi] inside [x[0], x[-1]].

    Between neighbouring knots the interpolant is one cubic, for which the trapezoid rule with
    its end-slope correction, w (f(a) + f(b)) / 2 + w^2 (f'(a) - f'(b)) / 12, is exact.
    """
    cuts = np.concatenate([[lo], x[(x > lo) & (x < hi)], [hi]])
    f, df = pchip(x, y, cuts)
    w = np.diff(cuts)
    return float(np.sum(w * (f[:-1] + f[1:]) / 2 + w**2 * (df[:-1] - df[1:]) / 12))


def rd_curve(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(log rate, quality) of the points worth choosing, both strictly increasing.

    Points with a non-finite value or no rate are dropped, and so are dominated points (another
    point has at most the rate and at least the quality): nobody would pick such a setting, and
    without them the curve is a function in both directions, as the interpolation needs.
    """
    pts = [(r, q) for r, q in zip(rate, quality, strict=True)
           if r is not None and q is not None and math.isfinite(r) and math.isfinite(q) and r > 0]
    pts.sort(key=lambda p: (p[0], -p[1]))
    kept: list[tuple[float, float]] = []
    for r, q in pts:
        if not kept or q > kept[-1][1]:
            kept.append((r, q))
    return np.log([r for r, _ in kept]), np.array([q for _, q in kept])


def _mean_gap(x_anchor: np.ndarray, y_anchor: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Mean of (test - anchor) in y over the x interval both curves cover; NaN without overlap."""
    if len(x_anchor) < 2 or len(x_test) < 2:
        return math.nan
    lo, hi = max(x_anchor[0], x_test[0]), min(x_anchor[-1], x_test[-1])
    if not lo < hi:
        return math.nan
    return (pchip_integral(x_test, y_test, lo, hi) - pchip_integral(x_anchor, y_anchor, lo, hi)) / (hi - lo)


def bd_rate(rate_anchor: Sequence[float], quality_anchor: Sequence[float],
            rate_test: Sequence[float], quality_test: Sequence[float]) -> float:
    """Mean rate difference (%) of the test curve against the anchor at equal quality; NaN without overlap."""
    la, qa = rd_curve(rate_anchor, quality_anchor)
    lt, qt = rd_curve(rate_test, quality_test)
    return float(math.expm1(_mean_gap(qa, la, qt, lt)) * 100)


def bd_quality(rate_anchor: Sequence[float], quality_anchor: Sequence[float],
               rate_test: Sequence[float], quality_test: Sequence[float]) -> float:
    """Mean quality difference (BD-PSNR, in the metric's unit) at equal rate; NaN without overlap."""
    la, qa = rd_curve(rate_anchor, quality_anchor)
    lt, qt = rd_curve(rate_test, quality_test)
    return float(_mean_gap(la, qa, lt, qt))
