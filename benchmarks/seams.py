"""What tiling costs at tile borders: PSNR in bands around them, tiled against one pass.

Synthesis tiles are exact (integer networks, margins beyond the receptive field), so tiled and
one-pass decodes must be bit-identical; analysis tiles run the float encoder on overlapping
pieces, so its files differ slightly and the cost is measured as PSNR in 16-px bands around
the tile borders. Prints a table, writes JSON.

    python benchmarks/seams.py --size 2048x1536
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed import test_image  # noqa: E402


def band_mask(h: int, w: int, tile: int, half: int = 8) -> np.ndarray:
    """Pixels within `half` of an interior tile border."""
    mask = np.zeros((h, w), dtype=bool)
    for b in range(tile, h, tile):
        mask[max(0, b - half):b + half] = True
    for b in range(tile, w, tile):
        mask[:, max(0, b - half):b + half] = True
    return mask


def psnr_masked(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[mask]
    return float(10 * np.log10(255**2 / np.mean(d**2)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="2048x1536")
    p.add_argument("--quality", type=int, default=50)
    p.add_argument("--out", default="benchmarks/results/seams.json")
    args = p.parse_args()
    from nic import codec
    from nic.io import picture_from_array
    from nic.runtime import tiling

    w, h = map(int, args.size.split("x"))
    rgb = test_image(w, h)
    pic = picture_from_array(rgb)

    tiled_file = codec.encode(pic, args.quality)
    saved = tiling.ANALYSIS_TILE
    tiling.ANALYSIS_TILE = 1 << 30
    one_pass_file = codec.encode(pic, args.quality)
    tiling.ANALYSIS_TILE = saved

    decoded = codec.decode(tiled_file, exact=True).rgb
    saved = (tiling.ONE_PASS, tiling.SYNTHESIS_TILE)
    tiling.ONE_PASS, tiling.SYNTHESIS_TILE = 1 << 40, 1 << 20  # exact synthesis in one pass
    decoded_one_pass = codec.decode(tiled_file, exact=True).rgb
    tiling.ONE_PASS, tiling.SYNTHESIS_TILE = saved
    synthesis_diff = int(np.count_nonzero(decoded != decoded_one_pass))

    reference = codec.decode(one_pass_file, exact=True).rgb
    band = band_mask(h, w, tiling.ANALYSIS_TILE)
    rest = ~band
    rows = {
        "analysis tiles": {"bytes": len(tiled_file), "psnr_band": psnr_masked(rgb, decoded, band),
                           "psnr_rest": psnr_masked(rgb, decoded, rest)},
        "one pass": {"bytes": len(one_pass_file), "psnr_band": psnr_masked(rgb, reference, band),
                     "psnr_rest": psnr_masked(rgb, reference, rest)},
    }
    seam_cost = rows["one pass"]["psnr_band"] - rows["analysis tiles"]["psnr_band"]
    print(f"{args.size}, quality {args.quality}, analysis tiles of {tiling.ANALYSIS_TILE} px, "
          f"synthesis tiles of {tiling.SYNTHESIS_TILE} px")
    for name, r in rows.items():
        print(f"  {name:>15}: {r['bytes']:8d} bytes, PSNR in 16-px bands at tile borders {r['psnr_band']:.3f} dB, "
              f"elsewhere {r['psnr_rest']:.3f} dB")
    print(f"  seam cost of analysis tiles: {seam_cost:+.3f} dB (limit 0.5 dB)")
    print(f"  pixels that differ between tiled and one-pass exact synthesis: {synthesis_diff}")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"size": args.size, "quality": args.quality, "rows": rows,
                               "seam_cost_db": seam_cost, "synthesis_pixels_differing": synthesis_diff},
                              indent=2) + "\n")
    sys.exit(0 if seam_cost < 0.5 and synthesis_diff == 0 else 1)


if __name__ == "__main__":
    main()
