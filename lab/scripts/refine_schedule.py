"""Which refinement schedule buys the most per second: variants of `refine.Schedule` on images
that are not Kodak (tune here, measure on Kodak with `benchmarks/effort.py`).

For each variant (a JSON object of Schedule fields), every image is refined at each quality;
the coded streams (real bytes, without the container header) are decoded by the exact integer
decoder and scored by the rate saving at equal PSNR against effort 0's curve for that image
(interpolated from qualities q-15..q+15), and by the change in rate + lambda x distortion.
Prints a table, writes JSON.

    python lab/scripts/refine_schedule.py ../shared/data/train --images 6 --qualities 25,75 \\
        '{"steps": 100}' '{"steps": 100, "noise": 1.0}' '{"steps": 100, "lr": 0.01}'
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]  # the repository
sys.path.insert(0, str(ROOT))

from nic import geometry  # noqa: E402
from nic.eval import metrics  # noqa: E402
from nic.models import registry  # noqa: E402
from nic.runtime import refine  # noqa: E402


def point(model: torch.nn.Module, original: np.ndarray, layout: geometry.Layout, streams: list[bytes],
          quality: int) -> tuple[float, float]:
    """(bpp, RGB PSNR) of coded streams, decoded by the exact decoder."""
    h, w = original.shape[:2]
    pixels = geometry.restore(model.decompress(streams, *layout.padded, quality), layout)
    return sum(map(len, streams)) * 8 / (h * w), metrics.psnr(pixels, original)


def rate_saving(curve: list[tuple[float, float]], bpp: float, psnr: float) -> float:
    """bpp against the rate effort 0 needs for the same PSNR (log-rate interpolation), - 1."""
    curve = sorted(curve, key=lambda c: c[1])
    return bpp / math.exp(np.interp(psnr, [c[1] for c in curve], [math.log(c[0]) for c in curve])) - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="a folder of images (searched recursively); not the evaluation set")
    p.add_argument("variants", nargs="+", help='JSON objects of Schedule fields, e.g. \'{"steps": 100}\'')
    p.add_argument("--images", type=int, default=6, help="the first N images by name")
    p.add_argument("--qualities", default="25,75")
    p.add_argument("--model", default=registry.DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "lab" / "results" / "refine_schedule.json"))
    a = p.parse_intermixed_args()
    torch.set_num_threads(a.threads)
    model = registry.load(a.model).model
    files = sorted(f for f in Path(a.data).rglob("*") if f.suffix.lower() in (".png", ".jpg", ".jpeg"))[:a.images]
    qualities = [int(q) for q in a.qualities.split(",")]
    cases = []  # (quality, original, layout, analysis, effort 0's curve, effort 0's point)
    for f in files:
        original = np.asarray(Image.open(f).convert("RGB"))
        layout = geometry.plan(original.shape[1], original.shape[0], model.downsampling)
        analysis = model.analyse(geometry.arrange(original, layout))
        for q in qualities:
            qs = sorted({min(100, max(1, q + d)) for d in (-15, -8, 0, 8, 15)})
            curve = {k: point(model, original, layout, model.compress_latent(analysis.latent, k), k) for k in qs}
            cases.append((q, original, layout, analysis, list(curve.values()), curve[q]))
    refine.refine(model, cases[0][3].image, cases[0][3].latent, qualities[0], refine.Schedule(steps=1))  # warm-up
    rows = []
    for text in a.variants:
        schedule = refine.Schedule(**json.loads(text))
        savings, costs, cpu = [], [], []
        for q, original, layout, analysis, curve, (b0, p0) in cases:
            start = time.process_time()
            y, z = refine.refine(model, analysis.image, analysis.latent, q, schedule)
            cpu.append(time.process_time() - start)
            b1, p1 = point(model, original, layout, model.compress_latent(y, q, z), q)
            savings.append(rate_saving(curve, b1, p1))
            lmbda = model.quality_lmbda(q)
            costs.append((b1 + lmbda * 255**2 * 10 ** (-p1 / 10)) / (b0 + lmbda * 255**2 * 10 ** (-p0 / 10)) - 1)
        rows.append({"schedule": asdict(schedule), "rate_saving_percent": 100 * statistics.mean(savings),
                     "rd_cost_change_percent": 100 * statistics.mean(costs), "cpu_s_per_image": statistics.mean(cpu),
                     "per_case_saving_percent": [round(100 * s, 2) for s in savings]})
        r = rows[-1]
        print(f"{text}: rate saving {r['rate_saving_percent']:+.2f}%, RD cost {r['rd_cost_change_percent']:+.2f}%, "
              f"{r['cpu_s_per_image']:.2f} CPU s per image", flush=True)
    print("\n| steps | lr | tau0 -> tau1 | noise | rate saving at equal PSNR | RD cost | CPU s per image |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["schedule"]
        print(f"| {s['steps']} | {s['lr']} | {s['tau0']} -> {s['tau1']} | {s['noise']} | "
              f"{r['rate_saving_percent']:+.2f}% | {r['rd_cost_change_percent']:+.2f}% | {r['cpu_s_per_image']:.2f} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"data": a.data, "images": [f.name for f in files], "qualities": qualities,
                                       "model": a.model, "weights": registry.load(a.model).weights_hash.hex(),
                                       "threads": a.threads, "variants": rows}, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
