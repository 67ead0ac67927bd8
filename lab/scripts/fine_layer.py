"""The fine layer on held-out patches: the default model with and without it, against JPEG.

    python lab/scripts/fine_layer.py [--train ../shared/data/train] [--images 60]

Codes the first N of the 120 patches that training holds out at qualities 1..100 through
`nic.compress` (real files, bpp from their bytes, PSNR of the decoded pixels), once as
shipped and once with the fine layer switched off (every quality the model's own, as before
it), beside JPEG and WebP as `nic eval` codes them (`nic/eval/classic.py`: same settings,
same sweeps); prints each curve and its BD-rate against JPEG and writes
lab/results/fine_layer.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from context_bound import held_out_patches  # a sibling script: run as python lab/scripts/fine_layer.py

import nic
from nic.eval import classic
from nic.eval.bdrate import bd_rate
from nic.eval.metrics import psnr
from nic.models import registry

ROOT = Path(__file__).resolve().parents[2]  # the repository
QUALITIES = (1, 10, 20, 35, 50, 60, 70, 80, 90, 100)


def through(name: str):
    def code(img: np.ndarray, q: int) -> tuple[int, np.ndarray]:
        data = classic.encode(name, img, q)
        return len(data), classic.decode(data)
    return code


def learned(img: np.ndarray, q: int) -> tuple[int, np.ndarray]:
    data = nic.compress(img, quality=q)
    return len(data), np.asarray(nic.decompress(data))


def curve(images: list[np.ndarray], code, qualities) -> list[tuple[float, float]]:
    points = []
    for q in qualities:
        coded = [(code(img, q), img) for img in images]
        points.append((float(np.mean([n * 8 / img.shape[0] / img.shape[1] for (n, _), img in coded])),
                       float(np.mean([psnr(img, out) for (_, out), img in coded]))))
    return points


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, default=ROOT.parent / "shared" / "data" / "train",
                   help="the patch pack; the first --images of its 120 held-out patches are coded")
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--out", type=Path, default=ROOT / "lab" / "results" / "fine_layer.json")
    args = p.parse_args()
    images = held_out_patches(args.train, args.images)
    curves = {name: curve(images, through(name), classic.get(name).params) for name in ("jpeg", "webp")}
    curves["with fine layer"] = curve(images, learned, QUALITIES)
    model = type(registry.load(registry.DEFAULT_MODEL).model)
    shipped, model.fine_from = model.fine_from, None
    try:
        curves["without"] = curve(images, learned, QUALITIES)
    finally:
        model.fine_from = shipped
    jpeg = list(zip(*curves["jpeg"], strict=True))
    result = {"images": len(images), "qualities": QUALITIES, "curves": curves, "bd_rate_vs_jpeg": {}}
    for name in ("with fine layer", "without", "webp"):
        rate, quality = zip(*curves[name], strict=True)
        result["bd_rate_vs_jpeg"][name] = bd = bd_rate(jpeg[0], jpeg[1], rate, quality)
        print(f"{name:16s} BD-rate vs JPEG {bd:+.1f}%  " + " ".join(f"{b:.3f}/{q:.2f}" for b, q in curves[name]))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
