"""Entropy decoding with constriction: nic's decoder too (nic/entropy/coder.py adds the encoder).

A stream codes symbols grouped by table (ascending), raster order within a group, each table
a constriction `Categorical` built from integer counts (of 2**24) with `perfect=False`. A
symbol outside its table is the escape followed by sign, bit length and bits (uniform). From
version 2 a stream ends with a terminator; a stream that runs dry before its last symbol, or
has words after it, is a FormatError before any pixel is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import constriction
import numpy as np

from nic_decode.errors import FormatError
from nic_decode.tables import PRECISION

AnsCoder = constriction.stream.stack.AnsCoder
Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform

SIGN, LENGTH = Uniform(2), Uniform(64)
CHUNK = 16  # escape value bits are coded 16 at a time
MAX_ESCAPE_BITS = 24  # no model produces a latent beyond 2**24; the encoder refuses one
V1_TAIL_COUNT = 16  # a version 1 stream may not end on a bin of fewer counts (escape excepted)
TERMINATOR = np.array([0x4E49, 0x4332], dtype=np.int32)  # "NIC2", after a stream's last symbol
TERMINATOR_MODEL = Uniform(1 << 16)
_SHORT = "entropy-coded section ends before its last symbol (truncated or damaged)"


class Counts(Protocol):
    """Integer tables as nic's TableSet and this module's Tables hold them."""

    counts: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray


@dataclass
class Tables:
    """Integer tables k: counts[starts[k]:starts[k] + lengths[k]] for symbols offsets[k]..,
    the last count of each the escape; constriction models built on first use."""

    counts: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    starts: np.ndarray = field(init=False)
    _models: dict[int, object] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    @classmethod
    def from_coding(cls, coding: dict[str, np.ndarray], prefix: str) -> Tables:
        return cls(coding[f"{prefix}.counts"], coding[f"{prefix}.lengths"], coding[f"{prefix}.offsets"])

    def pmf(self, k: int) -> np.ndarray:
        s = self.starts[k]
        return self.counts[s:s + self.lengths[k]].astype(np.float64) / 2.0**PRECISION

    def model(self, k: int) -> object:
        if k not in self._models:
            self._models[k] = Categorical(self.pmf(k), perfect=False)
        return self._models[k]


def groups(index: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The coding order: positions sorted by table, ascending positions within a table (one
    stable sort, a radix sort on small integer types), and (table, start, end) of each used
    table's run in it, by ascending table."""
    if not index.size:
        return np.empty(0, dtype=np.int64), []
    small = np.uint8 if index.max() < 1 << 8 else np.uint16 if index.max() < 1 << 16 else np.int64
    order = np.argsort(index.astype(small), kind="stable")
    ends = np.cumsum(counts := np.bincount(index)).tolist()
    return order, [(k, ends[k] - int(counts[k]), ends[k]) for k in np.flatnonzero(counts).tolist()]


def _require_data(coder: AnsCoder) -> None:
    if coder.is_empty():
        raise FormatError(_SHORT)


def _escaped(coder: AnsCoder, n: int) -> int:
    """The value that an escape in a table of n symbols stands for: sign, bit length, bits."""
    sign = int(coder.decode(SIGN, 1)[0])
    nbits = int(coder.decode(LENGTH, 1)[0])
    if nbits > MAX_ESCAPE_BITS:
        raise FormatError("entropy-coded section holds an impossible escape value")
    m = 1 << nbits
    for shift in range(0, nbits, CHUNK):
        width = min(CHUNK, nbits - shift)
        m += int(coder.decode(Uniform(1 << width), 1)[0]) << shift
    return n + m - 1 if sign else -m


def decode_grouped(data: bytes, index: np.ndarray, tables: Counts, model: Callable[[int], Categorical],
                   terminated: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The int64 symbols of one stream in coding order, and `order`, the position of each: the
    caller scatters them (`out[order] = values`) with its own array library. Symbol i is
    under table index[i], whose constriction model is `model(k)`. A stream that runs out before
    its last symbol, or has words left after it, raises FormatError (before any pixel is made
    from it); `terminated` is False only for version 1 streams, which end without the terminator."""
    if len(data) % 4:
        raise FormatError("entropy-coded section has a length that is not a multiple of 4")
    index = np.asarray(index, dtype=np.int64).ravel()
    order, runs = groups(index)
    values = np.empty(index.shape, dtype=np.int64)  # in coding order
    try:
        coder = AnsCoder(np.frombuffer(data, dtype=np.uint32).copy())
        for g, (k, start, end) in enumerate(runs):
            n = int(tables.lengths[k]) - 1
            _require_data(coder)
            dist = model(k)
            if terminated or g < len(runs) - 1:
                v = coder.decode(dist, end - start)  # int32: escaped values are < 2**25
            else:  # version 1: the stream's final symbol must still find data, and not rest in a tail
                v = coder.decode(dist, end - start - 1)
                _require_data(coder)
                v = np.append(v, coder.decode(dist, 1))
                if v[-1] != n and tables.counts[tables.starts[k] + v[-1]] < V1_TAIL_COUNT:
                    raise FormatError(_SHORT)
            for j in np.nonzero(v == n)[0].tolist():
                v[j] = _escaped(coder, n)
            np.add(v, tables.offsets[k], out=values[start:end], dtype=np.int64)
        if terminated:
            _require_data(coder)
            if not np.array_equal(coder.decode(TERMINATOR_MODEL, 2), TERMINATOR):
                raise FormatError(_SHORT)
        leftover = not coder.is_empty()
    except FormatError:
        raise
    except Exception as e:  # constriction reports a broken stream in several ways
        raise FormatError(f"entropy-coded section is corrupt ({e})") from None
    if leftover:
        raise FormatError("entropy-coded section has data left after the last symbol")
    return order, values


def decode(data: bytes, index: np.ndarray, tables: Tables, terminated: bool = True) -> np.ndarray:
    """The int64 symbols of one stream, symbol i under table index[i], in index's shape."""
    shape = np.shape(index)
    order, values = decode_grouped(data, index, tables, tables.model, terminated)
    out = np.empty(values.shape, dtype=np.int64)
    out[order] = values
    return out.reshape(shape)
