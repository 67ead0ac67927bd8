"""The hyper-latent z's entropy model: one learned density per channel (`factorized.py`) and
no side information.

Like `conditional.GaussianConditional` for y, one object gives the training bits, the rate
that refinement optimizes and the exact coding, so the three cannot drift apart. The density
is passed in (the model's own in training, its float twin in refinement), as a context
model's networks are; coding reads the integer tables tabulated from it at export.
"""

from __future__ import annotations

import torch

from nic.entropy import coder
from nic.entropy.factorized import FactorizedDensity
from nic.entropy.tables import TableSet, density_tables

PREFIX = "coding.z"  # the weights file's names of z's tables


class HyperLatentEntropy:
    def __init__(self) -> None:
        self.tables: coder.Categoricals | None = None  # set by `load`

    # ---- float: training and refinement ----

    @staticmethod
    def bits(density: FactorizedDensity, z: torch.Tensor) -> torch.Tensor:
        """Bits of every value of z (noisy in training, soft-rounded in refinement): its
        channel's mass on the unit bin around it."""
        return -torch.log2(density.bin_probability(z - 0.5, z + 0.5))

    # ---- exact coding ----

    @staticmethod
    @torch.no_grad()
    def export(density: FactorizedDensity) -> dict[str, torch.Tensor]:
        """The integer tables, one per channel."""
        return density_tables(density).to_tensors(PREFIX)

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tables = coder.Categoricals(TableSet.from_tensors(tensors, PREFIX))

    @staticmethod
    def _index(shape: tuple[int, ...]) -> torch.Tensor:
        """Each symbol's table: its channel's."""
        return torch.arange(shape[1]).view(1, -1, 1, 1).expand(shape)

    def encode(self, symbols: torch.Tensor) -> bytes:
        """z's integer symbols (1, N, h, w) -> its stream."""
        return coder.encode(symbols.numpy(), self._index(symbols.shape).numpy(), self.tables)

    def decode(self, stream: bytes, shape: tuple[int, int, int, int], terminated: bool) -> torch.Tensor:
        """`encode`'s stream -> the symbols, in `shape`."""
        return torch.from_numpy(coder.decode(stream, self._index(shape).numpy(), self.tables, terminated)).view(shape)
