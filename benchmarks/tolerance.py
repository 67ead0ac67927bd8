"""How far the fast float paths are from the exact ones, over a folder of images (Kodak).

Every image is compressed at each quality by the default (fast) encoder and decoded three ways:
exactly (integer g_s, the same pixels on every machine), and by the fast float g_s in bfloat16
and in float32 (which of the two a machine uses depends on its CPU). Per quality: the largest
pixel difference fast vs exact, the share of pixels (any channel) that differ, the PSNR between
the two decodes, the PSNR of each against the original, and the BD-rate of each fast decoder
against the exact one (same files, so only the PSNR moves). The encoder is measured the same
way: files from the float32 encoder against files from the default one, both decoded exactly.
Prints a table, writes JSON.

    python benchmarks/tolerance.py ../shared/data/kodak --qualities 10 50 90
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("bfloat16", "float32")


@contextmanager
def precision(name: str):
    """Run the fast paths in `name` (nic reads NIC_PRECISION at each use)."""
    old = os.environ.get("NIC_PRECISION")
    os.environ["NIC_PRECISION"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["NIC_PRECISION"]
        else:
            os.environ["NIC_PRECISION"] = old


def measure(image: Path, quality: int) -> dict:
    from nic import codec
    from nic.eval.metrics import psnr
    from nic.io import read_image

    picture = read_image(image)
    original, pixels = picture.rgb, picture.width * picture.height
    data = codec.encode(picture, quality)
    exact = codec.decode(data, exact=True).rgb
    row = {"image": image.name, "quality": quality, "bpp": len(data) * 8 / pixels, "psnr_exact": psnr(original, exact)}
    for name in PRECISIONS:
        with precision(name):
            fast = codec.decode(data).rgb
        diff = np.abs(fast.astype(np.int16) - exact.astype(np.int16))
        row[name] = {"max_abs_diff": int(diff.max()), "share_differing": float(np.mean(diff.max(axis=2) > 0)),
                     "psnr_vs_exact": psnr(fast, exact), "psnr": psnr(original, fast)}
    with precision("float32"):
        data32 = codec.encode(picture, quality)
    row["encoder_float32"] = {"bpp": len(data32) * 8 / pixels,
                              "psnr_exact": psnr(original, codec.decode(data32, exact=True).rgb)}
    return row


def summarise(rows: list[dict], qualities: list[int]) -> dict:
    from nic.eval.bdrate import bd_rate

    def values(q: int, *keys: str) -> list[float]:
        """One measurement of every image at quality q: row[keys[0]][keys[1]]..."""
        out = []
        for r in rows:
            if r["quality"] == q:
                for k in keys:
                    r = r[k]
                out.append(r)
        return out

    def mean(*keys: str) -> list[float]:
        return [float(np.mean(values(q, *keys))) for q in qualities]

    bpp, exact = mean("bpp"), mean("psnr_exact")
    out = {"qualities": qualities, "bpp": bpp, "psnr_exact": exact, "fast": {}}
    for name in PRECISIONS:
        fast = mean(name, "psnr")
        out["fast"][name] = {
            "max_abs_diff": [max(values(q, name, "max_abs_diff")) for q in qualities],
            "share_differing": mean(name, "share_differing"),
            "psnr_vs_exact_min": [min(values(q, name, "psnr_vs_exact")) for q in qualities],
            "psnr_vs_exact_mean": mean(name, "psnr_vs_exact"),
            "psnr": fast, "bd_rate_vs_exact_pct": bd_rate(bpp, exact, bpp, fast)}
    bpp32, psnr32 = mean("encoder_float32", "bpp"), mean("encoder_float32", "psnr_exact")
    out["encoder"] = {"float32_bpp": bpp32, "float32_psnr_exact": psnr32,
                      "bd_rate_default_vs_float32_pct": bd_rate(bpp32, psnr32, bpp, exact)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", nargs="?", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--qualities", type=int, nargs="+", default=[10, 50, 90])
    p.add_argument("--out", default="benchmarks/results/tolerance.json")
    args = p.parse_args()

    from nic.models import registry
    from nic.runtime.fast import precision

    encoder = str(precision(registry.load(registry.DEFAULT_MODEL).model, "g_a")).removeprefix("torch.")

    images = sorted(Path(args.folder).glob("*.png"))
    rows = []
    for q in args.qualities:
        for image in images:
            rows.append(measure(image, q))
            r = rows[-1]
            print(f"q{q:<3} {image.name:14} {r['bpp']:.3f} bpp  exact {r['psnr_exact']:.3f} dB  " +
                  "  ".join(f"{n}: max {r[n]['max_abs_diff']} differ {r[n]['share_differing']:.3f} "
                            f"vs exact {r[n]['psnr_vs_exact']:.2f} dB" for n in PRECISIONS), flush=True)
    summary = summarise(rows, args.qualities)
    print(f"\n{len(images)} images; default encoder precision: {encoder}")
    print("quality | bpp | exact PSNR | " + " | ".join(f"{n}: max diff, share differing, PSNR vs exact (min), PSNR"
                                                     for n in PRECISIONS))
    for i, q in enumerate(args.qualities):
        cells = [f"{summary['fast'][n]['max_abs_diff'][i]}, {summary['fast'][n]['share_differing'][i]:.1%}, "
                 f"{summary['fast'][n]['psnr_vs_exact_min'][i]:.2f} dB, {summary['fast'][n]['psnr'][i]:.3f} dB"
                 for n in PRECISIONS]
        print(f"{q} | {summary['bpp'][i]:.3f} | {summary['psnr_exact'][i]:.3f} dB | " + " | ".join(cells))
    for n in PRECISIONS:
        print(f"BD-rate of the fast {n} decoder against the exact one: "
              f"{summary['fast'][n]['bd_rate_vs_exact_pct']:+.3f}%")
    print(f"BD-rate of the default encoder against the float32 one: "
          f"{summary['encoder']['bd_rate_default_vs_float32_pct']:+.3f}%")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "processor": platform.processor(), "images": len(images),
            "default_precision": encoder}
    out.write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
