"""Mean-scale hyperprior (Minnen et al. 2018, without the serial context model); `checkerboard.py`
adds a two-pass context model on top of it.

    x -g_a-> y -h_a-> z -round-> ẑ -h_s-> (mu, log sigma)
    y·gain -round around mu-> ŷ_g  (Gaussian conditional, one of 64 integer tables per symbol)
    ŷ_g·inv_gain -g_s-> x̂
The hyper path sees the ungained y, so one h_s serves every quality: mu and sigma are simply
scaled by the gain. At coding time h_s runs as an exact integer network (`integer.py`).
"""

from __future__ import annotations

import torch
from torch import nn

from nic.entropy import coder
from nic.entropy.factorized import FactorizedDensity
from nic.entropy.gaussian import SCALE_MAX, SCALE_MIN, SCALE_TABLE, gaussian_bin_probability
from nic.entropy.tables import TableSet, density_tables, gaussian_tables
from nic.errors import FormatError
from nic.models.base import Analysis, LatentModel
from nic.models.gains import GainTable
from nic.models.quantize import noisy, ste_round
from nic.quality import EFFORTS, FINE_FROM
from nic.runtime import refine
from nic.runtime.integer import FRAC_BITS, coding_nets, export_nets, round_shift
from nic.runtime.layers import analysis_transform, conv, deconv, synthesis_transform

MEAN_BITS = 8  # fixed-point fraction of the gained mean used to centre each symbol


