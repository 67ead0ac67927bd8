"""nic_decode (numpy + onnxruntime) against nic's torch decoder: 768x512 decode time and peak memory.

Each decoder runs in a fresh subprocess (its own ru_maxrss; this process loads no torch): the file
is decoded once (weights loaded, graphs exported or compiled), then --repeat times; the median of
those is the time.
Threads: $OMP_NUM_THREADS for both (onnxruntime takes it as its thread count, as torch does).
`--decoder-python`: the interpreter of a virtualenv where the nic-decode wheel is installed
(`make decoder-wheel`): its fast path needs the graphs the wheel bundles (a checkout has none).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/decoder.py --decoder-python VENV/bin/python \
        [--image assets/kodim23.png] [--quality 75]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT / "assets/kodim23.png")
    parser.add_argument("--quality", type=int, default=75)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--decoder-python", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.nic"
        # coded in a child too: a child starts with its parent's peak resident memory (Linux), so
        # this process must never load torch
        make = ("import sys, nic; from PIL import Image; open(sys.argv[3], 'wb').write("
                "nic.compress(Image.open(sys.argv[1]).convert('RGB'), quality=int(sys.argv[2])))")
        subprocess.run([sys.executable, "-c", make, str(args.image), str(args.quality), str(path)], check=True)
        results = {}
        for name, (env, stmt) in DECODERS.items():
            code = CHILD.format(module=stmt.split(".")[0], stmt=f"px = {stmt}")
            ours = name.startswith("nic_decode")
            python, environ = (args.decoder_python, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}) \
                if ours else (sys.executable, os.environ)  # the other interpreter's own nic_decode, not this one's
            done = subprocess.run([python, "-c", code, str(path), str(args.repeat)], check=True,
                                  capture_output=True, text=True, env={**environ, **env}, cwd=tmp)
            results[name] = json.loads(done.stdout)
            print(f"{name:20s} {results[name]['median_s'] * 1000:7.0f} ms  {results[name]['peak_mb']:6.0f} MB")
    print(json.dumps({"cpu": cpu(), "threads": os.environ.get("OMP_NUM_THREADS", "all"), "image": args.image.name,
                      "quality": args.quality, "results": results}))


if __name__ == "__main__":
    main()
