"""ComCNN -> JPEG -> RecCNN (Jiang et al. 2017, "An end-to-end compression framework based
on convolutional neural networks"): a baseline that wraps a standard codec in two CNNs.

ComCNN shrinks the image to half width and height (we let it learn a residual on a 2x2
average, and RecCNN one on bicubic upsampling, both starting at zero; the paper's BatchNorm
layers are left out: with batches of 8 the evaluation-mode network did not improve, while
without them, He-initialised, it trains); real JPEG (Pillow, 4:2:0) codes that
compact image at the chosen quality, and its bytes are the .nic payload; RecCNN, 20 conv
layers, restores the full image from the bicubic upsampling of the decoded compact image,
predicting the residual.

Training (JPEG is not differentiable): every forward pass codes the compact images with the
real JPEG encoder at each sample's quality, so RecCNN always learns from true JPEG output;
ComCNN gets its gradient through a straight-through stand-in, the identity in the backward
pass (the paper's own choice for ComCNN's update) — but unlike the paper's alternating scheme
the forward value is the real decoded image, so both networks train in one pass.

One RecCNN serves every JPEG quality, so by default it must undo q5's blocking and keep
q100's detail with the same filters: the first release, trained so (with ComCNN learning
beside it), ended 3 dB below plain bicubic upsampling at the top. With `quality_input = true` (the one change to the
design, made for the second release) RecCNN also reads the JPEG quality, as a constant
(quality / 100) plane beside the image, and learns each quality's restoration.

At the top the half-size image itself is the limit, and 4:2:0 halves its chroma again: from
`full_chroma_from` on (JPEG quality; off by default, as in the first two releases) the
compact image is coded 4:4:4. Decoding needs no setting: the JPEG names its own sampling.

Decoding runs RecCNN in float32, tile by tile: unlike the learned codecs it is deterministic
on one machine but not guaranteed bit-identical across machines (no symbol depends on it).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from nic.errors import NicError
from nic.models.base import Analysis, CompressionModel
from nic.models.gains import GainTable
from nic.quality import QUALITY_MAX, QUALITY_MIN
from nic.runtime import tiling
from nic_decode.comcnn import EXACT_REFUSED, compact_image  # the JPEG section's checks, shared with nic_decode
from nic_decode.tiles import REC_MARGIN, REC_TILE


def conv_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU()]


def jpeg_round_trip(compact: torch.Tensor, quality: int, full_chroma: bool = False) -> tuple[torch.Tensor, bytes]:
    """A (3, h, w) image in [0, 1] through real JPEG: (decoded image, the JPEG bytes).
    `full_chroma` codes 4:4:4 instead of libjpeg's default 4:2:0."""
    arr = compact.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    extra = {"subsampling": 0} if full_chroma else {}
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=quality, **extra)
    data = buf.getvalue()
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).float().div(255).to(compact.device), data


