"""The quality scale every part of nic shares: integers from 1 (smallest files) to 100 (best
pictures), 75 unless asked otherwise. The header stores it; each model maps it onto its own
trained rate range (`models/rate.py`), and above 50 the hyperprior models code quality 50's
latent plus a fine layer (`fine.py`)."""

from __future__ import annotations

import numpy as np

from nic.errors import NicError

QUALITY_MIN, QUALITY_MAX = 1, 100
DEFAULT_QUALITY = 75
QUALITIES = range(QUALITY_MIN, QUALITY_MAX + 1)


def check_quality(quality: int) -> int:
    """The quality as a plain int, or a one-line NicError for anything off the scale."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or \
            not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise NicError(f"quality must be an integer from {QUALITY_MIN} to {QUALITY_MAX}, got {quality!r}")
    return int(quality)
