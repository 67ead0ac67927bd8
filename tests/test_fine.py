"""The fine layer (nic/fine.py): the top qualities, their bytes, their bound, their errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import nic
from nic import container, fine
from nic.container import FINE_SECTION, LATENT_SECTION
from nic.entropy import coder
from nic.entropy.laplace import SCALE_LEVELS, laplace_tables
from nic.errors import FormatError
from nic.eval.metrics import psnr
from nic.quality import FINE_FROM
from nic.runtime import tiling
from tests.conftest import DATA


@pytest.mark.fast
def test_laplace_tables_never_change():
    """The decoder builds these tables itself: a changed count would break every file with a
    fine layer, so their digest is pinned (the golden files check the same from outside)."""
    t = laplace_tables()
    assert len(t.lengths) == SCALE_LEVELS
    for k in range(SCALE_LEVELS):
        counts = t.counts[t.starts[k]:t.starts[k] + t.lengths[k]]
        assert counts.sum() == 1 << 24 and counts.min() >= 1
        body = counts[:-1]
        assert np.argmax(body) == -t.offsets[k]  # peaked at zero
    assert hashlib.sha256(t.counts.tobytes()).hexdigest()[:16] == "e8ca10b55091374c"


def test_top_qualities_climb_past_38_db(full_photo):
    sizes, quality = [], []
    for q in (50, 60, 75, 90, 100):
        data = nic.compress(full_photo, quality=q)
        sizes.append(len(data))
        quality.append(psnr(full_photo, np.asarray(nic.decompress(data))))
    assert sizes == sorted(sizes) and quality == sorted(quality)
    assert quality[-1] >= 38 and quality[-1] - quality[0] > 3


@pytest.mark.fast
def test_only_qualities_above_fine_from_carry_a_layer(photo):
    for q, version, fines in ((FINE_FROM, 2, 0), (FINE_FROM + 1, 3, 1), (100, 3, 1)):
        header, sections = container.unpack(nic.compress(photo, quality=q))
        assert header.version == version and header.quality == q
        assert sum(kind == FINE_SECTION for kind, _ in sections) == fines
    assert container.unpack(nic.compress(photo, quality=100, model="conv-ae"))[0].version == 2


@pytest.mark.fast
def test_fine_layer_improves_the_picture_and_its_inverse_dct_is_exact(photo):
    base = np.asarray(nic.decompress(nic.compress(photo, quality=FINE_FROM)))
    for q in (60, 100):
        out = fine.decode(fine.encode(photo, base, fine.plan(q, FINE_FROM)), base)
        assert psnr(photo, out) > psnr(photo, base) + 1
    # The integer inverse DCT against the same product in float64, on large random
    # coefficients: rounded correctly, nothing overflows.
    rng = np.random.default_rng(0)
    c16 = rng.integers(-2000, 2001, size=(3, 4, 6, fine.FREQ, fine.FREQ)) * 16
    exact = fine._residual(c16)
    planes = (fine._DCT_INT.T / 2**15) @ (c16 / 16.0) @ (fine._DCT_INT / 2**15)
    rgb = fine._inv(torch.from_numpy(planes)).numpy().transpose(0, 2, 1, 3, 4).reshape(32, 48, 3)
    assert np.abs(exact - rgb).max() <= 0.5 + 1e-3


@pytest.mark.fast
def test_dct_table_is_the_orthonormal_dct():
    k = np.arange(fine.FREQ)
    dct = np.sqrt(2 / 8) * np.cos(np.pi * np.outer(k, 2 * k + 1) / 16)
    dct[0] /= np.sqrt(2)
    assert np.array_equal(fine._DCT_INT, np.round(dct * 2**15).astype(np.int64))


def test_large_images_are_cut_into_bands(monkeypatch, full_photo):
    monkeypatch.setattr(fine, "BAND_PIXELS", 128 * 768)
    data = nic.compress(full_photo, quality=80)
    sections = container.unpack(data)[1]
    assert sum(kind == FINE_SECTION for kind, _ in sections) == 4
    whole = np.asarray(nic.decompress(data, exact=True))
    monkeypatch.setattr(fine, "BAND_PIXELS", 1 << 20)  # the decoder must agree on the bands
    with pytest.raises(FormatError, match="fine sections"):
        nic.decompress(data)
    assert psnr(full_photo, whole) > 35


def _with_fine(data: bytes, edit) -> bytes:
    header, sections = container.unpack(data)
    latents = [(kind, s) for kind, s in sections if kind == LATENT_SECTION]
    fines = [s for kind, s in sections if kind == FINE_SECTION]
    return container.pack(header, latents + [(FINE_SECTION, s) for s in edit(fines)])


@pytest.mark.fast
@pytest.mark.parametrize("edit, message", [
    (lambda f: [f[0][:-4]], "entropy-coded section"),
    (lambda f: [f[0] + b"\0\0\0\0"], "entropy-coded section"),
    (lambda f: [f[0][:5]], "shorter than its header"),
    (lambda f: [bytes([0]) + f[0][1:]], "base quality"),
    (lambda f: [f[0][:1] + b"\0\0" + f[0][3:]], "step"),
    (lambda f: [f[0][:5] + (1 << 30).to_bytes(4, "little") + f[0][9:]], "longer than the section"),
    (lambda f: f + f, "needs 1 fine section"),
])
def test_damaged_fine_sections_are_format_errors(photo, edit, message):
    data = _with_fine(nic.compress(photo, quality=90), edit)
    with pytest.raises(FormatError, match=message):
        nic.decompress(data)


@pytest.mark.fast
def test_fine_sections_belong_to_version_3_only(photo):
    header, sections = container.unpack(nic.compress(photo, quality=90))
    header.version = container.VERSION
    with pytest.raises(FormatError, match="version 3"):
        container.pack(header, sections)
    header, sections = container.unpack(nic.compress(photo, quality=20))
    header.version = container.FINE_VERSION
    with pytest.raises(FormatError, match="version 3"):
        container.pack(header, sections)


@pytest.mark.fast
def test_table_indices_outside_the_tables_are_refused(photo):
    base = np.asarray(nic.decompress(nic.compress(photo, quality=FINE_FROM)))
    grid = (3, photo.shape[0] // fine.BLOCK, photo.shape[1] // fine.BLOCK)
    side = coder.encode(np.full(grid, SCALE_LEVELS + 1), np.full(grid, 22), fine._dists())
    forged = fine._HEAD.pack(FINE_FROM, 16 * 8, 16 * 12, 22, len(side)) + side
    with pytest.raises(FormatError, match="table index"):
        fine.decode([forged], base)
    bad_table = fine._HEAD.pack(FINE_FROM, 16 * 8, 16 * 12, SCALE_LEVELS, len(side)) + side
    with pytest.raises(FormatError, match="index table"):
        fine.decode([bad_table], base)


@pytest.mark.fast
def test_latents_are_coded_at_the_base_quality(photo):
    """A fine file's latent section is the base quality's, byte for byte."""
    latent = [s for kind, s in container.unpack(nic.compress(photo, quality=FINE_FROM))[1]
              if kind == LATENT_SECTION]
    for q in (FINE_FROM + 1, 100):
        sections = container.unpack(nic.compress(photo, quality=q))[1]
        assert [s for kind, s in sections if kind == LATENT_SECTION] == latent


@pytest.mark.fast
def test_cut_fine_sections_of_golden_files_are_refused_before_synthesis(monkeypatch):
    calls: list = []
    monkeypatch.setattr(tiling, "synthesise", lambda *args: calls.append(args))
    cut = 0
    for name in ("hyperprior-q90-fine-rgb.nic", "hyperprior-q100-fine-rgba.nic"):
        header, sections = container.unpack((DATA / "golden" / name).read_bytes())
        assert header.version == container.FINE_VERSION
        (i,) = [j for j, (kind, _) in enumerate(sections) if kind == FINE_SECTION]
        s = sections[i][1]
        for shorter in {b"", s[:len(s) // 8 * 4], s[:-4], s[:-8], s[4:] + s[:4]}:
            damaged = sections[:i] + [(FINE_SECTION, shorter)] + sections[i + 1:]
            with pytest.raises(FormatError, match="fine section|entropy-coded section"):
                nic.decompress(container.pack(header, damaged))
            cut += 1
    assert cut >= 8 and not calls
