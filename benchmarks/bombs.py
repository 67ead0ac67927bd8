"""Decompression bombs: the most decoding work a small file can cause, measured.

A valid .nic file can describe a large flat image in very few bytes: every latent symbol is
its table's most probable one, which costs a tiny fraction of a bit. For each model this
builds the smallest valid file for square images (those symbols, entropy coded; for `comcnn`
the JPEG of a flat image at quality 1), finds by bisection the largest square whose file is
under --budget bytes (1 KB) within the pixel limit, and decodes that file in a fresh process,
measuring wall time and peak memory. The files are real: `nic decompress` accepts them. A
retired model (`factorized`) is measured with its archived weights, whose files still decode.

    python benchmarks/bombs.py                               # at the default limit (2^26)
    python benchmarks/bombs.py --max-pixels 4194304          # at a lower NIC_MAX_PIXELS
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nic import container  # noqa: E402
from nic.container import LATENT_SECTION, Header  # noqa: E402
from nic.entropy import coder  # noqa: E402
from nic.models import registry  # noqa: E402
from nic.runtime import store  # noqa: E402

QUALITY = 1  # the coarsest quantizer: the most probable symbols are the likeliest


def _modes(models: coder.Models, index: np.ndarray) -> np.ndarray:
    """Each symbol's most probable value under its table."""
    t = models.tables
    best = np.array([t.offsets[k] + int(np.argmax(t.pmf(k)[:-1])) for k in range(len(t.lengths))], dtype=np.int64)
    return best[index]


def _bits(models: coder.Models) -> list[np.ndarray]:
    """Per table, the cost in bits of each in-range symbol."""
    t = models.tables
    return [-np.log2(t.pmf(k)[:-1]) for k in range(len(t.lengths))]


def cheapest_z(lm: registry.LoadedModel, sweeps: int = 2, reach: int = 12) -> np.ndarray:
    """The hyper-latent an attacker would pick for a flat bomb: one value per channel, chosen
    by coordinate descent to minimise its own bits plus those of the 16 y symbols under each
    z position (every y symbol then its table's cheapest value)."""
    m = lm.model
    z_bits, y_min = _bits(m.z_entropy.tables), np.array([b.min() for b in _bits(m.entropy.tables)])
    offsets = m.z_entropy.tables.tables.offsets
    z = np.array([offsets[c] + int(np.argmin(b)) for c, b in enumerate(z_bits)], dtype=np.int64)

    def cost(candidates: np.ndarray) -> np.ndarray:  # (B, N) constant z fields -> bits per z position
        field = torch.from_numpy(candidates)[:, :, None, None].expand(-1, -1, 4, 4)
        _, index = m.entropy.parameters(m.coding["h_s"](field), QUALITY)
        y = y_min[index[:, :, 6:10, 6:10].numpy()].sum(axis=(1, 2, 3))  # the centre: no border effects
        own = np.array([sum(z_bits[c][v - offsets[c]] for c, v in enumerate(row)) for row in candidates])
        return own + y

    best = cost(z[None])[0]
    for _ in range(sweeps):
        for c in range(len(z)):
            lo = max(offsets[c], z[c] - reach)
            hi = min(offsets[c] + len(z_bits[c]) - 1, z[c] + reach + 1)
            trial = np.repeat(z[None], hi - lo, axis=0)
            trial[:, c] = np.arange(lo, hi)
            costs = cost(trial)
            if costs.min() < best:
                best, z = float(costs.min()), trial[int(np.argmin(costs))]
    return z


