"""Mean-scale hyperprior (Minnen et al. 2018, without the serial context model); `checkerboard.py`
swaps in a two-pass context model as its entropy model.

    x -g_a-> y -h_a-> z -round-> ẑ -h_s-> (mu, log sigma)
    y, (mu, log sigma) -entropy model (`nic/entropy/conditional.py`)-> ŷ -g_s-> x̂
    z -its entropy model (`nic/entropy/hyper.py`, under `z_density`)-> z's stream
The hyper path sees the ungained y, so one h_s serves every quality: the entropy model scales
mu and sigma by the quality's gain. At coding time h_s runs as an exact integer network
(`integer.py`). The model holds the networks; its entropy models (`self.entropy` for y,
`self.z_entropy` for z) hold the arithmetic, for training, refinement and coding alike.
"""

from __future__ import annotations

import torch
from torch import nn

from nic.entropy.conditional import GaussianConditional, LatentEntropy
from nic.entropy.factorized import FactorizedDensity
from nic.entropy.hyper import HyperLatentEntropy
from nic.entropy.quantize import noisy, ste_round
from nic.errors import FormatError
from nic.models.base import Analysis, LatentModel
from nic.models.gains import GainTable
from nic.quality import EFFORTS, FINE_FROM
from nic.runtime import refine
from nic.runtime.integer import FRAC_BITS, coding_nets, export_nets
from nic.runtime.layers import analysis_transform, conv, deconv, synthesis_transform


class MeanScaleHyperprior(LatentModel):
    downsampling = 64  # the hyper-latent z's stride: input sides are padded to a multiple of this
    latent_stride = 16
    integer_nets = {"h_s": 0, "g_s": FRAC_BITS}
    encoder_params = ("g_a.", "h_a.", "z_density.", "gain.")  # decoding reads only coding tensors
    max_effort = max(EFFORTS)
    fine_from = FINE_FROM
    kind = "hyperprior"  # in messages

    def __init__(self, N: int = 96, M: int = 144, levels: int = 8,
                 lmbda_min: float = 0.0015, lmbda_max: float = 0.12, N_a: int = 0):
        config = dict(N=N, M=M, levels=levels, lmbda_min=lmbda_min, lmbda_max=lmbda_max)
        if N_a:  # the encoder's own width (0: N); it costs encoding time only, never decoding
            config["N_a"] = N_a
        super().__init__(config)
        self.g_a = analysis_transform(N_a or N, M)
        self.g_s = synthesis_transform(N, M)
        self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N))
        self.h_s = nn.Sequential(
            deconv(N, M), nn.ReLU(), deconv(M, M * 3 // 2), nn.ReLU(), conv(M * 3 // 2, 2 * M, 3, 1)
        )
        self.z_density = FactorizedDensity(N)
        self.z_entropy = HyperLatentEntropy()
        self.gain = GainTable(levels, M, lmbda_min, lmbda_max)
        # y's entropy model, given h_s's (mu, log sigma). A context model's networks are the
        # model's attributes, named by `entropy.nets`, so the weights keep their names.
        self.entropy: LatentEntropy = GaussianConditional()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: noisy latents for the rate, straight-through rounding for g_s."""
        y = self.g_a(x)
        z = self.h_a(y)
        z_bits = self.z_entropy.bits(self.z_density, noisy(z))
        gain, inv_gain = self.gain(t)
        nets = {name: getattr(self, name) for name in self.entropy.nets}
        y_bits, y_hat = self.entropy.likelihoods(nets, y, self.h_s(ste_round(z)), gain, inv_gain)
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "bits": y_bits.sum((1, 2, 3)) + z_bits.sum((1, 2, 3))}

    # ---- coding: everything below runs on exported weights (see `export_coding`) ----

    @torch.no_grad()
    def export_coding(self) -> dict[str, torch.Tensor]:
        """y's entropy model (per-quality fixed-point gains, tables), z's tables and the integer
        networks, for the weights file."""
        out = self.entropy.export(*self.gain.quality_gains())
        out |= self.z_entropy.export(self.z_density)
        return out | export_nets(self, self.integer_nets)

    def load_coding(self, tensors: dict[str, torch.Tensor]) -> None:
        self.coding = coding_nets(self, self.integer_nets, tensors)
        self.entropy.load(tensors)
        self.z_entropy.load(tensors)

    def decode_z(self, stream: bytes, height: int, width: int, terminated: bool) -> torch.Tensor:
        """The hyper-latent's symbols of a padded height x width image."""
        z_shape = (1, self.config["N"], height // self.downsampling, width // self.downsampling)
        return self.z_entropy.decode(stream, z_shape, terminated)

    def quality_gains(self, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The gain and inverse gain (1, M, 1, 1) that coding uses at `quality`, as floats."""
        return self.entropy.quality_gains(quality)

    def quality_lmbda(self, quality: int) -> float:
        """The lambda that `quality`'s gains were trained for."""
        return float(self.gain.lmbda(torch.tensor(self.gain.position(quality))))

    def code(self, analysis: Analysis, quality: int, effort: int = 0, progress: bool = False) -> list[bytes]:
        """Streams for one quality; above effort 0, of y and z refined against the image."""
        if effort == 0:
            return self.compress_latent(analysis.latent, quality)
        schedule = refine.SCHEDULES[effort]
        y, z_sym = refine.refine(self, analysis.image, analysis.latent, quality, schedule, progress=progress)
        return self.compress_latent(y, quality, z_sym)

    @torch.inference_mode()
    def compress_latent(self, y: torch.Tensor, quality: int, z_sym: torch.Tensor | None = None) -> list[bytes]:
        """The latent y = g_a(x) of a padded image -> [z stream, y's streams]; z = round(h_a(y))
        unless the symbols are given (refinement chooses them)."""
        if z_sym is None:
            z_sym = torch.round(self.h_a(y)).long()
        hyper = self.coding["h_s"](z_sym)
        return [self.z_entropy.encode(z_sym), *self.entropy.encode(self.coding, y, hyper, quality)]

    @torch.inference_mode()
    def decompress_latent(self, streams: list[bytes], height: int, width: int, quality: int,
                          terminated: bool = True) -> torch.Tensor:
        """[z stream, y's streams] of a padded H x W image -> ŷ in fixed point, the input of g_s."""
        expected = 1 + self.entropy.streams
        if len(streams) != expected:
            raise FormatError(f"{self.kind} model expects {expected} latent sections, found {len(streams)}")
        hyper = self.coding["h_s"](self.decode_z(streams[0], height, width, terminated))
        return self.entropy.decode(self.coding, streams[1:], hyper, quality, terminated)
