"""The long fuzz run: mutants of valid .nic files through the decoder, counted by outcome.

Allowed outcomes: a decoded image, or nic's own FormatError/NicError with a one-line message.
Anything else (another exception, or an empty or multi-line message), a decode over 5 s,
memory growth over 1 GB, or a decoded mutant whose section was cut short or emptied (those
must be format errors) is a failure. The run is repeated at each pixel limit given: the real
default (2^26) and a reduced one. For every decoded mutant it also records the work asked of
the decoder per byte of file (pixels and seconds), and reports the worst.
Prints a table and writes JSON.

    python benchmarks/fuzz.py --count 100000
    python benchmarks/fuzz.py --count 100000 --decoder nic-decode --out benchmarks/results/fuzz-nic-decode.json
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

from tests.fuzzing import mutate, outcome, with_metadata  # noqa: E402

HANG_S = 5.0


def seeds() -> list[bytes]:
    """Valid files of the default model: several qualities, grey, alpha, metadata (EXIF, XMP)."""
    from PIL import Image

    import nic

    photo = np.asarray(Image.open(ROOT / "tests" / "data" / "kodim05-crop.png").convert("RGB"))
    small = np.ascontiguousarray(photo[:40, :56])
    grey = small.mean(axis=2).astype(np.uint8)
    rgba = np.dstack([small, np.full(small.shape[:2], 200, np.uint8)])
    return [nic.compress(small, quality=q) for q in (1, 30, 75, 100)] + [nic.compress(grey), nic.compress(rgba),
                                                                         nic.compress(with_metadata(small))]


def run(count: int, limit: int, seed: int, files: list[bytes], decoder: str) -> dict:
    """`count` mutants decoded by `decoder` under NIC_MAX_PIXELS=limit."""
    from nic import container

    os.environ["NIC_MAX_PIXELS"] = str(limit)
    rng = np.random.default_rng(seed)
    counts: Counter[str] = Counter()
    crashes: list[str] = []
    slowest, worst_pixels, worst_seconds = 0.0, (0.0, ""), (0.0, "")
    for i in range(count):
        mutant = mutate(files[i % len(files)], rng)
        t = time.perf_counter()
        try:
            result = outcome(mutant.data, decoder)
        except Exception as e:  # the failures this run exists to find (bad messages included)
            result = "crash"
            if len(crashes) < 20:
                crashes.append(f"{type(e).__name__}: {e} | {mutant.kind} | input {mutant.data[:48].hex()}")
        elapsed = time.perf_counter() - t
        slowest = max(slowest, elapsed)
        counts[result] += 1
        counts["over 5 s"] += elapsed > HANG_S
        if result == "decoded":
            if mutant.must_fail:
                counts["decoded, must not"] += 1
                if len(crashes) < 20:
                    crashes.append(f"decoded a {mutant.kind}: input {mutant.data[:48].hex()}")
            h = container.unpack(mutant.data)[0]
            pixels, kb = h.width * h.height, len(mutant.data) / 1024
            worst_pixels = max(worst_pixels, (pixels / len(mutant.data), f"{h.width}x{h.height} in "
                                              f"{len(mutant.data)} B"))
            worst_seconds = max(worst_seconds, (elapsed / kb, f"{elapsed:.3f} s for {len(mutant.data)} B"))
        counts[f"kind {mutant.kind}"] += 1
        if (i + 1) % 10_000 == 0:
            print(f"  limit {limit}: {i + 1} inputs, {dict((k, v) for k, v in counts.items() if 'kind' not in k)}",
                  flush=True)
    return {"inputs": count, "max_pixels": limit,
            "outcomes": {k: v for k, v in counts.items() if not k.startswith("kind ")},
            "mutants_by_kind": {k[5:]: v for k, v in counts.items() if k.startswith("kind ")},
            "crashes": crashes, "slowest_s": round(slowest, 3),
            "worst_pixels_per_byte": round(worst_pixels[0], 1), "worst_pixels_per_byte_file": worst_pixels[1],
            "worst_seconds_per_kb": round(worst_seconds[0], 4), "worst_seconds_per_kb_file": worst_seconds[1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=100_000, help="mutants in all, shared by the limits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limits", default=f"{1 << 26},{1 << 20}",
                   help="NIC_MAX_PIXELS values to run at (default: the real default 2^26, and 2^20)")
    p.add_argument("--decoder", choices=("nic", "nic-decode"), default="nic",
                   help="nic's decoder (its default path), or the torch-free nic_decode (exact)")
    p.add_argument("--out", default="benchmarks/results/fuzz.json")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    files = seeds()
    limits = [int(v) for v in args.limits.split(",")]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    runs = [run(args.count // len(limits), limit, args.seed + i, files, args.decoder)
            for i, limit in enumerate(limits)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"decoder": args.decoder, "inputs": sum(r["inputs"] for r in runs), "runs": runs,
              "memory_growth_mb": round(peak - baseline, 1),
              "wall_s": round(time.perf_counter() - start, 1)}
    keys = ("decoded", "decoded, must not", "format error", "nic error", "crash", "over 5 s")
    print(f"{'NIC_MAX_PIXELS':>20}: " + "".join(f"{r['max_pixels']:>14}" for r in runs))
    print(f"{'inputs':>20}: " + "".join(f"{r['inputs']:>14}" for r in runs))
    for k in keys:
        print(f"{k:>20}: " + "".join(f"{r['outcomes'].get(k, 0):>14}" for r in runs))
    print(f"{'slowest (s)':>20}: " + "".join(f"{r['slowest_s']:>14.3f}" for r in runs))
    print(f"{'worst pixels/byte':>20}: " + "".join(f"{r['worst_pixels_per_byte']:>14.1f}" for r in runs))
    print(f"{'worst s/KB':>20}: " + "".join(f"{r['worst_seconds_per_kb']:>14.4f}" for r in runs))
    print(f"{'memory growth':>20}: {peak - baseline:.0f} MB (peak RSS {peak:.0f} MB)")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    bad = any(r["outcomes"].get(k, 0) for r in runs for k in ("crash", "over 5 s", "decoded, must not"))
    sys.exit(1 if bad or peak - baseline > 1024 else 0)


if __name__ == "__main__":
    main()