class ComRecCNN(CompressionModel):
    downsampling = 2
    decode_cost = 9.0  # RecCNN: decode time per pixel / hyperprior's (one thread, 512x512)
    encoder_params = ("com.",)  # ComCNN makes the compact image; decoding runs RecCNN

    def __init__(self, width: int = 64, rec_layers: int = 20, levels: int = 8,
                 lmbda_min: float = 1.0, lmbda_max: float = 1.0, quality_input: bool = False,
                 full_chroma_from: int = QUALITY_MAX + 1):
        super().__init__(dict(width=width, rec_layers=rec_layers, levels=levels, lmbda_min=lmbda_min,
                              lmbda_max=lmbda_max, quality_input=quality_input, full_chroma_from=full_chroma_from))
        self.quality_input = quality_input
        self.full_chroma_from = full_chroma_from
        self.com = nn.Sequential(
            *conv_relu(3, width), *conv_relu(width, width, stride=2), nn.Conv2d(width, 3, 3, padding=1),
        )
        self.rec = nn.Sequential(
            *conv_relu(3 + quality_input, width), *[m for _ in range(rec_layers - 2) for m in conv_relu(width, width)],
            nn.Conv2d(width, 3, 3, padding=1),
        )
        # He initialisation keeps a 20-layer ReLU stack's signal alive (PyTorch's default
        # shrinks it ~3x per layer, and RecCNN then never learns); the last layers start at
        # zero, so both networks begin as the identity around a plain resampling: ComCNN as a
        # 2x2 average, RecCNN as bicubic upsampling.
        for conv in [m for m in self.modules() if isinstance(m, nn.Conv2d)]:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for last in (self.com[-1], self.rec[-1]):
            nn.init.zeros_(last.weight)
        # Only the quality schedule is used: quality position t <-> JPEG quality.
        self.gain = GainTable(levels, 1, lmbda_min, lmbda_max, steps=(1.0, 1.0))

    def jpeg_quality(self, t: float) -> int:
        """JPEG quality for a level position: nic quality q codes the compact image at q."""
        frac = t / (self.gain.levels - 1)
        return round(QUALITY_MIN + frac * (QUALITY_MAX - QUALITY_MIN))

    def rec_input(self, decoded_compact: torch.Tensor, qualities: list[int]) -> torch.Tensor:
        """RecCNN's input: the bicubic upsampling, and the JPEG quality plane if it reads one."""
        up = F.interpolate(decoded_compact, scale_factor=2, mode="bicubic", align_corners=False)
        if not self.quality_input:
            return up
        plane = torch.tensor(qualities, dtype=up.dtype, device=up.device).div(100).view(-1, 1, 1, 1)
        return torch.cat([up, plane.expand(-1, 1, *up.shape[2:])], 1)

    def restore(self, rec_in: torch.Tensor) -> torch.Tensor:
        """RecCNN: the upsampled image plus the residual it predicts."""
        return rec_in[:, :3] + self.rec(rec_in)

    def compact(self, x: torch.Tensor) -> torch.Tensor:
        """ComCNN: the half-size image that JPEG codes (a learned residual on a 2x2 average)."""
        return F.avg_pool2d(x, 2) + self.com(x)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        compact = self.compact(x)
        coded, bits = [], []
        qualities = [self.jpeg_quality(ti) for ti in t.tolist()]
        for c, q in zip(compact, qualities, strict=True):
            decoded, data = jpeg_round_trip(c, q, q >= self.full_chroma_from)
            coded.append(c + (decoded - c).detach())  # real JPEG forward, identity backward
            bits.append(len(data) * 8.0)
        x_hat = self.restore(self.rec_input(torch.stack(coded), qualities))
        return {"x_hat": x_hat, "bits": torch.tensor(bits, device=x.device)}

    # ---- coding: the payload is the JPEG file of the compact image ----

    def export_coding(self) -> dict[str, torch.Tensor]:
        """Nothing beyond the parameters: JPEG brings its own entropy coder."""
        return {}

    def load_coding(self, tensors: dict[str, torch.Tensor]) -> None:
        self.coding = {}

    @torch.inference_mode()
    def analyse(self, image: np.ndarray) -> Analysis:
        """ComCNN's compact image (3, H/2, W/2) of a padded (H, W, 3) uint8 image."""
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255)
        return Analysis(image, self.compact(x)[0])

    def code(self, analysis: Analysis, quality: int, effort: int = 0, progress: bool = False) -> list[bytes]:
        """[JPEG bytes of the compact image at this quality] (no refinement: max_effort is 0)."""
        return [jpeg_round_trip(analysis.latent, quality, quality >= self.full_chroma_from)[1]]

    @torch.inference_mode()
    def decompress(self, streams: list[bytes], height: int, width: int, quality: int,
                   exact: bool = False, terminated: bool = True) -> np.ndarray:
        """[JPEG bytes] -> the padded (H, W, 3) uint8 image, RecCNN run tile by tile."""
        if exact:
            raise NicError(EXACT_REFUSED)
        compact = compact_image(streams, height, width)
        c = torch.from_numpy(compact).permute(2, 0, 1)[None].float().div(255)
        rec_in = self.rec_input(c, [quality])
        return tiling.run_tiled(tiling.whole_tiles(self._pixels, 1), rec_in, REC_TILE, REC_MARGIN, 1)

    def _pixels(self, rec_in: torch.Tensor) -> torch.Tensor:
        """RecCNN on (a tile of) its input -> uint8 pixels."""
        return self.restore(rec_in).clamp(0, 1).mul(255).round().to(torch.uint8)
