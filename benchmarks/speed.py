"""Encode / decode time and peak memory of nic (and classic codecs) on this CPU.

Each measurement runs in a fresh subprocess, so that its peak resident memory (ru_maxrss) is its
own and a decode starts as a user's does: from a file, in a process that has not encoded it.
Three times per codec and size:
  - encode / decode: in-process, model already loaded (imports and weights excluded); the
    median of --repeat runs (one run for images over 4 megapixels), the first run included;
  - first decode: the first of those runs (kernels compiled, buffers first touched);
  - cli: `nic compress` / `nic decompress` end to end, wall time of the whole command (Python
    start-up, imports, loading the weights, reading and writing the files: PNG out).
Codec `nic` decodes with the fast float synthesis (the default), `nic-exact` with --exact;
`nic:NAME` (or `nic-exact:NAME`) uses the model NAME instead of the default.
Prints a table, writes JSON.

    python benchmarks/speed.py                      # nic default model, 768x512
    python benchmarks/speed.py --sizes 768x512 2048x1536 6000x4000 --codecs nic nic-exact jpeg webp avif
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "assets" / "kodim23.png"
CLASSIC_QUALITY = {"jpeg": 75, "webp": 75, "avif": 60, "jp2": 40, "jxl": 75, "heic": 60}
BIG = 4_000_000  # pixels: above this, one run


def test_image(width: int, height: int) -> np.ndarray:
    """A real photo at the requested size: the demo photo, resized (Lanczos) to fill it."""
    img = Image.open(SOURCE).convert("RGB")
    if (width > height) != (img.width > img.height):
        img = img.transpose(Image.Transpose.ROTATE_90)
    return np.asarray(img.resize((width, height), Image.Resampling.LANCZOS))


def worker(codec: str, image: str, coded: str, op: str, repeat: int, quality: int, threads: int) -> dict:
    """Runs inside the subprocess: encode `image` into `coded`, or decode `coded`, `repeat`
    times; the time of each run and the peak memory."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from nic import codec as nic_codec
    from nic.eval import classic
    from nic.io import picture_from_array

    learned = codec.startswith("nic")
    exact = codec.partition(":")[0] == "nic-exact"
    if learned:
        model = nic_codec.resolve_model(codec.partition(":")[2] or None)  # loaded outside the timed region
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if op == "encode":
        rgb = np.load(image)
        pic = picture_from_array(rgb)
        fn = (lambda: nic_codec.encode(pic, quality, model)) if learned else \
            (lambda: classic.encode(codec, rgb, CLASSIC_QUALITY[codec]))
    else:
        data = Path(coded).read_bytes()
        fn = (lambda: nic_codec.decode(data, exact=exact)) if learned else \
            (lambda: classic.decode(data))
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    if op == "encode":
        Path(coded).write_bytes(out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds_median": float(np.median(times)), "seconds_min": min(times), "seconds_first": times[0],
            "runs": len(times), "peak_rss_mb": peak / 1024, "baseline_rss_mb": baseline / 1024}


def cli_seconds(codec: str, image: Path, coded: Path, op: str, threads: int) -> float:
    """Wall time of one `nic compress` / `nic decompress` command, start-up to exit."""
    out = coded.with_suffix(".png")
    kind, _, model = codec.partition(":")
    args = ["compress", str(image), "-o", str(coded)] + (["--model", model] if model else []) if op == "encode" \
        else ["decompress", str(coded), "-o", str(out)] + (["--exact"] if kind == "nic-exact" else [])
    env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nic", *args, "--force"], check=True, capture_output=True,
                   env={**os.environ, **env})
    return time.perf_counter() - t


def main() -> None:
    from nic.quality import DEFAULT_QUALITY

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["768x512"])
    p.add_argument("--codecs", nargs="+", default=["nic"])
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="nic quality")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--out", default="benchmarks/results/speed.json")
    p.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        codec, image, coded, op, repeat, quality, threads = args.worker
        print(json.dumps(worker(codec, image, coded, op, int(repeat), int(quality), int(threads))))
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            w, h = map(int, size.lower().split("x"))
            array, png = Path(tmp) / f"{size}.npy", Path(tmp) / f"{size}.png"
            np.save(array, test_image(w, h))
            Image.fromarray(np.load(array)).save(png)
            repeat = args.repeat if w * h < BIG else 1
            for codec in args.codecs:
                coded = Path(tmp) / f"{size}-{codec}.bin"
                row = {"codec": codec, "size": size}
                for op in ("encode", "decode"):
                    cmd = [sys.executable, __file__, "--worker", codec, str(array), str(coded), op, str(repeat),
                           str(args.quality), str(args.threads)]
                    res = subprocess.run(cmd, capture_output=True, text=True)
                    if res.returncode != 0:
                        row[op] = {"error": res.stderr.strip().splitlines()[-1] if res.stderr else "failed"}
                        continue
                    row[op] = json.loads(res.stdout)
                    if codec.startswith("nic"):
                        row[op]["cli_seconds"] = cli_seconds(codec, png, coded.with_suffix(".nic"), op, args.threads)
                row["bytes"] = coded.stat().st_size if coded.exists() else None
                row["bpp"] = row["bytes"] * 8 / (w * h) if row["bytes"] else None
                rows.append(row)
                print(format_row(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version(),
            "threads": args.threads or "default",
            "note": "seconds_median over runs (first included), model loaded beforehand; seconds_first: first "
                    "run in a fresh process; cli_seconds: the whole nic command; peak_rss_mb includes imports"}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


def format_row(row: dict) -> str:
    def cell(r: dict) -> str:
        if "error" in r:
            return f"{r['error'][:40]:>40}"
        cli = f"  cli {r['cli_seconds']:6.2f} s" if "cli_seconds" in r else ""
        return (f"{r['seconds_median']:8.3f} s (first {r['seconds_first']:.3f}){cli} {r['peak_rss_mb']:6.0f} MB")
    bpp = f"{row['bpp']:6.3f}" if row["bpp"] else "   nan"
    return f"{row['codec']:9} {row['size']:>10}  bpp {bpp}  encode {cell(row['encode'])}  decode {cell(row['decode'])}"


if __name__ == "__main__":
    main()
