"""Discrete Laplace (two-sided geometric) tables: the entropy model of the fine layer's residuals.

P(v) is proportional to theta**|v|, one table per standard deviation `scale(k)`. The decoder
builds these tables itself, so they must come out the same on every machine: theta is computed
with `decimal` (software arithmetic, the same everywhere, unlike libm's exp), the masses are
integers below 2**40, and the only floating-point steps after that are single IEEE divisions,
products and floors, which are exact-rounded on every CPU. nic/entropy/laplace.py builds its
TableSet from the same `pmfs`.
"""

from __future__ import annotations

import decimal
import functools
from decimal import Decimal

import numpy as np

from nic_decode.coder import Tables
from nic_decode.tables import TAIL_MASS, quantize_pmf

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = Decimal("0.15"), Decimal(48), 40  # std in quantizer steps
_TAIL = Decimal(TAIL_MASS)
_MASS_BITS = 40


def scale(k: int) -> Decimal:
    """Standard deviation of table k: log-spaced from SCALE_MIN to SCALE_MAX."""
    with decimal.localcontext(prec=40):
        return SCALE_MIN * (SCALE_MAX / SCALE_MIN) ** (Decimal(k) / (SCALE_LEVELS - 1))


def _pmf(sigma: Decimal) -> tuple[np.ndarray, int]:
    """Integer masses of -r..r and the escape (the mass beyond), and the offset -r."""
    with decimal.localcontext(prec=40):
        theta = (-Decimal(2).sqrt() / sigma).exp()
        side = [Decimal(1 << _MASS_BITS)]  # theta**v for v = 0, 1, ...
        while 2 * side[-1] * theta / (1 - theta) > _TAIL * side[0] or len(side) < 2:  # mass beyond +-v
            side.append(side[-1] * theta)
        tail = 2 * side[-1] * theta / (1 - theta)
        r = len(side) - 1
        mass = [int(m) for m in side[:0:-1] + side] + [int(tail)]
    return np.array(mass, dtype=np.float64), -r


def pmfs() -> tuple[list[np.ndarray], list[int]]:
    """The unquantized masses (escape last) and offsets of tables k = 0..SCALE_LEVELS-1."""
    masses, offsets = zip(*(_pmf(scale(k)) for k in range(SCALE_LEVELS)), strict=True)
    return list(masses), list(offsets)


@functools.cache
def laplace_tables() -> Tables:
    """One table per scale, built once per process."""
    masses, offsets = pmfs()
    quantized = [quantize_pmf(p) for p in masses]
    return Tables(np.concatenate(quantized), np.array([len(q) for q in quantized]), np.array(offsets))
