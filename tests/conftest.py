"""Shared fixtures: small real photos shipped with the tests, a CLI runner, and the check that
keeps the `fast` tier (`make test-fast`) free of processes."""

from __future__ import annotations

import _posixsubprocess
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nic.models import registry

DATA = Path(__file__).parent / "data"
ASSETS = Path(__file__).parent.parent / "assets"
SHIPPED = registry.SHIPPED


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


def pytest_configure(config: pytest.Config) -> None:
    """The fast paths' precision, measured once per machine (runtime/precision.py), is
    remembered in a cache folder of the session's own, not the user's; the `nic` processes the
    tests start inherit it."""
    if "NIC_CACHE_DIR" not in os.environ:
        os.environ["NIC_CACHE_DIR"] = tempfile.mkdtemp(prefix="nic-cache-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop("NIC_CACHE_DIR"), ignore_errors=True))


def run_nic(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `nic` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "nic", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


# How Python starts a process: subprocess through Popen, multiprocessing's spawn through fork_exec,
# its fork start method and os.spawn* through os.fork. os.system is left alone: a test pickles it
# as the payload its unpickler must refuse.
SPAWNERS = [(subprocess, "Popen"), (_posixsubprocess, "fork_exec"), (os, "fork"), (os, "posix_spawn"),
            (os, "posix_spawnp")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """A test marked `fast` that starts a process fails: the tier stays quick by a check, not by care.
    The whole protocol is covered, so module-scoped fixtures set up for it count too."""
    if item.get_closest_marker("fast") is None:
        return (yield)

    def refuse(*args, **kwargs):
        raise AssertionError("a test marked fast started a process: drop its mark")

    with pytest.MonkeyPatch.context() as patch:
        for module, name in SPAWNERS:
            patch.setattr(module, name, refuse)
        return (yield)
