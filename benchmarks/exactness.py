"""Encode with one configuration, decode exactly with others, compare the pixels bit for bit.

Over a folder (Kodak by default): every image is encoded twice, with the float parts of the
encoder (g_a, h_a) in bfloat16 and in float32, the two precisions nic's encoder runs in (files
may differ); each file is then decoded with --exact in fresh processes with 1 and 2 torch
threads and with float64 as torch's default dtype. The exact decoder is integer arithmetic
throughout, so every decode of a file must give identical pixels. Prints a table, writes JSON.

    python benchmarks/exactness.py ../shared/data/kodak --quality 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("bfloat16", "float32")  # of the encoder
DECODERS = {"threads=1": ["1", "float32"], "threads=2": ["2", "float32"], "threads=2,float64": ["2", "float64"]}


def decode_worker(threads: int, dtype: str, files: list[str]) -> dict[str, str]:
    """In a fresh process: decode each file, return the SHA-256 of its pixels."""
    import torch

    torch.set_num_threads(threads)
    torch.set_default_dtype(getattr(torch, dtype))
    import nic

    return {f: hashlib.sha256(np.asarray(nic.decompress(Path(f).read_bytes(), exact=True)).tobytes()).hexdigest()
            for f in files}


def encode_all(images: list[Path], out: Path, quality: int) -> list[Path]:
    from PIL import Image

    import nic

    files = []
    for precision in PRECISIONS:
        os.environ["NIC_PRECISION"] = precision  # read by nic at each encode
        for img in images:
            path = out / f"{img.stem}-{precision}.nic"
            path.write_bytes(nic.compress(Image.open(img), quality=quality))
            files.append(path)
    del os.environ["NIC_PRECISION"]
    return files


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", nargs="?", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--quality", type=int, default=50)
    p.add_argument("--out", default="benchmarks/results/exactness.json")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        threads, dtype, *files = args.worker
        print(json.dumps(decode_worker(int(threads), dtype, files)))
        return
    images = sorted(Path(args.folder).glob("*.png"))
    with tempfile.TemporaryDirectory() as tmp:
        files = [str(f) for f in encode_all(images, Path(tmp), args.quality)]
        per_precision = len(images)
        encoders_differ = sum(Path(a).read_bytes() != Path(b).read_bytes()
                              for a, b in zip(files[:per_precision], files[per_precision:], strict=True))
        hashes = {}
        for name, (threads, dtype) in DECODERS.items():
            res = subprocess.run([sys.executable, __file__, "--worker", threads, dtype, *files],
                                 capture_output=True, text=True, check=True)
            hashes[name] = json.loads(res.stdout)
    names = list(DECODERS)
    mismatched = {f: [n for n in names if hashes[n][f] != hashes[names[0]][f]] for f in files}
    bad = sum(bool(v) for v in mismatched.values())
    print(f"{len(images)} images x {len(PRECISIONS)} encoder precisions = {len(files)} files, "
          f"each decoded exactly {len(names)} ways; the two encoders made different files for "
          f"{encoders_differ}/{len(images)} images")
    for n in names:
        same = sum(hashes[n][f] == hashes[names[0]][f] for f in files)
        print(f"  {n:>20}: {same}/{len(files)} files identical to {names[0]}")
    print(f"files with any mismatching pixel: {bad}")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": len(images), "files": len(files), "encoder_precisions": PRECISIONS,
                               "decoders": DECODERS,
                               "quality": args.quality, "files_with_mismatch": bad,
                               "images_where_encoder_precisions_made_different_files": encoders_differ,
                               "note": "no GPU on this machine: CPU vs CUDA not run"}, indent=2) + "\n")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
