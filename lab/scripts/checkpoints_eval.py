"""Shared by the training benchmarks: measure checkpoints with `nic eval`, from real files.

Each checkpoint (or exported .safetensors) becomes a temporary model; `nic eval` codes the
images at the given qualities beside Pillow's JPEG and returns its BD-rate tables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from nic.train.export import export


def held_out(run: Path) -> list[Path]:
    """The patches a run held out of training (`data.holdout`, its validation.txt)."""
    return [Path(line) for line in (run / "validation.txt").read_text().splitlines()]


def measure(points: dict[str, Path], files: list[Path], qualities: str, results: Path, jobs: int = 2) -> dict:
    """BD-rate tables {metric: {anchor: {test: {bd_rate, bd_quality}}}} for models named by
    `points` (name -> checkpoint .pt or exported .safetensors) and JPEG, on `files`."""
    with tempfile.TemporaryDirectory() as models, tempfile.TemporaryDirectory() as folder:
        for f in files:  # the images linked into a folder of their own
            (Path(folder) / f.name).symlink_to(f.resolve())
        for name, path in points.items():
            if path.suffix == ".safetensors":
                shutil.copy(path, Path(models) / f"{name}.safetensors")
            else:
                export(path, name, Path(models))
        spec = ",".join(f"{n}:{qualities}" for n in points)
        subprocess.run([sys.executable, "-m", "nic", "eval", folder, "--out", str(results), "--models", spec,
                        "--codecs", "jpeg", "--metrics", "psnr", "--published", "none", "--jobs", str(jobs)],
                       check=True, env=dict(os.environ, NIC_MODEL_DIR=models))
    return json.loads((results / "results.json").read_text())["bdrate"]
