"""Where the coded pixels go back to: padding to the model's multiple, and folding of very thin
or long images (nic/geometry.py plans both when encoding; this is the layout and its inverse).

A folded image is cut along its long side into strips of `fold` pixels (a multiple of the
model's downsampling) stacked across it; the header's fold field holds the strip length
(docs/FORMAT.md), 0 meaning not folded. The pixel limit applies to the padded work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nic_decode.errors import FormatError, NicError


def up(n: int, m: int) -> int:
    """n rounded up to a multiple of m."""
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
        return up(h, self.multiple), up(w, self.multiple)

    @property
    def work(self) -> int:
        """Pixels the model analyses or synthesises."""
        h, w = self.padded
        return h * w


def from_header(width: int, height: int, fold: int, multiple: int) -> Layout:
    """The layout a file's header describes, checked against the model (FormatError if it
    is not one an encoder makes)."""
    if fold and (fold % multiple or fold >= up(max(width, height), multiple)):
        raise FormatError(f"header's fold {fold} is not a multiple of {multiple} below the image's long side")
    return Layout(width, height, multiple, fold)


def check_work(layout: Layout, limit: int, cost: float = 1.0) -> None:
    """Refuse a layout whose padded work (times the model's cost per pixel) is over the limit."""
    if layout.work * cost > limit:
        scaled = f" (x{cost:g}, this model's decoding cost per pixel)" if cost != 1 else ""
        raise NicError(f"{layout.width}x{layout.height} needs {layout.work} pixels of work after padding"
                          f"{scaled}, over the limit of {limit} (set NIC_MAX_PIXELS)")


def restore(padded: np.ndarray, layout: Layout) -> np.ndarray:
    """The inverse of nic's `arrange`: the padded coded image -> (height, width, C) pixels."""
    h, w = layout.coded
    rgb = padded[:h, :w]
    if layout.fold:
        n, f = layout.strips, layout.fold
        if layout.wide:
            rgb = rgb.reshape(n, layout.height, f, -1).transpose(1, 0, 2, 3).reshape(layout.height, n * f, -1)
        else:
            rgb = rgb.reshape(f, n, layout.width, -1).transpose(1, 0, 2, 3).reshape(n * f, layout.width, -1)
    return np.ascontiguousarray(rgb[:layout.height, :layout.width])
