"""The bridge to constriction: symbols + per-symbol table indices <-> an ANS byte stream.

Symbols are grouped by table and each group is coded in one vectorized call. A symbol outside
its table's range is coded as the escape symbol followed by its exact value (sign, bit length,
then the bits, all with uniform models), so nothing is ever clipped.

An ANS decoder never runs dry by itself: once its words are used up it keeps returning each
table's first symbol. So a stream must prove that it holds every symbol. Streams end (since
.nic version 2) with a 32-bit terminator, the first thing encoded and so the last decoded; the
decoder stops at the first group that finds the coder empty, then requires the exact
terminator and an empty coder after it. Version 1 streams have no terminator; for them the
coder may not be empty before the stream's final symbol (an encoder leaves it empty earlier
only when every remaining symbol is the first of its table, which has probability 2**-24),
and that symbol may not be one of a table's far-tail bins (count below 16 of 2**24), where a
stream that lost words comes to rest: a real file ends there with a probability under 1.3e-4
(the largest mass such bins have in any shipped table).
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

from nic.entropy.tables import TableSet
from nic.errors import FormatError, NicError

# constriction is a compiled extension whose submodules are attributes, not importable modules.
AnsCoder = constriction.stream.stack.AnsCoder
Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform

_SIGN, _LENGTH = Uniform(2), Uniform(64)
_CHUNK = 16  # escape value bits are coded 16 at a time
_MAX_ESCAPE_BITS = 24  # no model produces a latent beyond 2**24; the encoder refuses one
_V1_TAIL_COUNT = 16  # a version 1 stream may not end on a bin of fewer counts (escape excepted)
TERMINATOR = np.array([0x4E49, 0x4332], dtype=np.int32)  # "NIC2", after a stream's last symbol
_TERMINATOR_MODEL = Uniform(1 << 16)


class Categoricals:
    """The constriction Categorical of each table of a TableSet, built on first use from its
    integer counts (a factorized model holds one table per quality and channel; a file uses
    one quality's)."""

    def __init__(self, tables: TableSet):
        self.tables = tables
        self._cache: dict[int, Categorical] = {}

    def __getitem__(self, k: int) -> Categorical:
        if k not in self._cache:
            self._cache[k] = Categorical(self.tables.pmf(k), perfect=False)
        return self._cache[k]


def _groups(index: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The coding order: positions sorted by table, ascending positions within a table (one
    stable sort, a radix sort on small integer types), and (table, start, end) of each used
    table's run in it, by ascending table."""
    if not index.size:
        return np.empty(0, dtype=np.int64), []
    small = np.uint8 if index.max() < 1 << 8 else np.uint16 if index.max() < 1 << 16 else np.int64
    order = np.argsort(index.astype(small), kind="stable")
    ends = np.cumsum(counts := np.bincount(index)).tolist()
    return order, [(k, ends[k] - int(counts[k]), ends[k]) for k in np.flatnonzero(counts).tolist()]


def _escape_ops(values: np.ndarray) -> list[tuple[np.ndarray, object]]:
    """The (symbols, model) steps that code each escaped distance exactly, in decode order."""
    ops: list[tuple[np.ndarray, object]] = []
    for v in values.tolist():
        sign, m = (0, -v) if v < 0 else (1, v + 1)  # m >= 1: distance past the table's edge
        nbits = m.bit_length() - 1
        ops.append((np.array([sign, nbits], dtype=np.int32), None))
        rest = m - (1 << nbits)
        for shift in range(0, nbits, _CHUNK):
            width = min(_CHUNK, nbits - shift)
            ops.append((np.array([(rest >> shift) & ((1 << width) - 1)], dtype=np.int32), Uniform(1 << width)))
    return ops


def encode(symbols: np.ndarray, index: np.ndarray, dists: Categoricals) -> bytes:
    """Code integer `symbols`, symbol i under table `index[i]`; decode with the same index."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    index = np.asarray(index, dtype=np.int64).ravel()
    if symbols.size and np.abs(symbols).max() >= 1 << _MAX_ESCAPE_BITS:
        raise NicError("latent value out of the codable range (is the input image valid?)")
    t = dists.tables
    ops: list[tuple[np.ndarray, object]] = []  # in the order the decoder will read them
    order, groups = _groups(index)
    for k, start, end in groups:
        v = symbols[order[start:end]] - t.offsets[k]
        n = int(t.lengths[k]) - 1
        escaped = (v < 0) | (v >= n)
        ops.append((np.where(escaped, n, v).astype(np.int32), dists[k]))
        if escaped.any():
            e = v[escaped]
            ops += _escape_ops(np.where(e < 0, e, e - n))
    coder = AnsCoder()
    coder.encode_reverse(TERMINATOR, _TERMINATOR_MODEL)
    for data, model in reversed(ops):  # ANS is a stack: encode last what is decoded first
        if model is None:
            coder.encode_reverse(data[1:], _LENGTH)
            coder.encode_reverse(data[:1], _SIGN)
        else:
            coder.encode_reverse(data, model)
    return coder.get_compressed().tobytes()


def _require_data(coder: AnsCoder) -> None:
    if coder.is_empty():
        raise FormatError("entropy-coded section ends before its last symbol (truncated or damaged)")


def decode(data: bytes, index: np.ndarray, dists: Categoricals, terminated: bool = True) -> np.ndarray:
    """Inverse of `encode`: a stream that runs out before its last symbol, or has words left
    after it, raises FormatError (before any pixel is made from it). `terminated` is False
    only for the streams of version 1 files, which end without the terminator."""
    if len(data) % 4:
        raise FormatError("entropy-coded section has a length that is not a multiple of 4")
    index = np.asarray(index, dtype=np.int64).ravel()
    t = dists.tables
    order, groups = _groups(index)
    values = np.empty(index.shape, dtype=np.int64)  # in coding order
    try:
        coder = AnsCoder(np.frombuffer(data, dtype=np.uint32).copy())
        for g, (k, start, end) in enumerate(groups):
            n = int(t.lengths[k]) - 1
            _require_data(coder)
            if terminated or g < len(groups) - 1:
                v = coder.decode(dists[k], end - start)  # int32: escaped values are < 2**25
            else:  # version 1: the stream's final symbol must still find data, and not rest in a tail
                v = coder.decode(dists[k], end - start - 1)
                _require_data(coder)
                v = np.append(v, coder.decode(dists[k], 1))
                if v[-1] != n and t.counts[t.starts[k] + v[-1]] < _V1_TAIL_COUNT:
                    raise FormatError("entropy-coded section ends before its last symbol (truncated or damaged)")
            for j in np.nonzero(v == n)[0].tolist():
                sign = int(coder.decode(_SIGN, 1)[0])
                nbits = int(coder.decode(_LENGTH, 1)[0])
                if nbits > _MAX_ESCAPE_BITS:
                    raise FormatError("entropy-coded section holds an impossible escape value")
                m = 1 << nbits
                for shift in range(0, nbits, _CHUNK):
                    width = min(_CHUNK, nbits - shift)
                    m += int(coder.decode(Uniform(1 << width), 1)[0]) << shift
                v[j] = n + m - 1 if sign else -m
            np.add(v, t.offsets[k], out=values[start:end], dtype=np.int64)
        if terminated:
            _require_data(coder)
            if not np.array_equal(coder.decode(_TERMINATOR_MODEL, 2), TERMINATOR):
                raise FormatError("entropy-coded section ends before its last symbol (truncated or damaged)")
        leftover = not coder.is_empty()
    except FormatError:
        raise
    except Exception as e:  # constriction reports a broken stream in several ways
        raise FormatError(f"entropy-coded section is corrupt ({e})") from None
    if leftover:
        raise FormatError("entropy-coded section has data left after the last symbol")
    out = torch.empty(index.shape, dtype=torch.int64)  # torch scatters on every thread
    return out.index_copy_(0, torch.from_numpy(order), torch.from_numpy(values)).numpy()
