"""nic's exact fixed-point networks (nic/runtime/integer.py) in numpy.

Both exist because nic's run on torch (its threads, its GEMMs, the encoder's export) and these
must not need it; the constants and the transposed-conv tap layout are these, shared.

Weights are integers with a power-of-two scale per output channel, activations integers with
FRAC_BITS fractional bits. Convolutions run as float64 matrix products of integer-valued
arrays: every product and partial sum stays below 2**53, so each result is the exact integer
whatever the summation order or BLAS, and equals nic's. Rescaling multiplies by a power of two
(built with ldexp, exact) and rounds half up, operation for operation as nic does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRAC_BITS = 12  # fixed-point fraction of activations and outputs
WEIGHT_LIMIT = (1 << 14) - 1  # |integer weight| <= this (stored as int16)
ACT_LIMIT = (1 << 22) - 1  # |activation| clamp: 1024 in real units, far above what networks make
NORM_LIMIT = float(1 << 30)  # inverse-GDN multiplier clamp: keeps a * norm below 2**52
# Worst case accumulator: 2**22 * 2**14 * (fan-in < 2**16) = 2**52 < 2**53.
UNIT = math.ldexp(1.0, -FRAC_BITS)
_ACT = float(ACT_LIMIT)  # the clamp, for float64 activations
# The output phases (row, column parity) of a stride-2 transposed conv computed as a 3x3 conv,
# in the order of its column blocks: in this order every tap feeds one contiguous run of them.
PHASES = ((1, 0), (0, 0), (0, 1), (1, 1))

Tap = tuple[int, int, int, int, np.ndarray]  # (ty, tx, first column, end column, (in, columns) matrix)
# (ty, tx, first phase, end phase, the kernel entry (ky, kx) of each phase in that run, None: zero)
TapRun = tuple[int, int, int, int, list[tuple[int, int] | None]]


def _scale(shift: np.ndarray) -> np.ndarray:
    """2**-shift per channel, exactly (ldexp, never libm)."""
    return np.array([math.ldexp(1.0, -int(s)) for s in shift.ravel()], dtype=np.float64)


def _rescale(acc: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """acc x scale (powers of two) rounded half up, in place: exact on integer-valued float64."""
    acc *= scale
    acc += 0.5
    return np.floor(acc, out=acc)


def round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """int64 x * 2**-shift rounded half up (shift >= 1), as nic's `round_shift`."""
    return (x + (1 << (shift - 1))) >> shift


@dataclass
class Layer:
    kind: str  # "conv3", "conv1", "deconv", "relu", "upsample", "igdn"
    taps: list[Tap] | None = None
    matrix: np.ndarray | None = None  # conv1: (in, out); igdn: gamma transposed
    bias: np.ndarray | None = None  # per output column (igdn: beta)
    scale: np.ndarray | None = None  # per output column


def _conv_taps(weight: np.ndarray) -> list[Tap]:
    """Conv2d weight (out, in, 3, 3) -> one (in, out) matrix per tap."""
    cout = weight.shape[0]
    return [(ty, tx, 0, cout, np.ascontiguousarray(weight[:, :, ty, tx].T)) for ty in range(3) for tx in range(3)]


def deconv_runs(k: int, padding: int) -> list[TapRun]:
    """Where a ConvTranspose2d(k, stride 2)'s kernel goes in the 3x3 conv that makes its four
    output phases as column blocks (PHASES order): per tap, the run of phases it feeds (25 of
    the 36 blocks for k = 5). nic builds its torch taps from the same runs."""
    runs = []
    for ty in range(3):
        for tx in range(3):
            entries = []
            for ay, ax in PHASES:
                ky, kx = ay + padding - 2 * (ty - 1), ax + padding - 2 * (tx - 1)
                entries.append((ky, kx) if 0 <= ky < k and 0 <= kx < k else None)
            used = [i for i, e in enumerate(entries) if e is not None]
            if used:
                runs.append((ty, tx, used[0], used[-1] + 1, entries[used[0]:used[-1] + 1]))
    return runs


def _deconv_taps(weight: np.ndarray, padding: int) -> list[Tap]:
    """ConvTranspose2d(k, stride 2) weight (in, out, k, k) -> the taps of `deconv_runs`."""
    cin, cout, k, _ = weight.shape
    return [(ty, tx, lo * cout, hi * cout,
             np.ascontiguousarray(np.concatenate([np.zeros((cin, cout)) if e is None else weight[:, :, e[0], e[1]]
                                                  for e in run], axis=1)))
            for ty, tx, lo, hi, run in deconv_runs(k, padding)]


