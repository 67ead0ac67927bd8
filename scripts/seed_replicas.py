"""Seed replicas: the designs nic started from, trained as their documents describe and measured
the way those documents measure them.

    python scripts/seed_replicas.py --data TRAIN_DIR --kodak KODAK_DIR --out OUT [--steps-scale F]

For each config in configs/seed/ it trains a run (`nic train`, in a subprocess) into
OUT/<name>/run, exports it as the user model seed-<name> into OUT/models, and measures it on its
kind of data, made from Kodak:
- conv-ae-cifar: each image's centre square, shrunk to 32x32 (whole thumbnails, as CIFAR's);
- conv-ae-224: each image's centre square, shrunk to 224x224 (a whole scene, as ImageNet-sized
  inputs are);
- comcnn-grey: each image's grey centre 180x180 crop.
Each image is compressed with the replica through nic's real codec (`nic.compress`), at a few
qualities, and decoded (`nic.decompress`); then Pillow's JPEG (4:2:0) codes it at the same size:
the largest JPEG file not above the nic file (JPEG's smallest file when none fits, which is
counted). It prints one Markdown table (PSNR, SSIM, compression ratio = raw bytes / file bytes,
for nic and for JPEG at the same size, beside the document's claim) and writes
OUT/seed_replicas.json. Everything runs on at most 2 threads.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "seed"
THREADS = 2


@dataclass(frozen=True)
class Replica:
    name: str  # the config's stem; the exported model is seed-<name>
    kind: str  # how its test images are made from Kodak (see `prepare`)
    side: int
    qualities: tuple[int, ...]
    claim: str  # what the document reports
    init_from: str = ""  # another replica whose trained run this one starts from

    @property
    def config(self) -> Path:
        return CONFIGS / f"{self.name}.toml"

    @property
    def model(self) -> str:
        return f"seed-{self.name}"

    @property
    def grey(self) -> bool:
        return self.kind == "grey"


AE_CLAIM = "reports PSNR and SSIM against JPEG, and MSE (no figures to set beside these)"
REPLICAS = (
    Replica("conv-ae-cifar", "square", 32, (10, 50, 90), AE_CLAIM),
    Replica("conv-ae-224", "square", 224, (10, 50, 90), AE_CLAIM, init_from="conv-ae-cifar"),
    Replica("comcnn-grey", "grey", 180, (10, 50, 90),
            "BSD300: 24 dB against JPEG's 32.75 dB, SSIM 0.74 against 0.88: did not outperform JPEG"),
)


# ---- the test images ----

def centre_square(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    return rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def centre_crop(a: np.ndarray, side: int) -> np.ndarray:
    h, w = a.shape[:2]
    if min(h, w) < side:
        raise ValueError(f"a {w}x{h} image has no {side}x{side} centre crop")
    return a[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]


def prepare(rgb: np.ndarray, kind: str, side: int) -> np.ndarray:
    """One test image of a replica's kind: "square", the centre square shrunk (area average, as
    training's data.max_side shrinks) to side x side RGB; "grey", the grey (luma) centre crop of
    side x side, as (side, side) uint8."""
    if kind == "square":
        sq = centre_square(rgb)
        if sq.shape[0] == side:
            return sq.copy()
        return np.asarray(Image.fromarray(sq).resize((side, side), Image.Resampling.BOX))
    if kind == "grey":
        return np.asarray(Image.fromarray(centre_crop(rgb, side)).convert("L"))
    raise ValueError(f"unknown kind of test image {kind!r}")


def kodak_images(folder: Path) -> list[tuple[str, np.ndarray]]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not paths:
        raise SystemExit(f"{folder}: no PNG images")
    return [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


# ---- JPEG at the same size ----

def jpeg_bytes(pixels: np.ndarray, quality: int) -> bytes:
    """Pillow's baseline JPEG at `quality`: 4:2:0 for RGB, one plane for grey (H, W) pixels."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_decode(data: bytes, grey: bool) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L" if grey else "RGB")).copy()


