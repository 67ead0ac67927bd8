"""The long fuzz run: mutants of valid .nic files through the decoder, counted by outcome.

Allowed outcomes: a decoded image, or nic's own FormatError/NicError with a one-line message.
Anything else (another exception, or an empty or multi-line message), a decode over 5 s,
or memory growth over 1 GB is a failure.
Prints a table and writes JSON.

    python benchmarks/fuzz.py --count 100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzzing import mutate, outcome  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pixels", type=int, default=1 << 20, help="NIC_MAX_PIXELS during the run")
    p.add_argument("--out", default="benchmarks/results/fuzz.json")
    args = p.parse_args()
    os.environ["NIC_MAX_PIXELS"] = str(args.max_pixels)

    import torch
    from PIL import Image

    import nic

    torch.set_num_threads(1)
    photo = np.asarray(Image.open(ROOT / "tests" / "data" / "kodim05-crop.png").convert("RGB"))
    small = np.ascontiguousarray(photo[:40, :56])
    grey = small.mean(axis=2).astype(np.uint8)
    rgba = np.dstack([small, np.full(small.shape[:2], 200, np.uint8)])
    seeds = [nic.compress(small, quality=q) for q in (1, 30, 75, 100)] + [nic.compress(grey), nic.compress(rgba)]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = np.random.default_rng(args.seed)
    counts: Counter[str] = Counter()
    crashes: list[str] = []
    slowest = 0.0
    start = time.perf_counter()
    for i in range(args.count):
        data = mutate(seeds[i % len(seeds)], rng)
        t = time.perf_counter()
        try:
            counts[outcome(data)] += 1
        except Exception as e:  # the failures this run exists to find (bad messages included)
            counts["crash"] += 1
            if len(crashes) < 20:
                crashes.append(f"{type(e).__name__}: {e} | input {data[:48].hex()}")
        elapsed = time.perf_counter() - t
        slowest = max(slowest, elapsed)
        counts["over 5 s"] += elapsed > 5
        if (i + 1) % 10_000 == 0:
            print(f"{i + 1} inputs, {dict(counts)}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"inputs": args.count, "outcomes": dict(counts), "crashes": crashes,
              "slowest_s": round(slowest, 3), "memory_growth_mb": round(peak - baseline, 1),
              "max_pixels": args.max_pixels, "wall_s": round(time.perf_counter() - start, 1)}
    print(f"{'inputs':>16}: {args.count}")
    for k in ("decoded", "format error", "nic error", "crash", "over 5 s"):
        print(f"{k:>16}: {counts[k]}")
    print(f"{'slowest':>16}: {slowest:.3f} s")
    print(f"{'memory growth':>16}: {peak - baseline:.0f} MB (peak RSS {peak:.0f} MB)")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    sys.exit(1 if counts["crash"] or counts["over 5 s"] or peak - baseline > 1024 else 0)


if __name__ == "__main__":
    main()
