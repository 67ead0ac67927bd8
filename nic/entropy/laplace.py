"""Discrete Laplace (two-sided geometric) tables: the entropy model of pixel residuals.

Residuals of a decoded image are peaked at zero with heavy tails, as prediction residuals are
in lossless coders (JPEG-LS codes them with the same distribution); on training patches they
cost 3% fewer bits than under Gaussian tables of the same scales. P(v) is proportional to
theta**|v|, one table per standard deviation `scale(k)`.

The decoder builds these tables itself, so they must come out the same on every machine:
theta is computed with `decimal` (software arithmetic, the same everywhere, unlike libm's exp),
the masses are integers below 2**40, and the only floating-point steps after that are single
IEEE divisions, products and floors, which are exact-rounded on every CPU.
"""

from __future__ import annotations

import decimal
import functools
from decimal import Decimal

import numpy as np

from nic.entropy.tables import TAIL_MASS, TableSet

_TAIL = Decimal(TAIL_MASS)

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = Decimal("0.15"), Decimal(48), 40  # std in quantizer steps
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


@functools.cache
def laplace_tables() -> TableSet:
    """One table per scale, k = 0..SCALE_LEVELS-1; built once per process."""
    pmfs, offsets = zip(*(_pmf(scale(k)) for k in range(SCALE_LEVELS)), strict=True)
    return TableSet.from_pmfs(list(pmfs), list(offsets))
