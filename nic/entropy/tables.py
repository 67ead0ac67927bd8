"""Integer probability tables: built once at export, stored with the weights, never rebuilt.

A `TableSet` holds many discrete distributions, each over symbols lo..lo+n-1 plus one escape
symbol (index n) for values outside that range. Counts are integers summing to 2**PRECISION,
every symbol at least 1, so any value can be coded and encoder and decoder see the same model.
The quantization is nic_decode.tables' (the torch-free decoder builds its Laplace tables with it).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from nic.entropy.factorized import FactorizedDensity
from nic.entropy.gaussian import SCALE_TABLE
from nic_decode.tables import PRECISION, TAIL_MASS, quantize_pmf  # shared with the decoder

TAIL_SIGMAS = 4.9  # a Gaussian puts TAIL_MASS beyond +-4.9 sigma


@dataclass
class TableSet:
    """Distributions k = 0..K-1: counts[starts[k] : starts[k] + lengths[k]] cover symbols
    offsets[k] .. offsets[k] + lengths[k] - 2; the last count of each is the escape."""

    counts: np.ndarray  # int64, flat
    starts: np.ndarray  # int64 (K,)
    lengths: np.ndarray  # int64 (K,)
    offsets: np.ndarray  # int64 (K,)

    def pmf(self, k: int) -> np.ndarray:
        """Table k as float64 probabilities (exact: counts / 2**PRECISION)."""
        s = self.starts[k]
        return self.counts[s:s + self.lengths[k]].astype(np.float64) / 2.0**PRECISION

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.counts": torch.from_numpy(self.counts.astype(np.int32)),
                f"{prefix}.lengths": torch.from_numpy(self.lengths.astype(np.int32)),
                f"{prefix}.offsets": torch.from_numpy(self.offsets.astype(np.int32))}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> TableSet:
        lengths = tensors[f"{prefix}.lengths"].numpy().astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(tensors[f"{prefix}.counts"].numpy().astype(np.int64), starts, lengths,
                   tensors[f"{prefix}.offsets"].numpy().astype(np.int64))

    @classmethod
    def from_pmfs(cls, pmfs: list[np.ndarray], offsets: list[int]) -> TableSet:
        """Quantize float pmfs (escape mass last) to integer counts summing to 2**PRECISION."""
        quantized = [quantize_pmf(p) for p in pmfs]
        lengths = np.array([len(q) for q in quantized], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(np.concatenate(quantized), starts, lengths, np.asarray(offsets, dtype=np.int64))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * torch.erfc(torch.from_numpy(-x / math.sqrt(2))).numpy()


def gaussian_tables() -> TableSet:
    """One table per entry of SCALE_TABLE: zero-mean Gaussians on unit bins around 0."""
    pmfs, offsets = [], []
    for s in SCALE_TABLE.tolist():
        r = max(1, math.ceil(TAIL_SIGMAS * s))
        v = np.arange(-r, r + 1, dtype=np.float64)
        p = _normal_cdf((v + 0.5) / s) - _normal_cdf((v - 0.5) / s)
        pmfs.append(np.append(p, max(0.0, 1.0 - p.sum())))
        offsets.append(-r)
    return TableSet.from_pmfs(pmfs, offsets)


@torch.no_grad()
def density_quantiles(density: FactorizedDensity, mass: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, the points below which `mass` and above which `mass` of the density lie."""
    c = density.matrices[0].shape[0]
    target = math.log(mass / (1 - mass))  # logit of the CDF at the lower quantile
    out = []
    for goal in (target, -target):
        lo = torch.full((c, 1, 1), -1e5, dtype=density.matrices[0].dtype)
        hi = -lo
        for _ in range(80):  # bisection: logits_cdf is monotone in x
            mid = (lo + hi) / 2
            below = density.logits_cdf(mid) < goal
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        out.append(((lo + hi) / 2).flatten())
    return out[0], out[1]


@torch.no_grad()
def density_tables(density: FactorizedDensity, gains: torch.Tensor | None = None) -> TableSet:
    """Tables of a factorized density: one per channel, or one per (row of gains, channel).

    With gains (Q, C), symbol k of channel c at row q has the density's mass on
    [(k - 1/2) / gain, (k + 1/2) / gain]: the density describes the ungained latent.
    """
    d64 = copy.deepcopy(density).double()
    c = d64.matrices[0].shape[0]
    gains = torch.ones(1, c, dtype=torch.float64) if gains is None else gains.double()
    qlo, qhi = (q.double() for q in density_quantiles(d64, TAIL_MASS / 2))
    pmfs, offsets = [], []
    for g in gains:
        lo, hi = torch.floor(qlo * g).long(), torch.ceil(qhi * g).long()
        width = int((hi - lo).max()) + 2
        k = lo[:, None] + torch.arange(width)[None, :]  # (C, width) bin centres, padded right
        edges = (k.double() - 0.5) / g[:, None]
        cdf = torch.sigmoid(d64.logits_cdf(edges[:, None, :]))[:, 0]
        for ch in range(c):
            n = int(hi[ch] - lo[ch]) + 1
            p = (cdf[ch, 1:n + 1] - cdf[ch, :n]).clamp_min(0).numpy()
            pmfs.append(np.append(p, max(0.0, 1.0 - p.sum())))
            offsets.append(int(lo[ch]))
    return TableSet.from_pmfs(pmfs, offsets)
