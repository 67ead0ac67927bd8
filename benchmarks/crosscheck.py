"""Check an eval's JPEG and WebP numbers against an independent computation.

Re-encodes every image of a finished `nic eval` at every JPEG and WebP setting with plain
Pillow calls, computes size and PSNR with numpy here (not through nic.eval), and reports the
largest differences from results.json: the bar is 0.01 dB and 0.1% in size. Writes JSON.

    python benchmarks/crosscheck.py results/kodak ../shared/data/kodak
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ENCODE = {
    "jpeg": lambda img, buf, q: img.save(buf, format="JPEG", quality=q, subsampling=2),
    "webp": lambda img, buf, q: img.save(buf, format="WEBP", quality=q, method=6),
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="an eval's output folder")
    p.add_argument("data", help="the images it measured")
    p.add_argument("--out", default="benchmarks/results/crosscheck.json")
    args = p.parse_args()
    records = json.loads((Path(args.results) / "results.json").read_text())["records"]
    report = {}
    for codec, encode in ENCODE.items():
        worst_db, worst_size, n = 0.0, 0.0, 0
        for r in (r for r in records if r["codec"] == codec):
            rgb = np.asarray(Image.open(Path(args.data) / r["image"]).convert("RGB"))
            buf = io.BytesIO()
            encode(Image.fromarray(rgb), buf, r["param"])
            decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            worst_db = max(worst_db, abs(psnr(rgb, decoded) - r["psnr"]))
            worst_size = max(worst_size, abs(len(buf.getvalue()) - r["bytes"]) / len(buf.getvalue()))
            n += 1
        report[codec] = {"records": n, "max_psnr_diff_db": worst_db, "max_size_diff_pct": 100 * worst_size,
                         "ok": n > 0 and worst_db <= 0.01 and worst_size <= 0.001}
        print(f"{codec:>5}: {n} files, max |dPSNR| {worst_db:.4f} dB, max size diff {100 * worst_size:.4f}%"
              f"  {'OK' if report[codec]['ok'] else 'FAIL'}")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": args.results, "data": args.data, "codecs": report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
