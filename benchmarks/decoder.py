"""nic_decode (numpy + onnxruntime) against nic's torch decoder: decode time and peak memory,
at 768x512 and at 24 megapixels, in one run on one machine.

Each decoder runs in a fresh subprocess (its own ru_maxrss; this process loads no torch): the file
is decoded once (weights loaded, graphs built), then --repeat times (once above 4 megapixels);
the median of those is the time. The images are assets/kodim23.png resized to each size
(benchmarks/speed.py's test image), coded by nic at --quality. The exact decoders run only up to
--exact-max-pixels (at 24 MP they take minutes).
Threads: $OMP_NUM_THREADS for both (onnxruntime takes it as its thread count, as torch does).
`--decoder-python`: the interpreter of a virtualenv where the nic-decode wheel is installed
(`make decoder-wheel`): its fast path needs the graphs the wheel bundles (a checkout has none).
Prints a table, writes JSON.

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/decoder.py --decoder-python VENV/bin/python \
        [--sizes 768x512 6000x4000] [--quality 75]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from speed import BIG, test_image

ROOT = Path(__file__).resolve().parent.parent
DECODERS = {  # name -> (environment, statement decoding `data`)
    "nic": ({}, "nic.decompress(data)"),
    "nic float32": ({"NIC_PRECISION": "float32"}, "nic.decompress(data)"),
    "nic --exact": ({}, "nic.decompress(data, exact=True)"),
    "nic_decode": ({}, "nic_decode.decode(data, exact=False)"),
    "nic_decode --exact": ({}, "nic_decode.decode(data)"),
}
CHILD = """
import json, resource, statistics, sys, time
import {module}
data = open(sys.argv[1], 'rb').read()
{stmt}
runs = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); {stmt}; runs.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"median_s": statistics.median(runs), "peak_mb": peak}}))
"""


def cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        fields = {k.strip(): v for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
        return f"{fields['model name'].strip()} (model {fields['model'].strip()})"
    except (OSError, KeyError):
        return platform.processor()


def decode_all(path: Path, pixels: int, args: argparse.Namespace, tmp: str) -> dict:
    """Every decoder on one file: {name: {median_s, peak_mb}}."""
    results = {}
    for name, (env, stmt) in DECODERS.items():
        if "exact" in name and pixels > args.exact_max_pixels:
            continue
        code = CHILD.format(module=stmt.split(".")[0], stmt=f"px = {stmt}")
        ours = name.startswith("nic_decode")
        python, environ = (args.decoder_python, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}) \
            if ours else (sys.executable, os.environ)  # the other interpreter's own nic_decode, not this one's
        repeat = args.repeat if pixels < BIG else 1
        done = subprocess.run([python, "-c", code, str(path), str(repeat)], check=True,
                              capture_output=True, text=True, env={**environ, **env}, cwd=tmp)
        results[name] = json.loads(done.stdout)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["768x512", "6000x4000"])
    parser.add_argument("--quality", type=int, default=75)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--exact-max-pixels", type=int, default=BIG)
    parser.add_argument("--decoder-python", required=True)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decoder.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            w, h = map(int, size.lower().split("x"))
            png, path = Path(tmp) / f"{size}.png", Path(tmp) / f"{size}.nic"
            Image.fromarray(test_image(w, h)).save(png)
            # coded in a child too: a child starts with its parent's peak resident memory (Linux),
            # so this process must never load torch
            make = ("import sys, nic; from PIL import Image; open(sys.argv[3], 'wb').write("
                    "nic.compress(Image.open(sys.argv[1]), quality=int(sys.argv[2])))")
            subprocess.run([sys.executable, "-c", make, str(png), str(args.quality), str(path)], check=True)
            results = decode_all(path, w * h, args, tmp)
            for name, r in results.items():
                print(f"{size:>10} {name:20s} {r['median_s'] * 1000:9.0f} ms  {r['peak_mb']:6.0f} MB", flush=True)
            rows.append({"size": size, "bytes": path.stat().st_size, "results": results})
    out = {"cpu": cpu(), "threads": os.environ.get("OMP_NUM_THREADS", "all"), "image": "kodim23.png, resized",
           "quality": args.quality, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
