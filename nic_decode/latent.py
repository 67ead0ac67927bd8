"""The latent ŷ of every latent model, from its streams, exactly as nic decodes it
(nic/models/hyperprior.py, nic/entropy/conditional.py, nic/entropy/checkerboard.py,
nic/models/factorized_latent.py).

    hyperprior:   z stream -(one table per channel)-> ẑ -h_s-> (mu, log sigma) per latent
                  position; y stream, tables and means from (mu, log sigma) -> ŷ
    checkerboard: z as above; anchors ((row + column) even) as above; then the rest, whose (mu,
                  log sigma) the context networks correct from the decoded anchors within two positions
    factorized, conv-ae: one y stream, one table per (quality, channel), no side information
Every step is integer arithmetic, so the table of each symbol is nic's on every machine.
Arrays here are (channels, h, w) for the entropy coder's order, (h, w, channels) for networks.
"""

from __future__ import annotations

import numpy as np

from nic_decode import coder
from nic_decode.errors import FormatError
from nic_decode.integer import FRAC_BITS, IntegerNet, round_shift

MEAN_BITS = 8  # fixed-point fraction of the gained mean
CHUNK = 4096  # non-anchor positions per pass of the context networks (bounds memory)
OFFSETS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy + dx) % 2)
H_S = ("deconv", "relu", "deconv", "relu", "conv3")
CONTEXT = ("conv1",)
PARAM_NET = ("conv1", "relu", "conv1")
DOWNSAMPLING = 64  # z's stride: padded sides are multiples of this


def coding_net(coding: dict[str, np.ndarray], name: str, spec: tuple[str, ...], input_frac: int) -> IntegerNet:
    """The integer network `name` (layers `spec`) from a weights file's coding tensors."""
    prefix = f"{name}."
    return IntegerNet(spec, {k.removeprefix(prefix): v for k, v in coding.items() if k.startswith(prefix)},
                      input_frac)


