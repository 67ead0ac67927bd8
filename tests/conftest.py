"""Shared fixtures: small real photos shipped with the tests, and a CLI runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).parent / "data"
ASSETS = Path(__file__).parent.parent / "assets"
SHIPPED = ["checkerboard", "hyperprior", "conv-ae", "comcnn"]  # factorized was retired (tests/test_weights_release.py)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 128x96 crop of a real photo (Kodak 5), RGB uint8."""
    return np.asarray(Image.open(DATA / "kodim05-crop.png").convert("RGB")).copy()


@pytest.fixture(scope="session")
def photo2() -> np.ndarray:
    """A 100x80 crop of another real photo (Kodak 23), RGB uint8."""
    return np.asarray(Image.open(DATA / "kodim23-crop.png").convert("RGB")).copy()


@pytest.fixture(scope="session")
def full_photo() -> np.ndarray:
    """The 768x512 demo photo (Kodak 23)."""
    return np.asarray(Image.open(ASSETS / "kodim23.png").convert("RGB")).copy()


def archived_weights_hash(model: str) -> bytes:
    """The hash of a retired model's archived weights: the one its golden file names."""
    cases = json.loads((DATA / "golden" / "manifest.json").read_text())["files"]
    (whash,) = {c["weights_hash"] for c in cases if c["model"] == model}
    return bytes.fromhex(whash)


def run_nic(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `nic` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "nic", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)