def _tap_gemms(a: np.ndarray, taps: list[Tap], bias: np.ndarray) -> np.ndarray:
    """A 3x3 zero-padded conv of (h, w, c) -> (h, w, columns): one product per tap over a shifted
    slice of one padded buffer (rows w + 2 wide, so each slice is contiguous; the two wrapped
    columns of each row are junk, dropped here)."""
    h, w, c = a.shape
    row, n = w + 2, h * (w + 2)
    padded = np.zeros((h + 3, w + 2, c))
    padded[1:h + 1, 1:w + 1] = a
    flat = padded.reshape(-1, c)
    acc = np.empty((n, bias.shape[0]))
    acc[:] = bias
    product = np.empty(acc.size)  # reused by every tap: fresh temporaries cost page faults
    for ty, tx, lo, hi, matrix in taps:
        offset = ty * row + tx
        acc[:, lo:hi] += np.matmul(flat[offset:offset + n], matrix, out=product[:n * (hi - lo)].reshape(n, hi - lo))
    return acc.reshape(h, row, -1)[:, :w]


def _interleave(acc: np.ndarray) -> np.ndarray:
    """(h, w, 4 c) output phases in PHASES order -> (2h, 2w, c)."""
    h, w, cols = acc.shape
    phases = acc.reshape(h, w, 4, cols // 4)
    out = np.empty((h, 2, w, 2, cols // 4))
    for i, (ay, ax) in enumerate(PHASES):
        out[:, ay, :, ax] = phases[:, :, i]
    return out.reshape(2 * h, 2 * w, -1)


class IntegerNet:
    """A fixed-point network from nic's exported tensors: `spec` lists its layers in order, each
    "deconv" (5x5, stride 2, padding 2), "conv3" (3x3, stride 1), "conv1" (1x1), "relu",
    "upsample" (nearest, 2x) or "igdn" (inverse GDN); conv and GDN layers read the tensors
    `{index}.weight/bias/bits` or `{index}.gamma/beta/bits`. `input_frac`: fractional bits of
    the input."""

    def __init__(self, spec: tuple[str, ...], tensors: dict[str, np.ndarray], input_frac: int = 0):
        self.layers: list[Layer] = []
        frac = input_frac
        for i, kind in enumerate(spec):
            if kind in ("relu", "upsample"):
                self.layers.append(Layer(kind))
                continue
            bits = tensors[f"{i}.bits"].astype(np.int64)
            if kind == "igdn":
                gamma = tensors[f"{i}.gamma"].astype(np.float64)
                self.layers.append(Layer(kind, matrix=np.ascontiguousarray(gamma.T),
                                         bias=tensors[f"{i}.beta"].astype(np.float64), scale=_scale(bits)))
                continue
            weight = tensors[f"{i}.weight"].astype(np.float64)
            bias = tensors[f"{i}.bias"].astype(np.float64)
            scale = _scale(bits + frac - FRAC_BITS)
            frac = FRAC_BITS
            if kind == "deconv":
                self.layers.append(Layer(kind, taps=_deconv_taps(weight, 2), bias=np.tile(bias, 4),
                                         scale=np.tile(scale, 4)))
            elif kind == "conv3":
                self.layers.append(Layer(kind, taps=_conv_taps(weight), bias=bias, scale=scale))
            elif kind == "conv1":
                self.layers.append(Layer(kind, matrix=np.ascontiguousarray(weight[:, :, 0, 0].T), bias=bias,
                                         scale=scale))
            else:
                raise ValueError(f"no integer layer {kind!r}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Integer input (h, w, channels) -> output with FRAC_BITS, as integer-valued float64."""
        a = np.clip(x.astype(np.float64), -_ACT, _ACT)
        for layer in self.layers:
            if layer.kind == "relu":
                a = np.maximum(a, 0)
                continue
            if layer.kind == "upsample":
                a = a.repeat(2, axis=0).repeat(2, axis=1)
                continue
            h, w, c = a.shape
            if layer.kind == "igdn":
                norm = np.abs(a).reshape(-1, c) @ layer.matrix
                norm += layer.bias
                norm = np.minimum(_rescale(norm, layer.scale), NORM_LIMIT)
                a = _rescale(a * norm.reshape(h, w, c), UNIT)
            elif layer.kind == "conv1":
                acc = a.reshape(-1, c) @ layer.matrix
                acc += layer.bias
                a = _rescale(acc, layer.scale).reshape(h, w, -1)
            else:
                a = _rescale(_tap_gemms(a, layer.taps, layer.bias), layer.scale)
                if layer.kind == "deconv":
                    a = _interleave(a)
            np.clip(a, -_ACT, _ACT, out=a)
        return a


def to_pixels(x: np.ndarray) -> np.ndarray:
    """Fixed-point output in [0, 1] (FRAC_BITS, float64) -> uint8 pixels, exactly as nic's."""
    return np.clip(_rescale(x * 255, UNIT), 0, 255).astype(np.uint8)
