"""The `nic-decode` wheel works on its own: build it (`make decoder-wheel`'s script), install it
into a fresh virtualenv without torch, decode every golden file of the exact models
(hyperprior, checkerboard, conv-ae, the retired factorized) with `nic-decode --exact` to the
golden pixels, a fresh file without `--exact` within the fast path's tolerance of nic's float32
decoder, refuse comcnn's in one line naming the extra, check its install is at most 1/5 of
nic's on disk; then add the extra (`nic-decode[comcnn]`, Pillow) and decode comcnn's golden
files within their tolerance.

Marked `wheel` (pip installs numpy, constriction and onnxruntime from its cache or the index):
`make wheel-test` runs it, in about a minute.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from PIL import Image

import nic
from nic_decode.decoder import DECODE_COST

from .conftest import DATA

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = DATA / "golden"
pytestmark = pytest.mark.wheel


def _run(*cmd: str | Path, cwd: Path, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 or not ok, f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def installed_size(dist: str) -> int:
    """Bytes on disk of `dist` and everything it requires, as installed here (pip's RECORD)."""
    seen, todo, total = set(), [dist], 0
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        d = md.distribution(name)
        total += sum(f.locate().stat().st_size for f in d.files or [] if f.locate().is_file())
        todo += [r.name for r in map(Requirement, d.requires or []) if not r.marker or r.marker.evaluate({"extra": ""})]
    return total


def nic_size() -> int:
    """nic's install with everything it requires; an editable one's package is this checkout's."""
    files = md.distribution("nic").files or []
    editable = not any(f.parts[:1] == ("nic",) for f in files)
    return installed_size("nic") + (_du(Path(nic.__file__).parent) if editable else 0)


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nic-decode-wheel-") as folder:
        yield Path(folder)


def test_decoder_wheel_installs_alone_and_decodes(scratch, photo, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    timings = {}
    start = time.perf_counter()
    _run(sys.executable, ROOT / "scripts/build_decoder_wheel.py", "--out", scratch / "dist", cwd=ROOT,
         env={**env, "PYTHONPATH": str(ROOT)})
    (wheel,) = (scratch / "dist").glob("nic_decode-*.whl")
    timings["build"] = time.perf_counter() - start

    start = time.perf_counter()
    venv = scratch / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=scratch, env=env)
    py, cli = venv / "bin/python", venv / "bin/nic-decode"
    _run(sys.executable, "-m", "pip", "--python", py, "install", "-q", wheel, cwd=scratch, env=env)
    timings["install"] = time.perf_counter() - start

    start = time.perf_counter()
    work = scratch / "work"
    work.mkdir()
    no_torch = _run(py, "-c", "import torch", cwd=work, env=env, ok=False)
    assert no_torch.returncode == 1 and "No module named 'torch'" in no_torch.stderr
    cases = json.loads((GOLDEN / "manifest.json").read_text())["files"]
    assert {c["model"] for c in cases} >= set(DECODE_COST)  # golden files of every architecture, all decoded
    float_only = [c for c in cases if c["max_abs_diff"]]
    assert {c["model"] for c in float_only} == {"comcnn"}
    for case in [c for c in cases if not c["max_abs_diff"]]:
        out = work / case["png"]
        _run(cli, GOLDEN / case["nic"], out, "--exact", cwd=work, env=env)
        with Image.open(out) as got, Image.open(GOLDEN / case["png"]) as want:
            assert got.mode == want.mode and np.array_equal(np.asarray(got), np.asarray(want)), case["nic"]

    monkeypatch.setenv("NIC_PRECISION", "float32")  # the fast path's graph is nic's float32 one
    fresh = nic.compress(Image.fromarray(photo), quality=75)
    (work / "fresh.nic").write_bytes(fresh)
    _run(cli, work / "fresh.nic", work / "fresh.png", cwd=work, env=env)
    with Image.open(work / "fresh.png") as img:
        fast = np.asarray(img).astype(int)
    nic_fast, exact = (np.asarray(nic.decompress(fresh, exact=e)).astype(int) for e in (False, True))
    assert np.abs(fast - nic_fast).max() <= 1
    assert not np.array_equal(fast, exact)  # the float g_s ran, not the exact fallback
    refused = _run(cli, GOLDEN / float_only[0]["nic"], work / "refused.png", cwd=work, env=env, ok=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "nic-decode[comcnn]" in refused.stderr
    assert not (work / "refused.png").exists()
    timings["use"] = time.perf_counter() - start

    site = next((venv / "lib").glob("python3*/site-packages"))
    ours, full = _du(site), nic_size()
    print(f"{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB; installed {ours / 1e6:.0f} MB "
          f"(nic with torch here: {full / 1e6:.0f} MB, {ours / full:.1%}); " +
          ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    assert ours * 5 <= full

    _run(sys.executable, "-m", "pip", "--python", py, "install", "-q", f"{wheel}[comcnn]", cwd=scratch, env=env)
    for case in float_only:
        out = work / case["png"]
        _run(cli, GOLDEN / case["nic"], out, cwd=work, env=env)
        with Image.open(out) as got, Image.open(GOLDEN / case["png"]) as want:
            diff = np.abs(np.asarray(got).astype(int) - np.asarray(want)).max()
            assert got.mode == want.mode and diff <= case["max_abs_diff"], case["nic"]
