"""A short fuzz run over the container and the decoders: every mutant of a valid file either
decodes or raises the project's FormatError / NicError, quickly. The long run with counts is
benchmarks/fuzz.py."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

import nic
from tests.fuzzing import mutate, outcome


@pytest.fixture(scope="module")
def seeds(photo) -> list[bytes]:
    small = np.ascontiguousarray(photo[:40, :56])
    rgba = np.dstack([small, np.full(small.shape[:2], 200, np.uint8)])
    return [nic.compress(small, quality=q) for q in (5, 90)] + [nic.compress(rgba, quality=50)]


def test_mutants_decode_or_fail_cleanly(seeds, monkeypatch):
    monkeypatch.setenv("NIC_MAX_PIXELS", str(1 << 20))  # bounds the work one header can ask for
    rng = np.random.default_rng(1234)
    outcomes = Counter()
    for i in range(300):
        data = mutate(seeds[i % len(seeds)], rng)
        start = time.perf_counter()
        outcomes[outcome(data)] += 1
        assert time.perf_counter() - start < 5, data[:64]
    assert outcomes["format error"] > 100
