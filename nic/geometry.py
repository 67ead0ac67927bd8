"""Where the pixels go before coding: padding to the model's multiple, and folding of very
thin or long images so that padding does not multiply their work.

A model codes images whose sides are multiples of its downsampling m (64 for the default), so
a 1 x 100,000 image padded as it is would be coded as 64 x 100,032 pixels: 64 times the work,
and most of the bits spent on padding. Such an image is folded instead: cut along its long
side into strips of `fold` pixels (a multiple of m) that are stacked across it, so the coded
image is nearly square; the decoder unstacks them. The header's fold field holds the strip
length (docs/FORMAT.md); 0 means not folded. The pixel limit applies to the padded work.

The layout, its checks and `restore` are the decoder's, in nic_decode.geometry; the encoder's
`plan` and `arrange` are here.
"""

from __future__ import annotations

import numpy as np

from nic_decode.geometry import Layout, check_work, from_header, restore
from nic_decode.geometry import up as _up

FOLD_GAIN = 2  # fold only when that at least halves the padded work (strip seams cost a little)
SLACK = 1.1  # among folds within this factor of the least work, the one with the fewest strips
__all__ = ["Layout", "arrange", "check_work", "from_header", "plan", "restore"]


def plan(width: int, height: int, multiple: int) -> Layout:
    """The layout an encoder uses: folded when that at least halves the padded work."""
    plain = Layout(width, height, multiple)
    long, short = max(width, height), min(width, height)
    folds = np.arange(multiple, _up(long, multiple), multiple, dtype=np.int64)
    if not folds.size:
        return plain
    work = _up_array(-(-long // folds) * short, multiple) * folds
    best = int(folds[work <= work.min() * SLACK][-1])  # the longest strips, so the fewest seams, near the least work
    folded = Layout(width, height, multiple, best)
    return folded if folded.work * FOLD_GAIN <= plain.work else plain


def _up_array(n: np.ndarray, m: int) -> np.ndarray:
    return -(-n // m) * m


def arrange(rgb: np.ndarray, layout: Layout) -> np.ndarray:
    """(H, W, C) pixels -> the padded image the model codes: folded, then edge-replicated."""
    if layout.fold:
        n, f = layout.strips, layout.fold
        if layout.wide:
            rgb = np.pad(rgb, ((0, 0), (0, n * f - layout.width), (0, 0)), mode="edge")
            rgb = rgb.reshape(layout.height, n, f, -1).transpose(1, 0, 2, 3).reshape(n * layout.height, f, -1)
        else:
            rgb = np.pad(rgb, ((0, n * f - layout.height), (0, 0), (0, 0)), mode="edge")
            rgb = rgb.reshape(n, f, layout.width, -1).transpose(1, 0, 2, 3).reshape(f, n * layout.width, -1)
    ph, pw = layout.padded
    return np.pad(rgb, ((0, ph - rgb.shape[0]), (0, pw - rgb.shape[1]), (0, 0)), mode="edge")
