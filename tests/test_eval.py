"""`nic eval`: Bjøntegaard deltas checked by hand, and a small evaluation end to end through the CLI
whose artefacts all parse, whose cache is reused, and whose JPEG numbers match an independent run."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from nic.cli import main
from nic.eval import bdrate
from nic.eval.bdrate import bd_quality, bd_rate
from nic.eval.runner import parse_efforts, parse_models
from nic.models import registry
from nic.quality import STANDARD_QUALITIES
from tests.conftest import DATA, run_nic

RATES = [0.12, 0.25, 0.5, 0.9, 1.6]
PSNRS = [26.0, 28.9, 32.1, 35.0, 38.2]


@pytest.mark.fast
def test_bd_of_a_curve_against_itself_is_zero():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0, abs=1e-12)
    assert bd_quality(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0, abs=1e-12)


@pytest.mark.fast
def test_bd_rate_of_scaled_rates_and_bd_psnr_of_shifted_quality():
    assert bd_rate(RATES, PSNRS, [0.8 * r for r in RATES], PSNRS) == pytest.approx(-20, abs=1e-9)
    assert bd_rate([0.8 * r for r in RATES], PSNRS, RATES, PSNRS) == pytest.approx(25, abs=1e-9)
    assert bd_quality(RATES, PSNRS, RATES, [p + 1 for p in PSNRS]) == pytest.approx(1, abs=1e-9)


@pytest.mark.fast
def test_bd_of_crossing_curves_by_hand():
    # Anchor doubles its rate every 2 dB, test every 4 dB: log2 r = (p - 30)/2 - 2 and (p - 30)/4 - 1.
    # On the common PSNR interval [30, 36] the test spends 2^(1 - (p - 30)/4) times the bits: the mean
    # of the exponent is 1/4, so BD-rate = 2^0.25 - 1 = +18.92%. On the common rate interval,
    # log2 r in [-1, 1], the test has 2 log2 r dB more: mean 0. (Collinear points: PCHIP is the line.)
    anchor = ([0.25, 0.5, 1, 2], [30, 32, 34, 36])
    test = ([0.5, 1, 2], [30, 34, 38])
    assert bd_rate(*anchor, *test) == pytest.approx((2**0.25 - 1) * 100, abs=1e-9)
    assert bd_quality(*anchor, *test) == pytest.approx(0, abs=1e-9)
    assert bd_rate(*test, *anchor) == pytest.approx((2**-0.25 - 1) * 100, abs=1e-9)


@pytest.mark.fast
def test_pchip_slopes_and_exact_integral_by_hand():
    # y = x^2 at 0, 1, 2: secants 1 and 3; inner slope (3 + 3) / (3/1 + 3/3) = 1.5; ends by the
    # three-point formula: (3 - 3)/2 = 0 and (9 - 1)/2 = 4. Trapezoids with end-slope corrections:
    # (0 + 1)/2 - 1.5/12 + (1 + 4)/2 - 2.5/12 = 8/3.
    x, y = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 4.0])
    assert bdrate.pchip_slopes(x, y) == pytest.approx([0, 1.5, 4])
    assert bdrate.pchip_integral(x, y, 0, 2) == pytest.approx(8 / 3)
    t = np.linspace(0.3, 1.7, 200001)
    assert bdrate.pchip_integral(x, y, 0.3, 1.7) == pytest.approx(np.trapezoid(bdrate.pchip(x, y, t)[0], t), rel=1e-9)


@pytest.mark.fast
def test_bd_without_overlap_or_points_is_nan_and_dominated_points_are_ignored():
    assert math.isnan(bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS]))
    assert math.isnan(bd_quality(RATES, PSNRS, [r * 100 for r in RATES], PSNRS))
    assert math.isnan(bd_rate(RATES, PSNRS, [1.0], [30.0]))
    worse = (RATES + [1.0, 2.0], PSNRS + [30.0, math.nan])  # (1.0, 30 dB) is beaten by (0.9, 35 dB)
    assert bd_rate(RATES, PSNRS, *worse) == pytest.approx(0, abs=1e-12)


@pytest.mark.fast
def test_parse_models():
    assert parse_models("a:1,10,b,c:5") == {"a": (1, 10), "b": STANDARD_QUALITIES, "c": (5,)}
    assert parse_models("a:1,10,c:1,5,10") == {"a": (1, 10), "c": (1, 5, 10)}  # shared qualities kept
    assert parse_models(None) == {registry.DEFAULT_MODEL: STANDARD_QUALITIES}
    assert parse_models("none") == {}
    assert parse_efforts(None) == (0,) and parse_efforts("1,0,1") == (0, 1)


@pytest.mark.fast
@pytest.mark.parametrize("args, needle", [
    (["missing-folder"], "missing-folder: no such folder"),
    (["empty"], "empty: no images"),
    (["images", "--codecs", "jpeg,gif"], "unknown codec 'gif'"),
    (["images", "--metrics", "psnr,vmaf"], "unknown metric 'vmaf'"),
    (["images", "--models", "nosuchmodel:10"], "unknown model 'nosuchmodel'"),
    (["images", "--models", f"{registry.DEFAULT_MODEL}:0"], "quality must be"),
    (["images", "--models", f"{registry.DEFAULT_MODEL}:ten"], "quality 'ten' is not an integer"),
    (["images", "--models", "none", "--codecs", "none"], "nothing to evaluate"),
    (["images", "--jobs", "0"], "--jobs must be at least 1"),
    (["images", "--effort", "0,5"], "effort must be one of 0, 1, 2, 3, 4, got '5'"),
    (["images", "--models", "conv-ae", "--effort", "1"], "model 'conv-ae' has no encoder refinement above effort 0"),
    (["images", "--out", "file.txt"], "file.txt: exists and is not a folder"),
])
def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "file.txt").write_text("not a folder")
    shutil.copy(DATA / "kodim23-crop.png", tmp_path / "images")
    assert main(["eval", "--out", "res", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nic: error:") and needle in err[0], err
    assert not (tmp_path / "res").exists()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict:
    """One small evaluation through the real CLI, then a rerun after one image file was touched."""
    root = tmp_path_factory.mktemp("eval")
    shutil.copytree(DATA, root / "images")
    args = ["eval", "images", "--out", "res", "--codecs", "jpeg,webp", "--models", f"{registry.DEFAULT_MODEL}:10,60"]
    first = run_nic(*args, cwd=root)
    assert first.returncode == 0, first.stderr
    before = (root / "res" / "records.jsonl").read_text()
    st = (root / "images" / "kodim05-crop.png").stat()
    os.utime(root / "images" / "kodim05-crop.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = run_nic(*args, cwd=root)
    assert second.returncode == 0, second.stderr
    return {"out": root / "res", "images": root / "images", "first": first.stdout, "second": second.stdout,
            "before": before}


def test_eval_writes_every_artefact(evaluated):
    out = evaluated["out"]
    result = json.loads((out / "results.json").read_text())
    n = 2 * (2 + 9 + 9)  # images x (learned qualities + JPEG and WebP sweeps)
    assert len(result["records"]) == n and len(result["averages"]) == n // 2
    assert set(result["codecs"]) == {registry.DEFAULT_MODEL, "jpeg", "webp"}
    mean = [r for r in result["averages"] if r["codec"] == "webp" and r["param"] == 50][0]
    per_image = [r for r in result["records"] if r["codec"] == "webp" and r["param"] == 50]
    assert mean["psnr"] == pytest.approx(np.mean([r["psnr"] for r in per_image]))
    assert all(math.isfinite(r["psnr"]) and r["bpp"] > 0 for r in result["averages"])
    bd = result["bdrate"]
    assert bd["anchor"] == "jpeg" and bd["psnr"]["jpeg"]["webp"]["bd_rate"] < 0  # WebP beats JPEG
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n + n // 2 and sum(r["image"] == "mean" for r in rows) == n // 2
    for name in ("rd-psnr", "rd-msssim"):
        assert Image.open(out / f"{name}.png").size[0] > 500
        assert ET.parse(out / f"{name}.svg").getroot().tag.endswith("svg")
    md = (out / "bdrate.md").read_text()
    assert "| WebP |" in md and re.search(r"-\d+\.\d%", md)
    page = (out / "report.html").read_text()
    assert "src=\"http" not in page and "src='http" not in page
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert all(Image.open(io.BytesIO(base64.b64decode(b))).size[0] > 0 for b in embedded)
    shown = result["crops"]
    assert [s["image"] for s in shown] == ["kodim05-crop.png", "kodim23-crop.png"]
    for s in shown:
        original, ref, *others = s["tiles"]
        assert original["label"] == "original" and ref["bytes"] == s["budget"]
        assert all(t["bytes"] <= s["budget"] if "bytes" in t else "no setting fits" in t["setting"] for t in others)
        assert f"file {ref['bytes']} bytes" in page
    assert len(embedded) == 2 + sum(1 + sum("bytes" in t for t in s["tiles"][1:]) for s in shown)  # plots, crops


def test_rerun_reuses_finished_results(evaluated):
    assert "(0 reused, 40 measured)" in evaluated["first"]
    assert "(20 reused, 20 measured)" in evaluated["second"]  # only the touched image is measured again
    old = [json.loads(line) for line in evaluated["before"].splitlines()]
    new = [json.loads(line) for line in (evaluated["out"] / "records.jsonl").read_text().splitlines()]
    kept = [r for r in old if r["image"] == "kodim23-crop.png"]
    assert kept and all(r in new for r in kept)  # timings too: reused, not measured again
    assert len(new) == len(old) + 20


def test_jpeg_numbers_match_an_independent_encode(evaluated):
    result = json.loads((evaluated["out"] / "results.json").read_text())
    jpeg = [r for r in result["records"] if r["codec"] == "jpeg"]
    assert len(jpeg) == 18
    for r in jpeg:
        rgb = np.asarray(Image.open(evaluated["images"] / r["image"]).convert("RGB"))
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=r["param"], subsampling=2)
        assert r["bytes"] == len(buf.getvalue())
        assert r["bpp"] == len(buf.getvalue()) * 8 / (rgb.shape[0] * rgb.shape[1])
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        assert r["psnr"] == pytest.approx(_psnr(rgb, decoded), abs=0.01)


def test_missing_folder_through_the_real_command(tmp_path):
    r = run_nic("eval", "nowhere", "--out", "res", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == "nic: error: nowhere: no such folder"
    assert not (tmp_path / "res").exists()


def test_effort_curves_are_the_files_nic_compress_writes(tmp_path):
    """`--effort 0,1` gives one curve per effort, and each record is the file `nic compress`
    writes at that effort: bytes, then decoded PSNR, both at one thread as the eval workers run
    (the fast bf16 decoder's sums, and so its last bits, depend on the thread count).
    Quality 60's fine layer sits on quality 50's base, which the sweep coded as a file first."""
    import torch

    from nic import codec
    from nic.io import read_image

    (tmp_path / "images").mkdir()
    shutil.copy(DATA / "kodim23-crop.png", tmp_path / "images")
    name = registry.DEFAULT_MODEL
    r = run_nic("eval", "images", "--out", "res", "--models", f"{name}:50,60", "--effort", "0,1", "--codecs", "jpeg",
                "--metrics", "psnr", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "res" / "results.json").read_text())
    assert result["codecs"][f"{name}-effort1"]["label"] == f"nic {name}, effort 1"
    records = {(r["codec"], r["param"]): r for r in result["records"] if r["kind"] == "learned"}
    assert set(records) == {(curve, q) for curve in (name, f"{name}-effort1") for q in (50, 60)}
    picture = read_image(DATA / "kodim23-crop.png")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        files = {(curve, q): codec.encode(picture, q, name, effort)
                 for curve, effort in ((name, 0), (f"{name}-effort1", 1)) for q in (50, 60)}
        psnrs = {key: _psnr(picture.rgb, codec.decode(data).rgb) for key, data in files.items()}
    finally:
        torch.set_num_threads(threads)
    assert files[name, 60] != files[f"{name}-effort1", 60]
    for curve, data in files.items():
        assert records[curve]["bytes"] == len(data)
        assert records[curve]["psnr"] == pytest.approx(psnrs[curve], abs=1e-6)
    assert f"nic {name}, effort 1" in (tmp_path / "res" / "report.html").read_text()


def test_a_failing_image_is_recorded_and_the_run_goes_on(tmp_path):
    """A truncated PNG and a 1-pixel-wide image (too thin for MS-SSIM) fail; the other image is
    measured, the report is written with both failures in it, the averages leave them out, and
    the exit says so in one line. (Should the metrics learn thin images, use another failure.)"""
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(DATA / "kodim23-crop.png", images)
    whole = (DATA / "kodim05-crop.png").read_bytes()
    (images / "cut.png").write_bytes(whole[:len(whole) // 2])
    Image.open(DATA / "kodim05-crop.png").crop((0, 0, 1, 40)).save(images / "thin.png")
    r = run_nic("eval", "images", "--out", "res", "--models", "none", "--codecs", "jpeg", cwd=tmp_path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "2 image(s) failed" in r.stderr and "cut.png" in r.stderr and "internal error" not in r.stderr
    result = json.loads((tmp_path / "res" / "results.json").read_text())
    assert {f["image"] for f in result["failed"]} == {"cut.png", "thin.png"}
    assert "cannot read image" in next(f["error"] for f in result["failed"] if f["image"] == "cut.png")
    assert {r["image"] for r in result["records"]} == {"kodim23-crop.png"}
    assert all(a["images"] == 1 for a in result["averages"])
    page = (tmp_path / "res" / "report.html").read_text()
    assert "cut.png" in page and "thin.png" in page and "left out of every average" in page


@pytest.mark.fast
def test_committed_results_without_their_records_are_measured_again_into_place(tmp_path):
    """A fresh clone has results/kodak's results.json but not its records cache: the README's
    command must write there without --force; a folder of anything else still needs it."""
    from nic.errors import NicError
    from nic.eval.runner import _prepare
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.json").write_text("{}")
    (results / "rd-psnr.png").write_bytes(b"")
    _prepare(results, force=False)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.png").write_bytes(b"")
    with pytest.raises(NicError, match="holds other files"):
        _prepare(other, force=False)
