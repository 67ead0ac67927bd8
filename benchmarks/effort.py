"""What encoder effort buys: Kodak BD-rate of each `--effort` against effort 0, and its cost.

Every file is written by `nic compress IMAGE -q Q --effort E` and read back by `nic
decompress` in fresh processes (the real command line, bytes on disk, decoded pixels), one at
a time. Per effort: BD-rate and BD-PSNR of the mean curve (bpp and RGB PSNR averaged over
the images at each quality) against effort 0's, the same per image (median), and median
compress and decompress seconds (wall clock of the whole command, start-up included) and
compress CPU seconds. Every measured file is cached in `records.jsonl` in the work folder,
so an interrupted run measures only what is missing. Prints a table, writes JSON.

    python benchmarks/effort.py ../shared/data/kodak --efforts 0,1,2 --qualities 10,35,60,85
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
NIC = [sys.executable, "-m", "nic"]
sys.path.insert(0, str(ROOT))

from nic.eval.metrics import psnr  # noqa: E402


def _run(args: list[str], threads: int) -> tuple[float, float, float]:
    """Run a nic command; (wall seconds, CPU seconds, peak RSS in MB) of that process."""
    env = os.environ | {"PYTHONPATH": str(ROOT)} | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(NIC + args, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            err.seek(0)
            raise SystemExit(f"nic {' '.join(args)} failed: {err.read().decode().strip()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(image: Path, quality: int, effort: int, work: Path, threads: int) -> dict:
    """Compress and decompress one image through the CLI; what it cost and what it gave."""
    stem = work / f"e{effort}" / f"q{quality}" / image.stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    nic_file, png = stem.with_suffix(".nic"), stem.with_suffix(".png")
    enc_wall, enc_cpu, enc_rss = _run(["compress", str(image), "-o", str(nic_file), "-q", str(quality),
                              "--effort", str(effort), "--force"], threads)
    dec_wall, _, _ = _run(["decompress", str(nic_file), "-o", str(png), "--force"], threads)
    original = np.asarray(Image.open(image).convert("RGB"))
    decoded = np.asarray(Image.open(png).convert("RGB"))
    h, w = original.shape[:2]
    return {"image": image.name, "quality": quality, "effort": effort, "size": f"{w}x{h}",
            "bytes": nic_file.stat().st_size, "bpp": nic_file.stat().st_size * 8 / (w * h),
            "psnr": psnr(original, decoded), "encode_s": enc_wall, "encode_cpu_s": enc_cpu,
            "encode_peak_mb": enc_rss, "decode_s": dec_wall, "threads": threads or os.cpu_count()}


def summarize(records: list[dict], efforts: list[int], qualities: list[int]) -> dict:
    """Per effort, over the images measured at that effort and at effort 0 at every quality."""
    from nic.eval.bdrate import bd_quality, bd_rate

    def curve(effort: int, images: list[str]) -> tuple[list[float], list[float]]:
        rows = [[r for r in records if r["effort"] == effort and r["quality"] == q and r["image"] in images]
                for q in qualities]
        return [statistics.mean(r["bpp"] for r in rs) for rs in rows], \
               [statistics.mean(r["psnr"] for r in rs) for rs in rows]

    def complete(effort: int) -> set[str]:
        return {i for i in {r["image"] for r in records}
                if {r["quality"] for r in records if r["image"] == i and r["effort"] == effort} >= set(qualities)}

    out = {}
    for e in efforts:
        images = sorted(complete(e) & complete(0))
        if not images:
            continue
        mine = [r for r in records if r["effort"] == e and r["image"] in images]
        per_image = [bd_rate(*curve(0, [i]), *curve(e, [i])) for i in images]
        at_768 = [r for r in mine if r["size"] in ("768x512", "512x768")]
        out[e] = {
            "images": images,
            "bd_rate_percent": bd_rate(*curve(0, images), *curve(e, images)),
            "bd_psnr_db": bd_quality(*curve(0, images), *curve(e, images)),
            "median_image_bd_rate_percent": statistics.median(per_image),
            "images_with_gain": sum(v < 0 for v in per_image),
            "median_encode_s_768x512": statistics.median(r["encode_s"] for r in at_768) if at_768 else None,
            "median_encode_cpu_s_768x512": statistics.median(r["encode_cpu_s"] for r in at_768) if at_768 else None,
            "median_decode_s_768x512": statistics.median(r["decode_s"] for r in at_768) if at_768 else None,
            "max_encode_peak_mb": max(r["encode_peak_mb"] for r in mine),
            "curve": dict(zip(["bpp", "psnr"], curve(e, images), strict=True)),
        }
    return out


def _seconds(s: float | None) -> str:
    return "n/a" if s is None else f"{s:.2f} s"


def main() -> None:
    from nic.models import registry
    from nic.quality import EFFORTS
    from nic.runtime.refine import SCHEDULES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--efforts", default=",".join(map(str, EFFORTS)))
    p.add_argument("--qualities", default="10,35,60,85")
    p.add_argument("--images", default="", help="names without suffix, comma separated (default: all)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of each nic command (0: all cores)")
    p.add_argument("--work", default=str(ROOT / "results" / "effort"), help="files and records.jsonl")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "effort.json"))
    a = p.parse_args()
    efforts = sorted({0, *map(int, a.efforts.split(","))})
    qualities = [int(q) for q in a.qualities.split(",")]
    images = sorted(Path(a.data).glob("*.png"))
    if a.images:
        images = [i for i in images if i.stem in a.images.split(",")]
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "records.jsonl"
    # Only files made by these weights with today's schedules count; others are measured again.
    weights = registry.load(registry.DEFAULT_MODEL).weights_hash.hex()
    schedules = {e: asdict(SCHEDULES[e]) if e in SCHEDULES else None for e in EFFORTS}
    records = [r for r in map(json.loads, cache.read_text().splitlines()) if r["weights"] == weights
               and r["schedule"] == schedules[r["effort"]]] if cache.exists() else []
    done = {(r["image"], r["quality"], r["effort"]) for r in records}
    for image in images:  # image by image, so that a run cut short still compares whole images
        for e in efforts:
            for q in qualities:
                if (image.name, q, e) in done:
                    continue
                r = measure(image, q, e, work, a.threads) | {"weights": weights, "schedule": schedules[e]}
                records.append(r)
                with cache.open("a") as f:
                    f.write(json.dumps(r) + "\n")
                print(f"effort {e} {image.name} q{q}: {r['bpp']:.4f} bpp {r['psnr']:.2f} dB "
                      f"encode {r['encode_s']:.1f} s", flush=True)
    records = [r for r in records if r["quality"] in qualities]  # every image measured so far
    summary = summarize(records, sorted({r["effort"] for r in records}), qualities)
    print("\n| effort | steps per tile | images | BD-rate vs effort 0 | BD-PSNR | median per image | "
          "images with a gain | compress 768x512 (median) | CPU | decompress | compress peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for e, s in summary.items():
        steps = SCHEDULES[e].steps if e in SCHEDULES else 0
        print(f"| {e} | {steps} | {len(s['images'])} | {s['bd_rate_percent']:+.2f}% | {s['bd_psnr_db']:+.3f} dB | "
              f"{s['median_image_bd_rate_percent']:+.2f}% | {s['images_with_gain']} | "
              f"{_seconds(s['median_encode_s_768x512'])} | {_seconds(s['median_encode_cpu_s_768x512'])} | "
              f"{_seconds(s['median_decode_s_768x512'])} | {s['max_encode_peak_mb']:.0f} MB |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"qualities": qualities, "cpu": os.cpu_count(), "weights": weights,
                                       "schedules": schedules,
                                       "efforts": summary, "records": records}, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
