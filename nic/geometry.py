"""Where the pixels go before coding: padding to the model's multiple, and folding of very
thin or long images so that padding does not multiply their work.

A model codes images whose sides are multiples of its downsampling m (64 for the default), so
a 1 x 100,000 image padded as it is would be coded as 64 x 100,032 pixels: 64 times the work,
and most of the bits spent on padding. Such an image is folded instead: cut along its long
side into strips of `fold` pixels (a multiple of m) that are stacked across it, so the coded
image is nearly square; the decoder unstacks them. The header's fold field holds the strip
length (docs/FORMAT.md); 0 means not folded. The pixel limit applies to the padded work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nic.errors import FormatError, NicError

FOLD_GAIN = 2  # fold only when that at least halves the padded work (strip seams cost a little)
SLACK = 1.1  # among folds within this factor of the least work, the one with the fewest strips


def _up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class Layout:
    """How a width x height image is coded by a model of downsampling `multiple`."""

    width: int
    height: int
    multiple: int
    fold: int = 0  # strip length along the long side; 0 = not folded

    @property
    def wide(self) -> bool:
        return self.width >= self.height

    @property
    def strips(self) -> int:
        return -(-max(self.width, self.height) // self.fold) if self.fold else 1

    @property
    def coded(self) -> tuple[int, int]:
        """(height, width) of the image that is coded, before padding."""
        if not self.fold:
            return self.height, self.width
        return (self.strips * self.height, self.fold) if self.wide else (self.fold, self.strips * self.width)

    @property
    def padded(self) -> tuple[int, int]:
        h, w = self.coded
        return _up(h, self.multiple), _up(w, self.multiple)

    @property
    def work(self) -> int:
        """Pixels the model analyses or synthesises."""
        h, w = self.padded
        return h * w


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


def from_header(width: int, height: int, fold: int, multiple: int) -> Layout:
    """The layout a file's header describes, checked against the model (FormatError if it
    is not one an encoder makes)."""
    if fold and (fold % multiple or fold >= _up(max(width, height), multiple)):
        raise FormatError(f"header's fold {fold} is not a multiple of {multiple} below the image's long side")
    return Layout(width, height, multiple, fold)


def check_work(layout: Layout, limit: int, cost: float = 1.0) -> None:
    """Refuse a layout whose padded work (times the model's cost per pixel) is over the limit."""
    if layout.work * cost > limit:
        scaled = f" (x{cost:g}, this model's decoding cost per pixel)" if cost != 1 else ""
        raise NicError(f"{layout.width}x{layout.height} needs {layout.work} pixels of work after padding"
                       f"{scaled}, over the limit of {limit} (set NIC_MAX_PIXELS)")


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


def restore(padded: np.ndarray, layout: Layout) -> np.ndarray:
    """The inverse of `arrange`: the padded coded image -> (height, width, C) pixels."""
    h, w = layout.coded
    rgb = padded[:h, :w]
    if layout.fold:
        n, f = layout.strips, layout.fold
        if layout.wide:
            rgb = rgb.reshape(n, layout.height, f, -1).transpose(1, 0, 2, 3).reshape(layout.height, n * f, -1)
        else:
            rgb = rgb.reshape(f, n, layout.width, -1).transpose(1, 0, 2, 3).reshape(n * f, layout.width, -1)
    return np.ascontiguousarray(rgb[:layout.height, :layout.width])
