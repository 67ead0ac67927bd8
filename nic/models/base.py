"""The contract between nic and its architectures: what a model provides to be trained,
exported and used to code images. `codec.py`, the training loop and the weights file use a
model only through `CompressionModel`; a new architecture is one module that implements it,
plus a line in `registry.ARCHITECTURES`.

Coding, seen from the codec:

    image, padded to `downsampling` -analyse-> Analysis -code(quality)-> streams (list of bytes)
    streams -decompress(height, width, quality)-> padded image (uint8)

`analyse` is the quality-independent half, done once per picture: finding the quality that
meets a target size codes one Analysis at up to 8 qualities. Latent models (`LatentModel`)
share one implementation of all three steps through tiling; a model that codes pixels some
other way (ComCNN hands them to JPEG) implements them itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from nic.models.gains import GainTable
from nic.runtime import tiling
from nic.runtime.fast import fast_analysis, fast_synthesis
from nic.runtime.integer import to_pixels


@dataclass
class Analysis:
    """One padded image and what the model's analysis made of it, reused at every quality."""

    image: np.ndarray  # the padded (H, W, 3) uint8 image
    latent: torch.Tensor  # e.g. g_a's y, or ComCNN's compact image


class CompressionModel(nn.Module, ABC):
    """Every architecture: a training forward pass, its rate schedule, export, and coding."""

    downsampling: ClassVar[int]  # image sides are padded to a multiple of this before coding
    # Decoding work per pixel relative to the default model: the pixel limit (NIC_MAX_PIXELS)
    # bounds padded pixels times this, so no model's decoder can be made to work longer.
    decode_cost: ClassVar[float] = 1.0
    # Decoder networks that run as exact integer networks when coding ({attribute: fractional
    # bits of its input}); the weights file stores them only in that form.
    integer_nets: ClassVar[dict[str, int]] = {}
    # State-dict prefixes that only encoding or training reads: an archived release keeps only
    # what decoding needs (`registry.decode_only`), so its weights file leaves these out.
    encoder_params: ClassVar[tuple[str, ...]] = ()
    gain: GainTable  # the rate schedule: `levels` trained operating points and their lambdas
    max_effort: ClassVar[int] = 0  # highest encoder effort `code` accepts (see `runtime/refine.py`)
    # Qualities above this carry a fine layer on top of this quality's image (`nic/fine.py`);
    # None: every quality is the model's own (the seed baselines reproduce their papers).
    fine_from: ClassVar[int | None] = None

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = config  # the constructor's arguments, saved in checkpoints and weights files
        self.coding: dict[str, Any] = {}  # coding state (integer nets, tables), set by `load_coding`

    @property
    def integer_only(self) -> tuple[str, ...]:
        """State-dict prefixes of the parameters stored only as integer networks."""
        return tuple(f"{name}." for name in self.integer_nets)

    # ---- training ----

    @abstractmethod
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: images (B, 3, H, W) in [0, 1] at level positions t (B,) in
        [0, levels - 1] -> {"x_hat": reconstruction, "bits": (B,) estimated rate}."""

    @property
    def levels(self) -> int:
        """How many operating points the model is trained at (t ranges over 0..levels-1)."""
        return self.gain.levels

    def lmbda(self, t: torch.Tensor) -> torch.Tensor:
        """The rate-distortion trade-off the training loss uses at level positions t."""
        return self.gain.lmbda(t)

    # ---- export: what the weights file holds beyond the parameters ----

    @abstractmethod
    def export_coding(self) -> dict[str, torch.Tensor]:
        """Coding state ("coding.*" tensors: integer nets, probability tables, gains) of a
        trained model, computed once and stored in its weights file."""

    @abstractmethod
    def load_coding(self, tensors: dict[str, torch.Tensor]) -> None:
        """Set `self.coding` from the "coding.*" tensors of a weights file."""

    # ---- coding: runs on loaded weights (see `registry.from_bytes`) ----

    @abstractmethod
    def analyse(self, image: np.ndarray) -> Analysis:
        """The quality-independent work on a padded (H, W, 3) uint8 image."""

    @abstractmethod
    def code(self, analysis: Analysis, quality: int, effort: int = 0, progress: bool = False) -> list[bytes]:
        """The file's payload streams for one quality (1-100). An `effort` above 0 (up to
        `max_effort`) spends encoder time on a better file for the same decoder; `progress`
        shows a bar on stderr while it does."""

    def compress(self, image: np.ndarray, quality: int) -> list[bytes]:
        """A padded (H, W, 3) uint8 image -> payload streams at one quality."""
        return self.code(self.analyse(image), quality)

    @abstractmethod
    def decompress(self, streams: list[bytes], height: int, width: int, quality: int,
                   exact: bool = False, terminated: bool = True) -> np.ndarray:
        """Payload streams of a padded height x width image -> its (H, W, 3) uint8 pixels.
        Bad streams raise FormatError. `exact`: pixels bit-identical on every machine (a model
        that cannot promise that raises NicError); otherwise the model's fastest decoder,
        which may differ from the exact one within a stated tolerance. `terminated`: the
        streams end with the entropy coder's terminator (False only in version 1 files)."""


class LatentModel(CompressionModel):
    """A model that codes a latent y = g_a(x) and decodes pixels with a synthesis g_s.

    compress:   image -tiled fast g_a-> y -compress_latent(quality)-> streams
    decompress: streams -decompress_latent-> ŷ (fixed point, exact) -tiled g_s-> pixels
    g_s runs in float (`fast.FastSynthesis`), or with `exact` as the integer network
    (`synthesise`, bit-identical everywhere). Subclasses supply the entropy model
    (`compress_latent` / `decompress_latent`) and may replace `synthesise`; tiling keeps memory
    bounded and changes no exactly decoded pixel.
    """

    latent_stride: ClassVar[int]  # image pixels per latent pixel (g_a's total stride)
    g_a: nn.Module

    def analyse(self, image: np.ndarray) -> Analysis:
        return Analysis(image, tiling.analyse(fast_analysis(self), image, self.latent_stride))

    def code(self, analysis: Analysis, quality: int, effort: int = 0, progress: bool = False) -> list[bytes]:
        # Encoder-side work for one quality that leaves the format alone (refining y against
        # the image: models with `max_effort` > 0 override this) goes between the analysis and
        # the entropy coder.
        return self.compress_latent(analysis.latent, quality)

    def decompress(self, streams: list[bytes], height: int, width: int, quality: int,
                   exact: bool = False, terminated: bool = True) -> np.ndarray:
        y_hat = self.decompress_latent(streams, height, width, quality, terminated)
        if exact:
            exact_tiles = tiling.whole_tiles(self.synthesise, self.latent_stride)
            return tiling.synthesise(exact_tiles, y_hat, self.latent_stride)
        fast = fast_synthesis(self)
        return tiling.synthesise(fast, y_hat, self.latent_stride, fast.tile, fast.one_pass, even=True)

    @abstractmethod
    def compress_latent(self, y: torch.Tensor, quality: int) -> list[bytes]:
        """Quantize and entropy-code the latent y (1, M, h, w) of a padded image."""

    @abstractmethod
    def decompress_latent(self, streams: list[bytes], height: int, width: int, quality: int,
                          terminated: bool = True) -> torch.Tensor:
        """Streams of a padded height x width image -> ŷ in fixed point, the input of `synthesise`."""

    def synthesise(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Exact integer g_s: fixed-point ŷ (a tile of it) -> (1, 3, stride h, stride w) uint8 pixels."""
        return to_pixels(self.coding["g_s"](y_hat))
