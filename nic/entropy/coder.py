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

Reading a stream is nic_decode.coder's `decode_grouped` (numpy only, shared with the torch-free
decoder); here the symbols are put back in place with torch, whose scatter runs on every thread.
"""

from __future__ import annotations

import numpy as np
import torch

from nic.entropy.tables import TableSet
from nic.errors import NicError
from nic_decode.coder import (  # the decoder's constants and stream reading, shared with nic_decode
    CHUNK,
    LENGTH,
    MAX_ESCAPE_BITS,
    SIGN,
    TERMINATOR,
    TERMINATOR_MODEL,
    AnsCoder,
    Categorical,
    Uniform,
    decode_grouped,
    groups,
)


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


def _escape_ops(values: np.ndarray) -> list[tuple[np.ndarray, object]]:
    """The (symbols, model) steps that code each escaped distance exactly, in decode order."""
    ops: list[tuple[np.ndarray, object]] = []
    for v in values.tolist():
        sign, m = (0, -v) if v < 0 else (1, v + 1)  # m >= 1: distance past the table's edge
        nbits = m.bit_length() - 1
        ops.append((np.array([sign, nbits], dtype=np.int32), None))
        rest = m - (1 << nbits)
        for shift in range(0, nbits, CHUNK):
            width = min(CHUNK, nbits - shift)
            ops.append((np.array([(rest >> shift) & ((1 << width) - 1)], dtype=np.int32), Uniform(1 << width)))
    return ops


def encode(symbols: np.ndarray, index: np.ndarray, dists: Categoricals) -> bytes:
    """Code integer `symbols`, symbol i under table `index[i]`; decode with the same index."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    index = np.asarray(index, dtype=np.int64).ravel()
    if symbols.size and np.abs(symbols).max() >= 1 << MAX_ESCAPE_BITS:
        raise NicError("latent value out of the codable range (is the input image valid?)")
    t = dists.tables
    ops: list[tuple[np.ndarray, object]] = []  # in the order the decoder will read them
    order, runs = groups(index)
    for k, start, end in runs:
        v = symbols[order[start:end]] - t.offsets[k]
        n = int(t.lengths[k]) - 1
        escaped = (v < 0) | (v >= n)
        ops.append((np.where(escaped, n, v).astype(np.int32), dists[k]))
        if escaped.any():
            e = v[escaped]
            ops += _escape_ops(np.where(e < 0, e, e - n))
    coder = AnsCoder()
    coder.encode_reverse(TERMINATOR, TERMINATOR_MODEL)
    for data, model in reversed(ops):  # ANS is a stack: encode last what is decoded first
        if model is None:
            coder.encode_reverse(data[1:], LENGTH)
            coder.encode_reverse(data[:1], SIGN)
        else:
            coder.encode_reverse(data, model)
    return coder.get_compressed().tobytes()


def decode(data: bytes, index: np.ndarray, dists: Categoricals, terminated: bool = True) -> np.ndarray:
    """Inverse of `encode`: a stream that runs out before its last symbol, or has words left
    after it, raises FormatError (before any pixel is made from it). `terminated` is False
    only for the streams of version 1 files, which end without the terminator."""
    order, values = decode_grouped(data, index, dists.tables, dists.__getitem__, terminated)
    out = torch.empty(values.shape, dtype=torch.int64)  # torch scatters on every thread
    return out.index_copy_(0, torch.from_numpy(order), torch.from_numpy(values)).numpy()
