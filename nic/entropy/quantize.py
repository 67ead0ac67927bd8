"""The two training surrogates for rounding (Minnen & Singh 2020, 'mixed' quantization)."""

from __future__ import annotations

import torch


def noisy(x: torch.Tensor) -> torch.Tensor:
    """Additive uniform noise: a differentiable stand-in for rounding in the rate term."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient: what the decoder really sees."""
    return x + (torch.round(x) - x).detach()