class MeanScaleHyperprior(LatentModel):
    downsampling = 64  # the hyper-latent z's stride: input sides are padded to a multiple of this
    latent_stride = 16
    integer_nets = {"h_s": 0, "g_s": FRAC_BITS}
    encoder_params = ("g_a.", "h_a.", "z_density.", "gain.")  # decoding reads only coding tensors
    context_nets: tuple[str, ...] = ()  # networks that read decoded symbols (see checkerboard.py)
    max_effort = max(EFFORTS)
    fine_from = FINE_FROM

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
        self.gain = GainTable(levels, M, lmbda_min, lmbda_max)

    def entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma) of the ungained y, from the decoded hyper-latent."""
        mu, log_sigma = self.h_s(z_hat).chunk(2, dim=1)
        return mu, log_sigma

    def training_parameters(self, y: torch.Tensor, z_hat: torch.Tensor, gain: torch.Tensor,
                            inv_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma) of the ungained y in the training pass; a context model also reads
        the quantized latent itself."""
        return self.entropy_parameters(z_hat)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: noisy latents for the rate, straight-through rounding for g_s."""
        y = self.g_a(x)
        z = self.h_a(y)
        z_tilde = noisy(z)
        z_bits = -torch.log2(self.z_density.bin_probability(z_tilde - 0.5, z_tilde + 0.5))
        gain, inv_gain = self.gain(t)
        mu, log_sigma = self.training_parameters(y, ste_round(z), gain, inv_gain)
        y_g, mu_g = y * gain, mu * gain
        sigma_g = log_sigma.exp().clamp(SCALE_MIN, SCALE_MAX) * gain
        y_bits = -torch.log2(gaussian_bin_probability(noisy(y_g) - mu_g, sigma_g))
        mu_g = mu_g.detach()  # the rounding's gradient to mu cancels exactly: skip computing it
        y_hat = (ste_round(y_g - mu_g) + mu_g) * inv_gain
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "bits": y_bits.sum((1, 2, 3)) + z_bits.sum((1, 2, 3))}

    # ---- coding: everything below runs on exported weights (see `export_coding`) ----

    @torch.no_grad()
    def export_coding(self) -> dict[str, torch.Tensor]:
        """Integer tables, the integer h_s and per-quality fixed-point gains, for the weights file."""
        gain, inv_gain = self.gain.quality_gains()
        log_table = SCALE_TABLE.log()
        thresholds = (log_table[:-1] + log_table[1:]) / 2  # nearest table in log scale
        out = {
            "coding.gain_fp": torch.round(gain * 2**FRAC_BITS).long(),
            "coding.log_gain_fp": torch.round(gain.log() * 2**FRAC_BITS).long(),
            "coding.inv_gain_fp": torch.round(inv_gain * 2**FRAC_BITS).long(),
            "coding.thresholds": torch.round(thresholds * 2**FRAC_BITS).long(),
        }
        out |= density_tables(self.z_density).to_tensors("coding.z")
        out |= gaussian_tables().to_tensors("coding.y")
        return out | export_nets(self, self.integer_nets)

    def load_coding(self, tensors: dict[str, torch.Tensor]) -> None:
        self.coding = {
            **coding_nets(self, self.integer_nets, tensors),
            "z": coder.Categoricals(TableSet.from_tensors(tensors, "coding.z")),
            "y": coder.Categoricals(TableSet.from_tensors(tensors, "coding.y")),
            **{k: tensors[f"coding.{k}"] for k in ("gain_fp", "log_gain_fp", "inv_gain_fp", "thresholds")},
        }

    def _symbol_parameters(self, hyper: torch.Tensor, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact integer (gained mean in 1/2**MEAN_BITS units, table index) for every y symbol,
        from the fixed-point (mu, log sigma) that the integer h_s (and a context) give."""
        c = self.coding
        mu, log_sigma = hyper.long().chunk(2, dim=1)
        g = c["gain_fp"][quality - 1][None, :, None, None]
        mu_g = round_shift(mu * g, 2 * FRAC_BITS - MEAN_BITS)
        log_sigma_g = log_sigma + c["log_gain_fp"][quality - 1][None, :, None, None]
        index = torch.searchsorted(c["thresholds"], log_sigma_g.flatten()).view_as(log_sigma_g)
        return mu_g, index

    def _y_parameters(self, z_sym: torch.Tensor, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(gained mean, table index) of every y symbol, from the hyper-latent's symbols."""
        return self._symbol_parameters(self.coding["h_s"](z_sym), quality)

    def _encode_z(self, z_sym: torch.Tensor) -> bytes:
        """The hyper-latent's symbols -> its stream (one table per channel)."""
        z_index = torch.arange(z_sym.shape[1]).view(1, -1, 1, 1).expand_as(z_sym)
        return coder.encode(z_sym.numpy(), z_index.numpy(), self.coding["z"])

    def _decode_z(self, stream: bytes, height: int, width: int, terminated: bool) -> torch.Tensor:
        """The hyper-latent's symbols of a padded height x width image."""
        z_shape = (1, self.config["N"], height // self.downsampling, width // self.downsampling)
        z_index = torch.arange(z_shape[1]).view(1, -1, 1, 1).expand(z_shape)
        return torch.from_numpy(coder.decode(stream, z_index.numpy(), self.coding["z"], terminated)).view(z_shape)

    def _decode_y(self, stream: bytes, index: torch.Tensor, terminated: bool) -> torch.Tensor:
        """The y symbols of one stream, coded with the tables `index`, in its shape."""
        return torch.from_numpy(coder.decode(stream, index.numpy(), self.coding["y"], terminated)).view(index.shape)

    def _dequantize(self, y_sym: torch.Tensor, mu_g: torch.Tensor, quality: int) -> torch.Tensor:
        """Symbols and their gained means -> ŷ in fixed point (the input of g_s), exactly."""
        inv_gain = self.coding["inv_gain_fp"][quality - 1][None, :, None, None]
        return round_shift(y_sym.bitwise_left_shift(MEAN_BITS).add_(mu_g).mul_(inv_gain), MEAN_BITS)

    def quality_gains(self, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The gain and inverse gain (1, M, 1, 1) that coding uses at `quality`, as floats."""
        return tuple(self.coding[k][quality - 1].float().div(2**FRAC_BITS)[None, :, None, None]
                     for k in ("gain_fp", "inv_gain_fp"))

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
        """The latent y = g_a(x) of a padded image -> [z stream, y stream]; z = round(h_a(y))
        unless the symbols are given (refinement chooses them)."""
        if z_sym is None:
            z_sym = torch.round(self.h_a(y)).long()
        z_bytes = self._encode_z(z_sym)
        mu_g, index = self._y_parameters(z_sym, quality)
        gain, _ = self.quality_gains(quality)
        y_sym = torch.round(y * gain - mu_g.float() / 2**MEAN_BITS).long()
        return [z_bytes, coder.encode(y_sym.numpy(), index.numpy(), self.coding["y"])]

    @torch.inference_mode()
    def decompress_latent(self, streams: list[bytes], height: int, width: int, quality: int,
                          terminated: bool = True) -> torch.Tensor:
        """[z stream, y stream] of a padded H x W image -> ŷ in fixed point, the input of g_s."""
        if len(streams) != 2:
            raise FormatError(f"hyperprior model expects 2 latent sections, found {len(streams)}")
        z_sym = self._decode_z(streams[0], height, width, terminated)
        mu_g, index = self._y_parameters(z_sym, quality)
        return self._dequantize(self._decode_y(streams[1], index, terminated), mu_g, quality)
