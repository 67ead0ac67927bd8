"""Integer tables and the constriction bridge: exact round trips, escapes, corrupt streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nic.entropy import coder
from nic.entropy.factorized import FactorizedDensity
from nic.entropy.gaussian import SCALE_TABLE
from nic.entropy.tables import PRECISION, TableSet, density_tables, gaussian_tables, quantize_pmf
from nic.errors import FormatError

pytestmark = pytest.mark.fast


def test_quantized_pmf_is_exact_and_keeps_every_symbol():
    pmf = np.array([0.5, 0.25, 1e-12, 0.25 - 1e-12, 0.0])
    counts = quantize_pmf(pmf)
    assert counts.sum() == 1 << PRECISION
    assert counts.min() >= 1
    assert counts[0] == pytest.approx((1 << PRECISION) / 2, rel=1e-5)


@pytest.fixture(scope="module")
def gaussian() -> coder.Categoricals:
    return coder.Categoricals(gaussian_tables())


def test_gaussian_round_trip_with_escapes(gaussian):
    rng = np.random.default_rng(1)
    index = rng.integers(0, len(SCALE_TABLE), 20000)
    symbols = np.round(rng.normal(0, SCALE_TABLE.numpy()[index])).astype(np.int64)
    # Values far outside every table's range must still come back exactly.
    symbols[:6] = [10**6, -(10**6), 2**23, -(2**23), 4000, -4000]
    index[:6] = [0, 0, 5, 63, 63, 0]
    data = coder.encode(symbols, index, gaussian)
    assert np.array_equal(coder.decode(data, index, gaussian), symbols)


def test_rate_is_close_to_the_entropy(gaussian):
    rng = np.random.default_rng(2)
    index = np.full(50000, 30)
    s = float(SCALE_TABLE[30])
    symbols = np.round(rng.normal(0, s, index.shape)).astype(np.int64)
    bits = len(coder.encode(symbols, index, gaussian)) * 8 / len(symbols)
    p = gaussian.tables.pmf(30)
    values, counts = np.unique(symbols - gaussian.tables.offsets[30], return_counts=True)
    entropy = -np.sum(counts * np.log2(p[values])) / len(symbols)
    assert bits == pytest.approx(entropy, rel=0.01)


def test_corrupt_streams_raise_format_error(gaussian):
    index = np.zeros(100, dtype=np.int64)
    data = coder.encode(np.arange(100) % 3, index, gaussian)
    with pytest.raises(FormatError):
        coder.decode(data[:-1], index, gaussian)  # not a whole number of words
    with pytest.raises(FormatError):
        coder.decode(data + b"\x01\x00\x00\x00", index, gaussian)  # data left over
    with pytest.raises(FormatError):
        coder.decode(data, np.zeros(10, dtype=np.int64), gaussian)  # fewer symbols than coded


def test_density_tables_follow_the_density():
    torch.manual_seed(0)
    density = FactorizedDensity(2)
    tables = density_tables(density, torch.tensor([[1.0, 1.0], [4.0, 4.0]]))
    assert len(tables.lengths) == 4  # one table per (quality, channel)
    # A 4x finer quantizer spreads the same density over about 4x more symbols.
    assert tables.lengths[2] > 3 * tables.lengths[0]
    restored = TableSet.from_tensors(tables.to_tensors("t"), "t")
    assert np.array_equal(restored.counts, tables.counts)


def test_a_stream_that_runs_out_is_refused(gaussian):
    """An ANS decoder returns symbols from an empty coder forever: the stream's end must be proven."""
    rng = np.random.default_rng(3)
    index = rng.integers(0, len(SCALE_TABLE), 3000)
    symbols = np.round(rng.normal(0, SCALE_TABLE.numpy()[index])).astype(np.int64)
    data = coder.encode(symbols, index, gaussian)
    assert np.array_equal(coder.decode(data, index, gaussian), symbols)
    for terminated in (False, True):  # version 1 streams, and later ones
        with pytest.raises(FormatError, match="ends before its last symbol"):
            coder.decode(b"", index, gaussian, terminated)  # an emptied section
    for words in range(1, len(data) // 4):
        for cut in (data[:-4 * words], data[4 * words:]):  # words missing at either end
            with pytest.raises(FormatError):
                coder.decode(cut, index, gaussian)
