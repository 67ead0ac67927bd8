"""The user's coding policy, shared by every part of nic: the quality scale, where the fine
layer takes over, the standard qualities that results are measured at, and the encoder effort.

Quality is an integer from 1 (smallest files) to 100 (best pictures), 75 unless asked
otherwise. The header stores it; each model maps it onto its own trained rate range
(`models/gains.py`), and above `FINE_FROM` the hyperprior models code quality `FINE_FROM`'s
latent plus a fine layer (`fine.py`). Effort is how much encoder time is spent per image
(`runtime/refine.py` holds each level's schedule); decoding is the same at every effort."""

from __future__ import annotations

import numpy as np

from nic.errors import NicError
from nic_decode.container import QUALITY_MAX, QUALITY_MIN  # the header's scale

DEFAULT_QUALITY = 75
QUALITIES = range(QUALITY_MIN, QUALITY_MAX + 1)
FINE_FROM = 50  # qualities above this carry a fine layer on the latent of this quality
STANDARD_QUALITIES = (1, 10, 20, 35, 50, 65, 80, 90, 100)  # where eval, model cards and docs measure
EFFORTS = (0, 1, 2, 3, 4)  # 0: g_a's latent, as fast as compression gets; higher: refined, slower
DEFAULT_EFFORT = 0


def check_quality(quality: int) -> int:
    """The quality as a plain int, or a one-line NicError for anything off the scale."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or \
            not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise NicError(f"quality must be an integer from {QUALITY_MIN} to {QUALITY_MAX}, got {quality!r}")
    return int(quality)


def check_effort(effort: object) -> int:
    """The effort level (an int, or its digits as typed on a command line), or a one-line
    NicError naming the levels there are."""
    value = int(effort) if isinstance(effort, str) and effort.isdigit() else effort
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) not in EFFORTS:
        raise NicError(f"effort must be one of {', '.join(map(str, EFFORTS))}, got {effort!r}")
    return int(value)
