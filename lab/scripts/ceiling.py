"""What limits the top of the curve: the quantizer or the transforms?

For a hyperprior model, codes each image's latent at the given qualities with the quality's
quantizer and with one `--finer` times finer, down to no rounding at all, and decodes each
with the float synthesis. If PSNR barely rises as the quantizer gets finer, more rate cannot
buy quality: the transforms themselves (g_a, g_s) are the ceiling, and only a model that
reconstructs better can raise the top. Prints a table (mean over images) and writes JSON.

    python lab/scripts/ceiling.py ../shared/data/kodak
    python lab/scripts/ceiling.py ../shared/data/kodak --weights other.safetensors --qualities 90 100
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nic.eval.metrics import psnr
from nic.models import registry

ROOT = Path(__file__).resolve().parents[2]  # the repository


def pixels(x: torch.Tensor) -> np.ndarray:
    """A synthesis output (1, 3, H, W) in [0, 1] as the uint8 image a decoder writes."""
    return x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@torch.inference_mode()
def ceiling(model, image: np.ndarray, qualities: list[int], finer: list[float]) -> dict[int, list[float]]:
    """PSNR per quality for quantizer steps divided by each of `finer` (inf: no rounding)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)
    pad = model.downsampling
    h, w = x.shape[-2:]
    xp = torch.nn.functional.pad(x, (0, -w % pad, 0, -h % pad), mode="replicate")
    y = model.g_a(xp)
    mu, _ = model.h_s(torch.round(model.h_a(y))).chunk(2, dim=1)
    out = {}
    for q in qualities:
        gain, inv_gain = model.gain(torch.tensor([model.gain.position(q)]))
        row = []
        for f in finer:
            if math.isinf(f):
                y_hat = y * gain * inv_gain
            else:
                g = gain * f
                y_hat = (torch.round((y - mu) * g) + mu * g) * inv_gain / f
            row.append(psnr(pixels(model.g_s(y_hat)[..., :h, :w]), image))
        out[q] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--weights", type=Path, help="a hyperprior weights file (default: the shipped hyperprior)")
    p.add_argument("--qualities", type=int, nargs="+", default=[50, 90, 100])
    p.add_argument("--finer", type=float, nargs="+", default=[1, 2, 4, math.inf])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="lab/results/ceiling.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = (registry.from_bytes(args.weights.stem, args.weights.read_bytes()) if args.weights
              else registry.load("hyperprior"))
    model = loaded.model.float()
    files = sorted(args.folder.glob("*.png"))
    per_image = {}
    for f in files:
        image = np.array(Image.open(f).convert("RGB"))
        per_image[f.name] = ceiling(model, image, args.qualities, args.finer)
    mean = {q: [float(np.mean([r[q][i] for r in per_image.values()])) for i in range(len(args.finer))]
            for q in args.qualities}
    print(f"{loaded.name} ({loaded.weights_hash.hex()}), {len(files)} images, mean PSNR (dB) by quantizer step")
    print(f"{'quality':>7} " + " ".join(f"{'step/' + format(f, 'g'):>9}" for f in args.finer))
    for q, row in mean.items():
        print(f"{q:7d} " + " ".join(f"{v:9.2f}" for v in row))
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"weights": loaded.weights_hash.hex(), "images": len(files),
                               "finer": [str(f) for f in args.finer], "mean_psnr": mean,
                               "per_image": per_image}, indent=2) + "\n")


if __name__ == "__main__":
    main()
