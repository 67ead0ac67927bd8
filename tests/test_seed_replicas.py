"""The seed replicas (scripts/seed_replicas.py, configs/seed/): the configs are valid and train
the designs as their documents describe, grey training data is grey, JPEG is matched to a nic
file's size, and the command runs end to end on a tiny scale."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nic.models.registry import build
from nic.train.config import resolve
from nic.train.data import load_sources, to_grey

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"


def _script():
    spec = importlib.util.spec_from_file_location("seed_replicas", ROOT / "scripts" / "seed_replicas.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("seed_replicas", module)
    spec.loader.exec_module(module)
    return module


seed = _script()


@pytest.mark.fast
def test_every_replica_has_a_config_that_resolves_and_builds_its_model():
    assert sorted(p.stem for p in seed.CONFIGS.glob("*.toml")) == sorted(r.name for r in seed.REPLICAS)
    for replica in seed.REPLICAS:
        cfg = resolve(replica.config)
        model = build(**cfg["model"])
        assert cfg["data"]["crop"] % model.downsampling == 0
        # deterministic: a fixed seed, a fixed precision (no timing trial), a fixed step count
        assert cfg["run"]["seed"] == 0 and cfg["run"]["precision"] == "fp32" and cfg["optim"]["hours"] == 0
        assert cfg["run"]["threads"] <= 2 and cfg["optim"]["steps"] >= 1


@pytest.mark.fast
def test_the_configs_are_the_documents_designs():
    cifar, big, com = (resolve(seed.CONFIGS / f"{n}.toml") for n in ("conv-ae-cifar", "conv-ae-224", "comcnn-grey"))
    for cfg, side in ((cifar, 32), (big, 224)):
        m, d, o = cfg["model"], cfg["data"], cfg["optim"]
        assert m["architecture"] == "conv-ae" and (m["width"], m["latent"]) == (64, 16) and not m["rate_trained"]
        assert (m["step_max"], m["step_min"]) == (3.0, 0.12)
        assert d["crop"] == d["max_side"] == side and d["batch"] == 64  # whole images, shrunk
        assert o["lr"] == o["min_lr"] == 1e-3 and o["metric"] == "mse"  # Adam 1e-3, constant, MSE alone
    m, d = com["model"], com["data"]
    assert m["architecture"] == "comcnn" and not m["quality_input"] and m["rec_layers"] == 20
    assert d["grey"] and d["max_side"] == 180


@pytest.mark.fast
def test_grey_training_images_are_luma_in_three_equal_channels(tmp_path):
    shutil.copy(DATA / "kodim05-crop.png", tmp_path / "a.png")
    rgb, _ = load_sources([str(tmp_path)], max_side=512)
    grey, _ = load_sources([str(tmp_path)], max_side=512, grey=True)
    assert grey[0].shape == rgb[0].shape and grey[0].dtype == np.uint8
    assert (grey[0] == grey[0][:, :, :1]).all()
    np.testing.assert_array_equal(grey[0][:, :, 0], np.asarray(Image.fromarray(rgb[0]).convert("L")))
    np.testing.assert_array_equal(to_grey(rgb[0]), grey[0])
    assert resolve(None)["data"]["grey"] is False  # colour unless a config asks


@pytest.mark.fast
def test_test_images_of_each_kind(photo):
    assert seed.prepare(photo, "square", 32).shape == (32, 32, 3)
    assert seed.prepare(photo, "square", 96).shape == (96, 96, 3)  # 128x96: its centre square as it is
    grey = seed.prepare(photo, "grey", 64)
    assert grey.shape == (64, 64) and grey.dtype == np.uint8
    with pytest.raises(ValueError, match="centre crop"):
        seed.prepare(photo, "grey", 180)


@pytest.mark.fast
@pytest.mark.parametrize("grey", [False, True])
def test_jpeg_at_the_same_size_is_the_largest_jpeg_within_the_budget(photo, grey):
    pixels = np.asarray(Image.fromarray(photo).convert("L")) if grey else photo
    budget = len(seed.jpeg_bytes(pixels, 40)) + 30
    quality, data, fits = seed.jpeg_at_size(pixels, budget)
    assert fits and len(data) <= budget and data == seed.jpeg_bytes(pixels, quality)
    assert quality >= 40 and len(seed.jpeg_bytes(pixels, quality + 1)) > budget
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == ("L" if grey else "RGB")
    quality, data, fits = seed.jpeg_at_size(pixels, 10)  # smaller than any JPEG: quality 1, said so
    assert (quality, fits) == (1, False) and data == seed.jpeg_bytes(pixels, 1)


@pytest.mark.fast
def test_compare_and_the_table(photo):
    """With JPEG itself as the codec, JPEG at the same size is at least as good, and the
    compression ratio is raw bytes over file bytes."""
    def codec(p):
        return seed.jpeg_bytes(p, 50)

    r = seed.compare(photo, codec, lambda d: seed.jpeg_decode(d, False))
    assert r["raw_bytes"] == photo.size and r["bytes"] == len(codec(photo))
    assert r["jpeg"]["quality"] >= 50 and r["jpeg"]["psnr"] >= r["psnr"] - 1e-9
    row = {"quality": 50, **seed.summarise([{"image": "a", **r}])}
    assert row["cr"] == pytest.approx(photo.size / r["bytes"])
    assert row["bpp"] == pytest.approx(8 * r["bytes"] / (photo.shape[0] * photo.shape[1]))
    text = seed.table([{"replica": "x", "data": "d", "claim": "the claim", "rows": [row]}])
    assert "| x (d) | 50 |" in text and "the claim" in text and "over)" not in text


def test_the_command_trains_exports_and_measures_a_replica(tmp_path, monkeypatch):
    """End to end on a tiny scale: one step of the CIFAR replica on two photos, measured on them."""
    monkeypatch.setenv("NIC_MODEL_DIR", str(tmp_path / "elsewhere"))  # main sets it; this restores it
    threads = torch.get_num_threads()
    data, kodak = tmp_path / "train", tmp_path / "kodak"
    for d in (data, kodak):
        d.mkdir()
        for name in ("kodim05-crop.png", "kodim23-crop.png"):
            shutil.copy(DATA / name, d / name)
    out = tmp_path / "out"
    assert seed.main(["--data", str(data), "--kodak", str(kodak), "--out", str(out),
                      "--steps-scale", "0.001", "--only", "conv-ae-cifar"]) == 0
    torch.set_num_threads(threads)
    report = json.loads((out / "seed_replicas.json").read_text())
    (res,) = report["replicas"]
    assert res["replica"] == "conv-ae-cifar" and res["steps"] == 1
    assert [r["quality"] for r in res["rows"]] == list(seed.REPLICAS[0].qualities)
    for row in res["rows"]:
        assert row["images"] == 2 and row["cr"] > 1 and 0 < row["ssim"] <= 1
        assert all(img["pixels"] == 32 * 32 for img in row["per_image"])
