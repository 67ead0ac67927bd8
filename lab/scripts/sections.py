"""Where a model's bits go: the real size of each latent section (ẑ; for a checkerboard model
the anchors and the half the context codes), per quality, on held-out patches.

For a context model, the two halves of ŷ hold the same number of symbols, so the ratio of
their sizes is what the context saves; for a hyperprior, ŷ is one section.

    python lab/scripts/sections.py checkpoints/checkerboard-s21-SC2.safetensors nic/weights/hyperprior.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from context_bound import held_out_patches  # a sibling script: run as python lab/scripts/sections.py

from nic.models.registry import from_bytes

ROOT = Path(__file__).resolve().parents[2]  # the repository


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, nargs="+", help="weights files (.safetensors with their cards)")
    p.add_argument("--train", type=Path, default=ROOT.parent / "shared" / "data" / "train",
                   help="the patch pack; the first --images of its 120 held-out patches are coded")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--qualities", type=int, nargs="+", default=[10, 50, 90])
    p.add_argument("--out", type=Path, default=ROOT / "lab" / "results" / "sections.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    images = held_out_patches(args.train, args.images)
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    rows = []
    for path in args.weights:
        model = from_bytes(path.stem, path.read_bytes()).model
        for quality in args.qualities:
            sizes = np.sum([[len(s) for s in model.compress(im, quality)] for im in images], axis=0)
            bpp = [8 * float(n) / pixels for n in sizes]
            rows.append({"weights": str(path), "quality": quality, "section_bpp": bpp})
            print(f"{path.stem:>32} q{quality:<3} " + " + ".join(f"{b:.4f}" for b in bpp) + f" = {sum(bpp):.4f} bpp",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"images": len(images), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