def jpeg_at_size(pixels: np.ndarray, budget: int) -> tuple[int, bytes, bool]:
    """(quality, file, fits): the JPEG quality whose file is the largest not above `budget`
    bytes; where even quality 1 is larger, quality 1's file and fits = False."""
    from nic.sizing import largest_within

    quality, data = largest_within(lambda q: jpeg_bytes(pixels, q), range(1, 101), budget)
    return quality, data, len(data) <= budget


# ---- measuring ----

def measure(pixels: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    from nic.eval.metrics import psnr, ssim_rgb

    mse = float(np.mean((pixels.astype(np.float64) - decoded.astype(np.float64)) ** 2)) / 255.0**2
    return {"psnr": psnr(pixels, decoded), "ssim": ssim_rgb(pixels, decoded), "mse": mse}


def compare(pixels: np.ndarray, compress: Callable[[np.ndarray], bytes],
            decompress: Callable[[bytes], np.ndarray]) -> dict:
    """One image through a codec and through JPEG at the same size."""
    raw = pixels.size  # W * H * channels bytes
    data = compress(pixels)
    decoded = decompress(data)
    if decoded.shape != pixels.shape:
        raise RuntimeError(f"decoded {decoded.shape}, expected {pixels.shape}")
    quality, jpeg, fits = jpeg_at_size(pixels, len(data))
    grey = pixels.ndim == 2
    return {"pixels": pixels.shape[0] * pixels.shape[1], "raw_bytes": raw, "bytes": len(data),
            **measure(pixels, decoded),
            "jpeg": {"quality": quality, "bytes": len(jpeg), "fits": fits,
                     **measure(pixels, jpeg_decode(jpeg, grey))}}


def summarise(images: Sequence[dict]) -> dict:
    """Means over images: PSNR, SSIM and MSE per image, then averaged (as papers report);
    compression ratio = all raw bytes / all file bytes."""
    raw = sum(r["raw_bytes"] for r in images)
    jpeg = [r["jpeg"] for r in images]
    return {
        "images": len(images),
        "cr": raw / sum(r["bytes"] for r in images),
        "bpp": 8 * sum(r["bytes"] for r in images) / sum(r["pixels"] for r in images),
        **{k: float(np.mean([r[k] for r in images])) for k in ("psnr", "ssim", "mse")},
        "jpeg": {"cr": raw / sum(j["bytes"] for j in jpeg),
                 **{k: float(np.mean([j[k] for j in jpeg])) for k in ("psnr", "ssim", "mse")},
                 "over_budget": sum(not j["fits"] for j in jpeg)},
    }


def evaluate(replica: Replica, kodak: list[tuple[str, np.ndarray]]) -> list[dict]:
    import nic

    def decompress(data: bytes) -> np.ndarray:
        return np.asarray(nic.decompress(data).convert("L" if replica.grey else "RGB"))

    tests = [(name, prepare(rgb, replica.kind, replica.side)) for name, rgb in kodak]
    rows = []
    for q in replica.qualities:
        images = []
        for name, pixels in tests:
            r = compare(pixels, lambda p, q=q: nic.compress(p, quality=q, model=replica.model), decompress)
            images.append({"image": name, **r})
        rows.append({"quality": q, **summarise(images), "per_image": images})
    return rows


# ---- training and export ----

def steps_of(config: Path, scale: float) -> tuple[int, int]:
    from nic.train.config import resolve

    optim = resolve(config)["optim"]
    steps = max(1, round(optim["steps"] * scale))
    return steps, max(1, min(optim["warmup"], round(optim["warmup"] * scale)))


def train(replica: Replica, data: Path, out: Path, scale: float) -> dict:
    run = out / replica.name / "run"
    steps, warmup = steps_of(replica.config, scale)
    cmd = [sys.executable, "-m", "nic", "train", str(run), "--config", str(replica.config),
           "--data", str(data), "--quiet", "--steps", str(steps), "--set", f"optim.warmup={warmup}"]
    if replica.init_from:
        cmd += ["--set", f"run.init={out / replica.init_from / 'run'}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    t0, cpu0 = time.time(), _children_cpu()
    subprocess.run(cmd, check=True, env=env)
    return {"steps": steps, "train_s": round(time.time() - t0, 1), "train_cpu_s": round(_children_cpu() - cpu0, 1),
            "step_s": _step_seconds(run / "log.jsonl")}


def _children_cpu() -> float:
    """CPU seconds of finished subprocesses (a busy machine stretches wall time, not these)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _step_seconds(log: Path) -> float | None:
    """The run's own mean time per step (its last logged rate)."""
    rates = [r["steps_per_s"] for r in map(json.loads, log.read_text().splitlines()) if "steps_per_s" in r]
    return round(1 / rates[-1], 4) if rates else None


def export(replica: Replica, out: Path) -> None:
    from nic.train.export import export as export_run

    export_run(out / replica.name / "run", replica.model, out / "models", force=True,
               note=f"seed replica: {replica.config.relative_to(ROOT)}")


# ---- the table ----

def table(results: Sequence[dict]) -> str:
    lines = ["| replica | quality | CR | nic PSNR | nic SSIM | nic MSE | JPEG CR | JPEG PSNR | JPEG SSIM | "
             "document's claim |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes = False
    for res in results:
        for i, row in enumerate(res["rows"]):
            j = row["jpeg"]
            mark = f" ({j['over_budget']}/{row['images']} over)" if j["over_budget"] else ""
            notes |= bool(j["over_budget"])
            lines.append(f"| {res['replica']} ({res['data']}) | {row['quality']} | {row['cr']:.1f} | "
                         f"{row['psnr']:.2f} | {row['ssim']:.3f} | {row['mse']:.4f} | {j['cr']:.1f}{mark} | "
                         f"{j['psnr']:.2f} | {j['ssim']:.3f} | {res['claim'] if i == 0 else ''} |")
    text = "\n".join(lines)
    if notes:
        text += ("\n\n(N/M over): for N of the M images even JPEG quality 1 is larger than the nic file; "
                 "its quality-1 file is measured, so JPEG's CR there is below nic's.")
    return text


def describe(replica: Replica) -> str:
    if replica.kind == "grey":
        return f"Kodak, grey {replica.side}x{replica.side} centre crops"
    return f"Kodak, centre squares shrunk to {replica.side}x{replica.side}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="folder of training images")
    ap.add_argument("--kodak", required=True, type=Path, help="folder of the Kodak PNGs (evaluation only)")
    ap.add_argument("--out", required=True, type=Path, help="folder for runs, models and seed_replicas.json")
    ap.add_argument("--steps-scale", type=float, default=1.0,
                    help="multiply each config's step count (e.g. 0.05 for a quick check)")
    ap.add_argument("--only", nargs="+", choices=[r.name for r in REPLICAS], help="some of the replicas")
    args = ap.parse_args(argv)

    os.environ["NIC_MODEL_DIR"] = str((args.out / "models").resolve())  # before nic looks for models
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    import torch
    torch.set_num_threads(THREADS)

    t_start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    kodak = kodak_images(args.kodak)
    chosen = [r for r in REPLICAS if not args.only or r.name in args.only]
    results = []
    for replica in chosen:
        print(f"seed replica {replica.name}: training ({replica.config.relative_to(ROOT)})", flush=True)
        trained = train(replica, args.data, args.out, args.steps_scale)
        export(replica, args.out)
        t0, cpu0 = time.time(), time.process_time()
        rows = evaluate(replica, kodak)
        eval_s, eval_cpu_s = round(time.time() - t0, 1), round(time.process_time() - cpu0, 1)
        print(f"  {trained['steps']} steps in {trained['train_s']} s ({trained['train_cpu_s']} CPU s, "
              f"{trained['step_s']} s a step), measured in {eval_s} s ({eval_cpu_s} CPU s)", flush=True)
        results.append({"replica": replica.name, "model": replica.model, "data": describe(replica),
                        "config": str(replica.config.relative_to(ROOT)), "claim": replica.claim,
                        **trained, "eval_s": eval_s, "eval_cpu_s": eval_cpu_s, "rows": rows})
    total = round(time.time() - t_start, 1)
    report = {"steps_scale": args.steps_scale, "threads": THREADS, "total_s": total, "replicas": results}
    (args.out / "seed_replicas.json").write_text(json.dumps(report, indent=1) + "\n")
    print()
    print(table(results))
    print(f"\n{total:.0f} s in all; {args.out / 'seed_replicas.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
