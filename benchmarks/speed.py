"""Encode / decode time and peak memory of nic (and classic codecs) on this CPU.

Each measurement runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is
its own; the import baseline is reported beside it. Prints a table, writes JSON.

    python benchmarks/speed.py                      # nic default model, 768x512
    python benchmarks/speed.py --sizes 768x512 2048x1536 6000x4000 --codecs nic jpeg webp avif
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "assets" / "kodim23.png"
CLASSIC_QUALITY = {"jpeg": 75, "webp": 75, "avif": 60, "jp2": 40, "jxl": 75, "heic": 60}


def test_image(width: int, height: int) -> np.ndarray:
    """A real photo at the requested size: the demo photo, resized (Lanczos) to fill it."""
    img = Image.open(SOURCE).convert("RGB")
    if (width > height) != (img.width > img.height):
        img = img.transpose(Image.Transpose.ROTATE_90)
    return np.asarray(img.resize((width, height), Image.Resampling.LANCZOS))


def worker(codec: str, path: str, op: str, repeat: int, quality: int, threads: int) -> dict:
    """Runs inside the subprocess: time `op` (encode or decode) and report peak memory."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from nic import codec as nic_codec
    from nic.eval import classic
    from nic.io import picture_from_array

    rgb = np.load(path)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if codec == "nic":
        pic = picture_from_array(rgb)
        nic_codec.resolve_model(None)  # load weights outside the timed region
        enc = lambda: nic_codec.encode(pic, quality)  # noqa: E731
        data = enc()
        dec = lambda: nic_codec.decode(data)  # noqa: E731
    else:
        q = CLASSIC_QUALITY[codec]
        enc = lambda: classic.encode(codec, rgb, q)  # noqa: E731
        data = enc()
        dec = lambda: classic.decode(data)  # noqa: E731
    fn = enc if op == "encode" else dec
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": min(times), "seconds_median": float(np.median(times)), "peak_rss_mb": peak / 1024,
            "baseline_rss_mb": baseline / 1024, "bytes": len(data),
            "bpp": len(data) * 8 / (rgb.shape[0] * rgb.shape[1])}


def main() -> None:
    from nic.quality import DEFAULT_QUALITY

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["768x512"])
    p.add_argument("--codecs", nargs="+", default=["nic"])
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="nic quality")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--out", default="benchmarks/results/speed.json")
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        codec, path, op, repeat, quality, threads = args.worker
        print(json.dumps(worker(codec, path, op, int(repeat), int(quality), int(threads))))
        return

    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            w, h = map(int, size.lower().split("x"))
            path = Path(tmp) / f"{size}.npy"
            np.save(path, test_image(w, h))
            repeat = args.repeat if w * h < 4_000_000 else 1
            for codec in args.codecs:
                row = {"codec": codec, "size": size}
                for op in ("encode", "decode"):
                    cmd = [sys.executable, __file__, "--worker", codec, str(path), op, str(repeat),
                           str(args.quality), str(args.threads)]
                    res = subprocess.run(cmd, capture_output=True, text=True)
                    if res.returncode != 0:
                        row[op] = {"error": res.stderr.strip().splitlines()[-1] if res.stderr else "failed"}
                    else:
                        row[op] = json.loads(res.stdout)
                rows.append(row)
                e, d = row["encode"], row["decode"]
                fmt = lambda r: (f"{r['seconds']:8.3f} s {r['peak_rss_mb']:8.0f} MB"  # noqa: E731
                                 if "seconds" in r else f"{r['error'][:30]:>22}")
                print(f"{codec:6} {size:>10}  bpp {e.get('bpp', float('nan')):6.3f}  encode {fmt(e)}  "
                      f"decode {fmt(d)}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version(),
            "threads": args.threads or "default", "note": "seconds = best of repeats; peak_rss_mb includes imports"}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
