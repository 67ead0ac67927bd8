"""Discrete Laplace (two-sided geometric) tables: the entropy model of pixel residuals.

Residuals of a decoded image are peaked at zero with heavy tails, as prediction residuals are
in lossless coders (JPEG-LS codes them with the same distribution); on training patches they
cost 3% fewer bits than under Gaussian tables of the same scales. P(v) is proportional to
theta**|v|, one table per standard deviation `scale(k)`.

The masses are nic_decode.laplace's (the decoder builds these tables itself, exactly the same
on every machine); here they become a TableSet.
"""

from __future__ import annotations

import functools

from nic.entropy.tables import TableSet
from nic_decode.laplace import SCALE_LEVELS, SCALE_MAX, SCALE_MIN, pmfs, scale

__all__ = ["SCALE_LEVELS", "SCALE_MAX", "SCALE_MIN", "laplace_tables", "scale"]


@functools.cache
def laplace_tables() -> TableSet:
    """One table per scale, k = 0..SCALE_LEVELS-1; built once per process."""
    return TableSet.from_pmfs(*pmfs())
