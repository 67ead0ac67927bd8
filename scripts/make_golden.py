"""Write golden .nic files: small files made by this release, with the pixels it decodes them to.

    python scripts/make_golden.py [--out tests/data/golden] [--force | --add]

Each case crops one of the test photos in tests/data, codes it with a shipped model through
the public API (`nic.compress`), and writes NAME.nic, NAME.png (what this release decodes it
to) and a line in manifest.json (model, weights identity, quality, image mode). The files
are kept so that later releases prove, in tests/test_golden.py, that every file written
before still decodes to the same pixels. Regenerating replaces that proof: add a new folder
(or new cases, with --add: only the cases the manifest lacks are coded and appended) for a
new release rather than overwriting an old one.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import nic
from nic.container import unpack
from nic.models import registry
from nic.writes import atomic_write

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

# name, model, quality, source photo, crop box (left, top, right, bottom), mode. The retired
# factorized model makes no new files; its golden file (factorized-q50-rgb, kodim23-crop.png
# crop (0, 0, 64, 48)) stays in tests/data/golden and decodes from the archived weights. So do
# the cases of the archived hyperprior releases (hyperprior-b31ebeb4-..., -b916a932-...,
# -b83ce822-...): coded once from those releases' full weights files, which the archive no
# longer holds (it keeps only what decoding needs), as the manifest says.
CASES = [
    ("hyperprior-q10-rgb", "hyperprior", 10, "kodim05-crop.png", (8, 4, 80, 60), "RGB"),
    ("hyperprior-q50-rgb", "hyperprior", 50, "kodim05-crop.png", (8, 4, 80, 60), "RGB"),
    ("hyperprior-q95-rgb", "hyperprior", 95, "kodim05-crop.png", (8, 4, 80, 60), "RGB"),
    ("hyperprior-q75-grey", "hyperprior", 75, "kodim05-crop.png", (64, 32, 128, 96), "L"),
    ("hyperprior-q40-rgba", "hyperprior", 40, "kodim23-crop.png", (0, 20, 60, 64), "RGBA"),
    ("conv-ae-q60-la", "conv-ae", 60, "kodim05-crop.png", (30, 20, 80, 58), "LA"),
    ("comcnn-q50-rgb", "comcnn", 50, "kodim05-crop.png", (40, 10, 104, 74), "RGB"),
    # Version 3: a fine layer on quality 50's latent (added by a later release, with --add).
    ("hyperprior-q90-fine-rgb", "hyperprior", 90, "kodim05-crop.png", (8, 4, 80, 60), "RGB"),
    ("hyperprior-q100-fine-rgba", "hyperprior", 100, "kodim23-crop.png", (0, 20, 60, 64), "RGBA"),
    # The checkerboard model, shipped as the default (added by a later release, with --add).
    ("checkerboard-q10-rgb", "checkerboard", 10, "kodim05-crop.png", (8, 4, 80, 60), "RGB"),
    ("checkerboard-q50-grey", "checkerboard", 50, "kodim05-crop.png", (64, 32, 128, 96), "L"),
    ("checkerboard-q90-fine-rgba", "checkerboard", 90, "kodim23-crop.png", (0, 20, 60, 64), "RGBA"),
    # The checkerboard weights shipped next (891dff1c...; added by a later release, with --add).
    ("checkerboard-891dff1c-q35-rgb", "checkerboard", 35, "kodim23-crop.png", (16, 8, 64, 48), "RGB"),
    # The checkerboard weights shipped after those (ded85edc...; added by a later release, with --add).
    ("checkerboard-ded85edc-q70-fine-rgb", "checkerboard", 70, "kodim05-crop.png", (24, 16, 88, 64), "RGB"),
    # comcnn's second weights (57e23f96..., RecCNN reads the quality; added by a later release, with --add).
    ("comcnn-57e23f96-q30-rgb", "comcnn", 30, "kodim23-crop.png", (8, 8, 72, 56), "RGB"),
    # comcnn's third weights (2ec24811..., 4:4:4 from quality 90 on; added by a later release, with --add).
    ("comcnn-2ec24811-q95-rgb", "comcnn", 95, "kodim05-crop.png", (24, 16, 88, 64), "RGB"),
    # The checkerboard trained for MS-SSIM, a second model (f06b1c47...; added by a later release, with --add).
    ("checkerboard-msssim-f06b1c47-q40-rgb", "checkerboard-msssim", 40, "kodim23-crop.png", (8, 8, 72, 56), "RGB"),
]
# ComCNN's RecCNN decodes in float32: the same on one machine, within 1 level across machines.
TOLERANCE = {"comcnn": 1}


def source(photo: str, box: tuple[int, int, int, int], mode: str) -> Image.Image:
    """The crop in the wanted mode; alpha, where wanted, is a diagonal ramp with a hole."""
    img = Image.open(DATA / photo).convert("RGB").crop(box)
    if mode in ("RGB", "L"):
        return img.convert(mode)
    h, w = img.height, img.width
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip((xx + yy) * 255 // (w + h - 2), 0, 255).astype(np.uint8)
    alpha[h // 3:h // 2, w // 3:w // 2] = 0
    out = img.convert(mode[0]) if mode == "LA" else img
    out = out.convert(mode)
    out.putalpha(Image.fromarray(alpha, "L"))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DATA / "golden"))
    p.add_argument("--force", action="store_true", help="overwrite existing golden files")
    p.add_argument("--add", action="store_true", help="code only the cases the manifest lacks, and append them")
    args = p.parse_args()
    uncovered = [m for m in registry.SHIPPED if m not in {case[1] for case in CASES}]
    if uncovered:  # every shipped model proves, with golden files, that later releases decode its files
        sys.exit(f"make_golden: no case codes shipped model(s) {', '.join(uncovered)}: add them to CASES")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    old = json.loads((out / "manifest.json").read_text()) if args.add else {"files": []}
    entries = old["files"]
    have = {e["nic"] for e in entries}
    for name, model, quality, photo, box, mode in CASES:
        if f"{name}.nic" in have:
            continue
        data = nic.compress(source(photo, box, mode), quality=quality, model=model)
        decoded = nic.decompress(data, exact=TOLERANCE.get(model, 0) == 0)
        header, _ = unpack(data)
        weights = Path(registry.available()[model]["path"]).read_bytes()
        atomic_write(out / f"{name}.nic", data, args.force)
        png = io.BytesIO()
        decoded.save(png, format="PNG", optimize=True)
        atomic_write(out / f"{name}.png", png.getvalue(), args.force)
        entries.append({
            "nic": f"{name}.nic", "png": f"{name}.png", "model": model,
            "weights_hash": header.weights_hash.hex(), "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "quality": quality, "mode": decoded.mode, "size": [decoded.width, decoded.height],
            "source": f"tests/data/{photo} crop {list(box)} as {mode}",
            "max_abs_diff": TOLERANCE.get(model, 0),
        })
        print(f"{name}: {len(data)} bytes, {decoded.mode} {decoded.width}x{decoded.height}")
    made_by = f"nic {nic.__version__} at commit {commit}, by scripts/make_golden.py"
    manifest = {
        "made_by": f"{old['made_by']}; cases added by {made_by}" if args.add else made_by,
        "how": "NAME.nic = nic.compress(source crop, quality, model); NAME.png = nic.decompress(NAME.nic, "
               "exact=True) as this release decoded it (comcnn: without exact). max_abs_diff: how far a "
               "later decode may differ per pixel (0 = bit-exact; comcnn's RecCNN runs in float32).",
        "files": entries,
    }
    atomic_write(out / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode(), args.force or args.add)
    return 0


if __name__ == "__main__":
    sys.exit(main())
