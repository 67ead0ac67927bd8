"""Variable rate in one model: per-channel gain vectors (Cui et al. 2021, asymmetric gains).

The latent y is multiplied by a gain before rounding and by an inverse gain after it, so a
larger gain means a finer quantizer. `levels` gain vectors are learned, each trained at its
own lambda; between them both the gains and lambda are interpolated geometrically, so every
quality from 1 to 100 is a trained operating point of the same weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nic.quality import QUALITIES, QUALITY_MAX, QUALITY_MIN


class GainTable(nn.Module):
    def __init__(self, levels: int, channels: int, lmbda_min: float, lmbda_max: float,
                 steps: tuple[float, float] | None = None):
        """Learned gains for lambdas lmbda_min..lmbda_max, or, with `steps` = (coarsest, finest),
        fixed quantizer steps (gain = 1 / step) for models not trained for rate."""
        super().__init__()
        self.levels = levels
        self.lmbda_min, self.lmbda_max = lmbda_min, lmbda_max
        if steps is None:
            # Rate theory: the best quantizer step shrinks like 1/sqrt(lambda); start there.
            log_l = torch.linspace(0, 1, levels) * torch.log(torch.tensor(lmbda_max / lmbda_min))
            init = 0.5 * (log_l - log_l.mean())
            self.log_gain = nn.Parameter(init[:, None].repeat(1, channels))
            self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, channels))
        else:
            log_step = torch.linspace(torch.log(torch.tensor(steps[0])), torch.log(torch.tensor(steps[1])), levels)
            # Not saved: the steps come from the config, so a model's rate range can be changed
            # (its density describes the unquantized latent, and holds for any step).
            self.register_buffer("log_gain", -log_step[:, None].repeat(1, channels), persistent=False)
            self.register_buffer("log_inv_gain", log_step[:, None].repeat(1, channels), persistent=False)

    def position(self, quality: float) -> float:
        """Map a quality in [1, 100] to a continuous level index in [0, levels - 1]."""
        q = min(max(float(quality), QUALITY_MIN), QUALITY_MAX)
        return (q - QUALITY_MIN) / (QUALITY_MAX - QUALITY_MIN) * (self.levels - 1)

    def lmbda(self, t: torch.Tensor) -> torch.Tensor:
        """The lambda that level position `t` is trained for (geometric interpolation)."""
        frac = t / (self.levels - 1)
        return self.lmbda_min * (self.lmbda_max / self.lmbda_min) ** frac

    def _interp(self, table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        lo = t.floor().long().clamp(0, self.levels - 2)
        frac = (t - lo).unsqueeze(1)
        log_g = table[lo] * (1 - frac) + table[lo + 1] * frac
        return log_g.exp()[:, :, None, None]

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain, shaped (B, C, 1, 1), for level positions `t` of shape (B,)."""
        return self._interp(self.log_gain, t), self._interp(self.log_inv_gain, t)

    @torch.no_grad()
    def load_resampled(self, log_gain: torch.Tensor, log_inv_gain: torch.Tensor,
                       lmbda_min: float, lmbda_max: float) -> None:
        """Take gain tables learned for another lambda range (or number of levels): each of our
        levels gets the table linearly interpolated (or extrapolated) in log lambda, so a model
        can be trained on to a wider rate range from where it stands."""
        src = torch.linspace(0, 1, log_gain.shape[0], dtype=torch.float64) * math.log(lmbda_max / lmbda_min)
        src += math.log(lmbda_min)
        dst = self.lmbda(torch.arange(self.levels, dtype=torch.float64)).log()
        lo = (torch.searchsorted(src, dst) - 1).clamp(0, len(src) - 2)
        frac = ((dst - src[lo]) / (src[lo + 1] - src[lo]))[:, None]
        for mine, theirs in ((self.log_gain, log_gain), (self.log_inv_gain, log_inv_gain)):
            theirs = theirs.double()
            mine.copy_(theirs[lo] * (1 - frac) + theirs[lo + 1] * frac)

    @torch.no_grad()
    def quality_gains(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain (float64, one row per quality 1..100), for export."""
        t = torch.tensor([self.position(q) for q in QUALITIES], dtype=torch.float64)
        table = GainTable._interp
        return (table(self, self.log_gain.double(), t)[:, :, 0, 0],
                table(self, self.log_inv_gain.double(), t)[:, :, 0, 0])
