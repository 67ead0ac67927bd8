"""Integer probability tables: counts >= 1 summing to 2**PRECISION, so any value can be coded
and encoder and decoder see the same model. nic builds its tables with these (nic/entropy/tables.py)."""

from __future__ import annotations

import numpy as np

PRECISION = 24  # constriction's default ANS precision
TAIL_MASS = 1e-6  # mass left to the escape symbol when a table's range is chosen


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Integer counts >= 1 summing exactly to 2**PRECISION, close to `pmf` in proportion."""
    total = 1 << PRECISION
    pmf = np.maximum(np.asarray(pmf, dtype=np.float64), 0)
    n = len(pmf)
    counts = np.floor(pmf / pmf.sum() * (total - n)).astype(np.int64) + 1
    # Hand the remainder to the largest symbols, in a fixed order, so the result is exact.
    deficit = total - int(counts.sum())
    order = np.argsort(-pmf, kind="stable")
    counts[order[: deficit % n]] += 1
    counts[order] += deficit // n
    assert counts.sum() == total and counts.min() >= 1
    return counts
