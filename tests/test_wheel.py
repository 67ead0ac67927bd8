"""The wheel works outside the repository: build it, install it into a fresh virtualenv in a
temporary folder, and use it there: without extras (CLI round trip, models, the Pillow plugin;
`nic serve` and `nic eval` name their extra), then with them (eval, the page).

Slow (a minute or two, mostly installing torch and the dependencies from pip's cache or the
local index), so it is marked `wheel` and left out of `make test`; `make wheel-test` (which
`.ci/run` calls) runs it. Run it by hand with `pytest -m wheel tests/test_wheel.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nic
from nic.models import registry

from .conftest import DATA, SHIPPED
from .test_weights_release import MACHINE_PATH

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.wheel


def _run(*cmd: str | Path, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temporary folder for a 1 GB virtualenv: in memory (/dev/shm) when there is room, since
    writing and deleting torch's thousands of files on a slow disk takes longer than the rest."""
    shm = Path("/dev/shm")
    in_memory = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 4 << 30
    with tempfile.TemporaryDirectory(prefix="nic-wheel-", dir=shm if in_memory else None) as folder:
        yield Path(folder)


def build_wheel(scratch: Path, env: dict) -> Path:
    """`pip wheel . --no-deps` in a clean copy of the checkout: a stale build/ folder here could
    add files that no longer exist to the wheel."""
    source = scratch / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__",
                                                                 "results", "runs", "demo"))
    _run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", scratch / "dist", cwd=source, env=env)
    (wheel,) = (scratch / "dist").glob("nic-*.whl")
    return wheel


def test_the_wheel_names_no_folder_of_the_machine_that_built_it(scratch):
    """A path of the development machine in a shipped file (a card's data, a docstring, a
    weights file's metadata) means nothing on a user's machine: the wheel holds none."""
    wheel = build_wheel(scratch, {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")})
    found = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            data = z.read(name)
            if name.endswith(".safetensors"):  # its header: the tensors' index and the metadata
                text = data[8:8 + int.from_bytes(data[:8], "little")].decode()
            else:
                try:
                    text = data.decode()
                except UnicodeDecodeError:
                    continue  # an image: no path in it
            found |= {name: MACHINE_PATH.findall(text)} if MACHINE_PATH.search(text) else {}
    assert found == {}


def test_wheel_installs_and_works_outside_the_repository(scratch):
    assert not scratch.resolve().is_relative_to(ROOT)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    timings = {}

    start = time.perf_counter()
    wheel = build_wheel(scratch, env)
    timings["build"] = time.perf_counter() - start
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in SHIPPED:
        assert {f"nic/weights/{model}.safetensors", f"nic/weights/{model}.json"} <= names
    archived = {p.relative_to(ROOT).as_posix() for p in (ROOT / "nic/weights/archive").iterdir()}
    assert any(n.startswith("nic/weights/archive/factorized-") for n in archived) and archived <= names
    assert {"nic/serve/static/index.html", "nic/serve/static/app.js", "nic/serve/static/style.css",
            "nic/serve/samples/kodim23.png", "nic/pillow.py"} <= names
    with zipfile.ZipFile(wheel) as z:
        assert z.read("nic/serve/samples/kodim23.png") == (ROOT / "assets/kodim23.png").read_bytes()
        for weights in [*(f"nic/weights/{model}.safetensors" for model in SHIPPED), *sorted(archived)]:
            assert z.read(weights) == (ROOT / weights).read_bytes()

    start = time.perf_counter()
    venv = scratch / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=scratch, env=env)
    py, cli = venv / "bin/python", venv / "bin/nic"
    # this environment's pip installs into the new one; --no-compile: Python compiles what it imports
    # anyway, and byte-compiling all of torch ahead would triple the install's CPU time
    pip = (sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-compile")
    _run(*pip, "torch==2.13.0", cwd=scratch, env=env)  # the CPU build first, as `make` does
    _run(*pip, wheel, cwd=scratch, env=env)  # no extra yet: what `pip install nic` gives
    timings["install"] = time.perf_counter() - start

    start = time.perf_counter()
    work = scratch / "work"
    (work / "photos").mkdir(parents=True)
    shutil.copy(DATA / "kodim05-crop.png", work / "x.png")
    shutil.copy(DATA / "kodim23-crop.png", work / "photos" / "a.png")
    where = _run(py, "-c", "import nic; print(nic.__file__)", cwd=work, env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve())  # the installed copy, not this checkout

    _run(cli, "compress", "x.png", "-q", "60", cwd=work, env=env)
    _run(cli, "decompress", "x.nic", "-o", "back.png", cwd=work, env=env)
    data = (work / "x.nic").read_bytes()
    assert data == nic.compress(Image.open(DATA / "kodim05-crop.png"), quality=60)  # same weights, same bytes
    assert np.array_equal(np.asarray(Image.open(work / "back.png")), np.asarray(nic.decompress(data)))

    models = _run(cli, "models", cwd=work, env=env).stdout
    assert f"{registry.DEFAULT_MODEL} (default)" in models and all(model in models for model in SHIPPED)
    assert not [line for line in models.splitlines() if line.startswith("factorized")]  # retired: decode only
    assert str(venv.resolve()) in models and str(ROOT) not in models

    _run(py, "-c", "import nic; from PIL import Image; Image.open('x.nic').save('x-pillow.png')", cwd=work, env=env)
    assert np.array_equal(np.asarray(Image.open(work / "x-pillow.png")), np.asarray(Image.open(work / "back.png")))

    for command in (["serve"], ["eval", "photos", "--out", "results"]):  # each names its extra in one line
        done = subprocess.run([cli, *command], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.rstrip().endswith(f"pip install 'nic[{command[0]}]'"), done.stderr
    start_extras = time.perf_counter()
    _run(*pip, f"{wheel}[serve,eval]", cwd=scratch, env=env)
    timings["extras"] = time.perf_counter() - start_extras

    _run(cli, "eval", "photos", "--out", "results", "--models", "hyperprior:50", "--codecs", "jpeg",
         "--metrics", "psnr", "--jobs", "1", "--published", "none", cwd=work, env=env)
    assert (work / "results/report.html").is_file() and (work / "results/results.json").is_file()

    server = subprocess.Popen([cli, "serve", "--port", "0"], cwd=work, env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split()[2]
        with urllib.request.urlopen(url, timeout=30) as page, \
                urllib.request.urlopen(url + "static/app.js", timeout=30) as script:
            assert b"nic" in page.read() and b"swipe" in script.read()
    finally:
        server.terminate()
        server.wait(timeout=60)
    timings["use"] = time.perf_counter() - start - timings["extras"]
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB; " +
          ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