def smallest_streams(lm: registry.LoadedModel, height: int, width: int, z_value: np.ndarray | None) -> list[bytes]:
    """The cheapest payload a model can decode for a padded height x width image."""
    m = lm.model
    if lm.name == "comcnn" or not hasattr(m, "decompress_latent"):
        buf = io.BytesIO()
        Image.new("RGB", (width // 2, height // 2), (128, 128, 128)).save(buf, format="JPEG", quality=QUALITY)
        return [buf.getvalue()]
    if hasattr(m, "z_entropy"):  # hyperprior: the attacker's z, then each y symbol its table's cheapest
        z_shape = (1, m.config["N"], height // 64, width // 64)
        z_sym = torch.from_numpy(np.broadcast_to(z_value[None, :, None, None], z_shape).copy())
        _, index = m.entropy.parameters(m.coding["h_s"](z_sym), QUALITY)
        y_sym = _modes(m.entropy.tables, index.numpy())
        return [m.z_entropy.encode(z_sym), coder.encode(y_sym, index.numpy(), m.entropy.tables)]
    shape = (1, m.y_density.channels, height // m.latent_stride, width // m.latent_stride)
    index = m._index(shape, QUALITY).numpy()
    return [coder.encode(_modes(m.coding["y"], index), index, m.coding["y"])]


def smallest_file(lm: registry.LoadedModel, side: int, z_value: np.ndarray | None) -> bytes:
    d = lm.model.downsampling
    padded = -(-side // d) * d
    header = Header(lm.name, lm.weights_hash, QUALITY, side, side)
    return container.pack(header, [(LATENT_SECTION, s) for s in smallest_streams(lm, padded, padded, z_value)])


def largest_bomb(lm: registry.LoadedModel, budget: int, limit: int) -> tuple[int, bytes]:
    """The largest square side (multiple of the model's downsampling) whose file is under
    budget and whose padded work the decoder accepts."""
    d = lm.model.downsampling
    z_value = cheapest_z(lm) if hasattr(lm.model, "z_entropy") else None
    lo, hi = 1, int((limit / lm.model.decode_cost) ** 0.5) // d
    if len(smallest_file(lm, lo * d, z_value)) >= budget:
        return 0, b""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(smallest_file(lm, mid * d, z_value)) < budget:
            lo = mid
        else:
            hi = mid - 1
    return lo * d, smallest_file(lm, lo * d, z_value)


def load_model(name: str) -> registry.LoadedModel:
    """A current model, or a retired one's archived weights: files made with them still decode,
    so they can still be bombs."""
    if name not in registry.RETIRED:
        return registry.load(name)
    (path,) = (store.WEIGHTS_DIR / store.ARCHIVE).glob(f"{name}-{'?' * 16}.safetensors")
    return registry.load(name, bytes.fromhex(path.stem[-16:]))


def decode_in_child(path: Path, limit: int) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of `nic decompress` on one file, in a fresh process."""
    out = path.with_suffix(".png")
    out.unlink(missing_ok=True)
    env = dict(os.environ, NIC_MAX_PIXELS=str(limit))
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "nic", "decompress", str(path),
                        "-o", str(out), "--force"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    out.unlink(missing_ok=True)
    status = "decoded" if r.returncode == 0 else r.stderr.strip().splitlines()[-1]
    return wall, int(r.stdout.strip().splitlines()[-1]) / 1024, status


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="hyperprior,factorized,conv-ae,comcnn")
    p.add_argument("--budget", type=int, default=1024, help="file size in bytes the bomb must stay under")
    p.add_argument("--max-pixels", type=int, default=1 << 26, help="NIC_MAX_PIXELS for the run (default 2^26)")
    p.add_argument("--work", default="bombs", help="folder for the bomb files")
    p.add_argument("--out", default=None, help="JSON (default benchmarks/results/bombs-<max-pixels>.json)")
    args = p.parse_args()
    os.environ["NIC_MAX_PIXELS"] = str(args.max_pixels)
    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        lm = load_model(name)
        side, data = largest_bomb(lm, args.budget, args.max_pixels)
        row = {"model": name, "side": side, "bytes": len(data)}
        if side:
            path = work / f"{name}-{side}.nic"
            path.write_bytes(data)
            row["decode_s"], row["peak_rss_mb"], row["status"] = decode_in_child(path, args.max_pixels)
            row["pixels_per_byte"] = round(side * side / len(data))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nfiles under {args.budget} B, NIC_MAX_PIXELS={args.max_pixels}")
    print("| model | largest image | file | decode time | peak memory | outcome |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["side"]:
            print(f"| {r['model']} | {r['side']}x{r['side']} | {r['bytes']} B | {r['decode_s']:.1f} s | "
                  f"{r['peak_rss_mb']:.0f} MB | {r['status']} |")
        else:
            print(f"| {r['model']} | none under {args.budget} B | | | | |")
    out = Path(args.out or f"benchmarks/results/bombs-{args.max_pixels}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"budget_bytes": args.budget, "max_pixels": args.max_pixels, "rows": rows,
                               "cpus": os.cpu_count(), "load_average": os.getloadavg()}, indent=2) + "\n")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
