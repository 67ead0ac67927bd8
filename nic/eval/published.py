"""Other codecs' published Kodak results, drawn as reference curves beside our own measurements.

Read from a folder holding CompressAI's result files (`compressai-kodak/*.json`) and TensorFlow
Compression's aggregate curves (`tfc-kodak/{PSNR,MS-SSIM}_sRGB_RGB/*.txt`), given with
`nic eval --published` (default: `published` beside the data folder). Only a handful are used:
the milestones of learned compression that nic's architecture descends from or aims at, and the
two classic codecs they beat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nic.errors import NicError

# (id, label, file under the folder); MSE-optimised models, CompressAI's CPU runs
REFERENCES = (
    ("bmshj2018-factorized", "Ballé 2018 factorized prior [CompressAI]",
     "compressai-kodak/compressai-bmshj2018-factorized_mse_cpu.json"),
    ("bmshj2018-hyperprior", "Ballé 2018 scale hyperprior [CompressAI]",
     "compressai-kodak/compressai-bmshj2018-hyperprior_mse_cpu.json"),
    ("mbt2018-mean", "Minnen 2018 mean-scale hyperprior [CompressAI]",
     "compressai-kodak/compressai-mbt2018-mean_mse_cpu.json"),
    ("minnen2018-no-context", "Minnen 2018 mean-scale hyperprior [TFC, authors]",
     "tfc-kodak/PSNR_sRGB_RGB/minnen-2018-neurips-no-context.txt"),
    ("mbt2018", "Minnen 2018 + context model [CompressAI]", "compressai-kodak/compressai-mbt2018_mse_cpu.json"),
    ("cheng2020-anchor", "Cheng 2020 anchor [CompressAI]", "compressai-kodak/compressai-cheng2020-anchor_mse_cpu.json"),
    ("bpg444", "BPG 4:4:4 (HEVC) [CompressAI]", "compressai-kodak/bpg_444_x265_ycbcr.json"),
    ("vtm", "VTM (VVC intra) [CompressAI]", "compressai-kodak/vtm.json"),
)
KODAK = {f"kodim{i:02d}.png" for i in range(1, 25)}


@dataclass
class Curve:
    """One published curve: per metric ("psnr", "msssim"), mean bpp and mean quality per point."""

    label: str
    source: str
    points: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)


def looks_like_kodak(images: list[Path]) -> bool:
    """Published Kodak numbers are means over all 24 images, so only the full set compares."""
    return {p.name for p in images} == KODAK


def _tfc(path: Path) -> tuple[list[float], list[float]]:
    rows = [line.split(",") for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [float(r[0]) for r in rows], [float(r[1]) for r in rows]


def _read(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    if path.suffix == ".json":
        results = json.loads(path.read_text())["results"]
        return {metric: (results["bpp"], results[key])
                for metric, key in (("psnr", "psnr-rgb"), ("msssim", "ms-ssim-rgb")) if key in results}
    points = {"psnr": _tfc(path)}
    other = path.parent.parent / "MS-SSIM_sRGB_RGB" / path.name
    if other.is_file():
        points["msssim"] = _tfc(other)
    return points


def load(folder: Path) -> dict[str, Curve]:
    """The reference curves found in `folder` (missing files are skipped: a partial copy still works)."""
    if not folder.is_dir():
        raise NicError(f"{folder}: no such folder of published results")
    curves = {}
    for key, label, rel in REFERENCES:
        path = folder / rel
        if path.is_file():
            try:
                curves[key] = Curve(label, rel, _read(path))
            except (OSError, ValueError, KeyError, IndexError) as e:
                raise NicError(f"{path}: cannot read published results ({e})") from None
    return curves