class LatentDecoder:
    """ŷ of a hyperprior or checkerboard model, from its weights' coding tensors."""

    def __init__(self, architecture: str, coding: dict[str, np.ndarray]):
        self.kind = architecture
        self.context = architecture == "checkerboard"
        self.h_s = coding_net(coding, "h_s", H_S, 0)
        if self.context:
            self.context_net = coding_net(coding, "context", CONTEXT, FRAC_BITS)
            self.param_net = coding_net(coding, "param_net", PARAM_NET, FRAC_BITS)
        self.z_tables = coder.Tables.from_coding(coding, "z")
        self.y_tables = coder.Tables.from_coding(coding, "y")
        self.z_channels = len(self.z_tables.lengths)
        self.gain = coding["gain_fp"].astype(np.int64)
        self.log_gain = coding["log_gain_fp"].astype(np.int64)
        self.inv_gain = coding["inv_gain_fp"].astype(np.int64)
        self.thresholds = coding["thresholds"].astype(np.int64)

    def _parameters(self, hyper: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-point (mu, log sigma) (2M, ...) -> (gained mean in 1/2**MEAN_BITS, table index)."""
        mu, log_sigma = np.split(hyper.astype(np.int64), 2)
        shape = (-1,) + (1,) * (mu.ndim - 1)
        mu_g = round_shift(mu * self.gain[quality - 1].reshape(shape), 2 * FRAC_BITS - MEAN_BITS)
        log_sigma_g = log_sigma + self.log_gain[quality - 1].reshape(shape)
        return mu_g, np.searchsorted(self.thresholds, log_sigma_g)

    def _dequantize(self, symbols: np.ndarray, mu_g: np.ndarray, quality: int) -> np.ndarray:
        shape = (-1,) + (1,) * (mu_g.ndim - 1)
        inv = self.inv_gain[quality - 1].reshape(shape)
        return round_shift(((symbols << MEAN_BITS) + mu_g) * inv, MEAN_BITS)

    def decode(self, streams: list[bytes], height: int, width: int, quality: int,
               terminated: bool) -> np.ndarray:
        """The streams of a padded height x width image -> ŷ (M, h, w), int64 fixed point."""
        expected = 3 if self.context else 2
        if len(streams) != expected:
            raise FormatError(f"{self.kind} model expects {expected} latent sections, found {len(streams)}")
        z_shape = (self.z_channels, height // DOWNSAMPLING, width // DOWNSAMPLING)
        z_index = np.broadcast_to(np.arange(z_shape[0]).reshape(-1, 1, 1), z_shape)
        z = coder.decode(streams[0], z_index, self.z_tables, terminated)
        hyper = self.h_s(z.transpose(1, 2, 0)).transpose(2, 0, 1)  # (2M, h, w)
        if not self.context:
            mu_g, index = self._parameters(hyper, quality)
            return self._dequantize(coder.decode(streams[1], index, self.y_tables, terminated), mu_g, quality)
        return self._checkerboard(streams[1:], hyper, quality, terminated)

    def _checkerboard(self, streams: list[bytes], hyper: np.ndarray, quality: int, terminated: bool) -> np.ndarray:
        _, h, w = hyper.shape
        anchor = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0
        ar, ac = np.nonzero(anchor)
        rr, rc = np.nonzero(~anchor)
        mu_g, index = self._parameters(hyper[:, ar, ac], quality)
        y_anchor = self._dequantize(coder.decode(streams[0], index, self.y_tables, terminated), mu_g, quality)
        m = y_anchor.shape[0]
        grid = np.zeros((h + 4, w + 4, m))
        grid[ar + 2, ac + 2] = y_anchor.T
        mu_parts, index_parts = [], []
        for start in range(0, len(rr), CHUNK):
            r, c = rr[start:start + CHUNK] + 2, rc[start:start + CHUNK] + 2
            near = np.concatenate([grid[r + dy, c + dx] for dy, dx in OFFSETS], axis=1)[None]
            at = hyper[:, r - 2, c - 2].T[None]  # (1, n, 2M)
            delta = self.param_net(np.concatenate([at, self.context_net(near)], axis=2))
            mu_g, index = self._parameters((at + delta)[0].T, quality)
            mu_parts.append(mu_g)
            index_parts.append(index)
        mu_g = np.concatenate(mu_parts, axis=1) if mu_parts else np.zeros((m, 0), dtype=np.int64)
        index = np.concatenate(index_parts, axis=1) if index_parts else np.zeros((m, 0), dtype=np.int64)
        y_hat = np.zeros((m, h, w), dtype=np.int64)
        y_hat[:, ar, ac] = y_anchor
        y_hat[:, rr, rc] = self._dequantize(coder.decode(streams[1], index, self.y_tables, terminated), mu_g, quality)
        return y_hat


class FactorizedLatent:
    """ŷ of a factorized or conv-ae model (nic/models/factorized_latent.py): one y stream, symbol
    of channel c at quality q under table (q - 1) M + c, times the quality's fixed-point inverse
    gain. `stride`: image pixels per latent pixel."""

    def __init__(self, coding: dict[str, np.ndarray], stride: int):
        self.tables = coder.Tables.from_coding(coding, "y")
        self.inv_gain = coding["inv_gain_fp"].astype(np.int64)
        self.stride = stride

    def decode(self, streams: list[bytes], height: int, width: int, quality: int,
               terminated: bool) -> np.ndarray:
        """The stream of a padded height x width image -> ŷ (M, h, w), int64 fixed point."""
        if len(streams) != 1:
            raise FormatError(f"this model expects 1 latent section, found {len(streams)}")
        m = self.inv_gain.shape[1]
        shape = (m, height // self.stride, width // self.stride)
        index = np.broadcast_to(((quality - 1) * m + np.arange(m)).reshape(-1, 1, 1), shape)
        return coder.decode(streams[0], index, self.tables, terminated) * self.inv_gain[quality - 1].reshape(-1, 1, 1)
