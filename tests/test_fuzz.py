"""A short fuzz run over the container and the decoders: every mutant of a valid file either
decodes or raises the project's FormatError / NicError, quickly, and a mutant whose section
was cut or emptied never decodes. The torch-free nic_decode meets the same mutants and must
give nic --exact's outcome, and its pixels when they decode. The long run with counts is benchmarks/fuzz.py."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import torch

import nic
from tests.fuzzing import decode_with, mutate, outcome, with_metadata

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def seeds(photo) -> list[bytes]:
    small = np.ascontiguousarray(photo[:40, :56])
    rgba = np.dstack([small, np.full(small.shape[:2], 200, np.uint8)])
    return [nic.compress(small, quality=q) for q in (5, 90)] + [nic.compress(rgba, quality=50),
                                                                nic.compress(with_metadata(small), quality=50)]


@pytest.fixture()
def one_thread():
    """One torch thread, as the batch workers use: timings then hold on a crowded machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_mutants_decode_or_fail_cleanly(seeds, monkeypatch, one_thread):
    monkeypatch.setenv("NIC_MAX_PIXELS", str(1 << 20))  # bounds the work one header can ask for
    rng = np.random.default_rng(1234)
    outcomes = Counter()
    for i in range(300):
        mutant = mutate(seeds[i % len(seeds)], rng)
        start = time.perf_counter()
        result = outcome(mutant.data)
        outcomes[result] += 1
        assert time.perf_counter() - start < 5, mutant.data[:64]
        assert not (mutant.must_fail and result == "decoded"), f"a {mutant.kind} decoded"
        outcomes[mutant.kind] += 1
    assert outcomes["format error"] > 100
    assert outcomes["cut section"] + outcomes["emptied section"] > 40


def test_nic_decode_agrees_with_nic_on_mutants(seeds, monkeypatch, one_thread):
    monkeypatch.setenv("NIC_MAX_PIXELS", str(1 << 20))
    rng = np.random.default_rng(4321)
    outcomes = Counter()
    for i in range(800):
        mutant = mutate(seeds[i % len(seeds)], rng)
        start = time.perf_counter()
        result = outcome(mutant.data, "nic-decode")
        assert time.perf_counter() - start < 5, mutant.data[:64]
        assert result == outcome(mutant.data, "nic-exact"), f"{mutant.kind}: {mutant.data[:64].hex()}"
        if result == "decoded":
            assert not mutant.must_fail, f"a {mutant.kind} decoded"
            assert np.array_equal(decode_with("nic-decode", mutant.data).reshape(-1),
                                  decode_with("nic-exact", mutant.data).reshape(-1))
        outcomes[result] += 1
    assert outcomes["format error"] > 300 and outcomes["decoded"] >= 5, outcomes
