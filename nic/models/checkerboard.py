"""Mean-scale hyperprior with a checkerboard context (He et al. 2021): the hyperprior's
transforms, with the two-pass checkerboard (`nic/entropy/checkerboard.py`) as y's entropy model.

The context networks are this model's attributes (`context`, `param_net`), so their weights
keep their names; the entropy model runs them. At coding time they run as exact integer
networks, so encoder and decoder pick the same table for every symbol on every machine.
"""

from __future__ import annotations

from nic.entropy.checkerboard import Checkerboard, context_networks
from nic.entropy.conditional import GaussianConditional
from nic.models.hyperprior import MeanScaleHyperprior
from nic.runtime.integer import FRAC_BITS


class CheckerboardHyperprior(MeanScaleHyperprior):
    integer_nets = {**MeanScaleHyperprior.integer_nets, "context": FRAC_BITS, "param_net": FRAC_BITS}
    decode_cost = 1.2  # decode time per pixel / hyperprior's (one thread, 768x512: 0.24 s vs 0.20-0.21 s)
    kind = "checkerboard"

    def __init__(self, N: int = 96, M: int = 144, levels: int = 8,
                 lmbda_min: float = 0.0015, lmbda_max: float = 0.12, N_a: int = 0):
        super().__init__(N, M, levels, lmbda_min, lmbda_max, N_a)
        self.context, self.param_net = context_networks(M)
        self.entropy = Checkerboard(GaussianConditional())
