"""Encoder effort (latent refinement): better files for the same decoder, deterministic, exact."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

import nic
from nic import codec, container, geometry, sizing
from nic.container import LATENT_SECTION, Header
from nic.errors import NicError
from nic.io import picture_from_array
from nic.models import registry
from nic.runtime import refine
from tests.conftest import run_nic

QUALITY = 50


def rd_cost(data: bytes, original: np.ndarray) -> float:
    """bpp of the real file + lambda * MSE of its exactly decoded pixels (the refined objective)."""
    decoded = np.asarray(nic.decompress(data, exact=True), dtype=np.float64)
    h, w = original.shape[:2]
    lmbda = registry.load(registry.DEFAULT_MODEL).model.quality_lmbda(QUALITY)
    return len(data) * 8 / (h * w) + lmbda * np.mean((decoded - original) ** 2)


def analysed(model: torch.nn.Module, rgb: np.ndarray):
    """The analysis that compress makes of an image (padded to the model's multiple)."""
    return model.analyse(geometry.arrange(rgb, geometry.plan(rgb.shape[1], rgb.shape[0], model.downsampling)))


def test_refinement_lowers_the_rd_cost(photo, capsys):
    plain = nic.compress(photo, quality=QUALITY)
    refined = codec.encode(picture_from_array(photo), QUALITY, effort=1, progress=True)
    bar = capsys.readouterr().err  # what a terminal shows
    assert f"refining q{QUALITY}" in bar and f"/{refine.SCHEDULES[1].steps}" in bar
    assert refined != plain
    assert rd_cost(refined, photo) < rd_cost(plain, photo)


def test_refinement_is_deterministic_for_a_seed(photo2):
    lm = registry.load(registry.DEFAULT_MODEL)
    analysis = analysed(lm.model, photo2)
    schedule = refine.Schedule(steps=6)
    runs = [refine.refine(lm.model, analysis.image, analysis.latent, QUALITY, schedule, seed=s) for s in (0, 0, 1)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])  # the seed drives the annealing's draws
    assert nic.compress(photo2, quality=QUALITY, effort=1) == nic.compress(photo2, quality=QUALITY, effort=1)


@pytest.mark.parametrize("effort", sorted(refine.SCHEDULES))
def test_every_effort_decodes_exactly(photo, effort):
    """Files of every effort decode with the unchanged exact decoder to the same pixels,
    whatever the thread count, and well."""
    tiny = photo[:48, :64]
    data = nic.compress(tiny, quality=QUALITY, effort=effort)
    old = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(np.asarray(nic.decompress(data, exact=True)))
    finally:
        torch.set_num_threads(old)
    assert np.array_equal(outs[0], outs[1])
    psnr = 10 * math.log10(255**2 / np.mean((outs[0].astype(np.float64) - tiny) ** 2))
    assert psnr > 25


def test_large_images_refine_tile_by_tile(photo, monkeypatch):
    """With one hyper-latent cell per tile, a 128x96 image is 2x2 tiles: every tile is refined
    and the whole still codes at a lower RD cost."""
    monkeypatch.setattr(refine, "TILE", 1)
    lm = registry.load(registry.DEFAULT_MODEL)
    analysis = analysed(lm.model, photo)
    y, z = refine.refine(lm.model, analysis.image, analysis.latent, QUALITY, refine.Schedule(steps=30))
    moved = (y - analysis.latent).abs().amax(dim=(0, 1))
    assert all(moved[4 * r:4 * r + 4, 4 * c:4 * c + 4].max() > 0 for r in range(2) for c in range(2))
    picture = picture_from_array(photo)
    header = Header(lm.name, lm.weights_hash, QUALITY, picture.width, picture.height, 3, False, 8, 1)
    tiled = container.pack(header, [(LATENT_SECTION, s) for s in lm.model.compress_latent(y, QUALITY, z)])
    assert rd_cost(tiled, photo) < rd_cost(nic.compress(photo, quality=QUALITY), photo)


def test_target_size_with_effort(photo):
    target = 0.9
    data = nic.compress(photo, bpp=target, effort=1)
    assert len(data) * 8 / (photo.shape[0] * photo.shape[1]) <= target
    assert container.unpack(data)[0].quality > 1
    assert np.asarray(nic.decompress(data)).shape == photo.shape


@pytest.mark.fast
def test_largest_near_finds_what_bisection_finds(photo):
    """The walk that --bpp uses above effort 0 lands on bisection's answer from any guess
    (JPEG's sizes stand in for a slow encoder)."""
    def jpeg(q: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "JPEG", quality=q)
        return buf.getvalue()

    qualities = list(range(5, 96, 10))
    for budget in (len(jpeg(5)) - 1, len(jpeg(50)), len(jpeg(95)) + 1):
        expected = sizing.largest_within(jpeg, qualities, budget)
        assert all(sizing.largest_near(jpeg, qualities, budget, g) == expected for g in range(len(qualities)))


def test_bad_effort_is_one_clear_line(tmp_path, photo):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    for bad in ("5", "high"):
        r = run_nic("compress", src, "-o", tmp_path / "out.nic", "--effort", bad)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [f"nic: error: effort must be one of 0, 1, 2, 3, 4, got '{bad}'"]
        assert not (tmp_path / "out.nic").exists()
    for bad in (7, -1, "1.5", 2.0, True, None):
        with pytest.raises(NicError, match="effort must be one of"):
            nic.compress(photo, effort=bad)
    with pytest.raises(NicError, match="no encoder refinement"):
        nic.compress(photo, model="conv-ae", effort=1)
    with pytest.raises(ValueError, match="effort must be one of"):
        Image.fromarray(photo).save(io.BytesIO(), "NIC", effort=True)


def test_cli_and_folders_take_effort(tmp_path, photo2):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo2).save(folder / "a.png")
    r = run_nic("compress", folder, "-o", tmp_path / "out", "--effort", "1", "-q", str(QUALITY))
    assert r.returncode == 0, r.stderr
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # as the folder's workers run: the encoder's floats depend on it
    try:
        expected = nic.compress(photo2, quality=QUALITY, effort=1)
    finally:
        torch.set_num_threads(old)
    assert (tmp_path / "out" / "a.nic").read_bytes() == expected
