"""Image -> .nic bytes -> image through the shipped default model: sizes, modes, rate, exactness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import nic
from nic import codec
from nic.errors import FormatError, NicError
from nic.eval.metrics import psnr
from nic.io import picture_from_array
from nic.models import registry


@pytest.mark.fast
@pytest.mark.parametrize("height, width", [(1, 1), (65, 63), (3, 1000), (512, 768)])
def test_round_trip_sizes(full_photo, height, width):
    src = np.ascontiguousarray(full_photo[:height, :width])
    out = np.asarray(nic.decompress(nic.compress(src, quality=90)))
    assert out.shape == src.shape and out.dtype == np.uint8
    if height * width > 1000:
        assert psnr(src, out) > 30


@pytest.mark.fast
def test_quality_sets_the_rate_monotonically(photo):
    sizes = [len(nic.compress(photo, quality=q)) for q in (1, 25, 50, 75, 100)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] / 3
    quality = [psnr(photo, np.asarray(nic.decompress(nic.compress(photo, quality=q)))) for q in (1, 50, 100)]
    assert quality == sorted(quality)


@pytest.mark.fast
def test_target_bpp_lands_at_or_under_the_target(photo):
    pixels = photo.shape[0] * photo.shape[1]
    low, high = (len(nic.compress(photo, quality=q)) * 8 / pixels for q in (1, 100))
    # a target below the smallest file gives the smallest file (the CLI warns)
    assert nic.compress(photo, bpp=low * 0.9) == nic.compress(photo, quality=1)
    for target in (low + 0.3 * (high - low), low + 0.7 * (high - low)):
        data = nic.compress(photo, bpp=target)
        assert len(data) * 8 / pixels <= target
        # the next quality up would have overshot: the search really went to the limit
        q = nic.container.unpack(data)[0].quality
        if q < 100:
            assert len(nic.compress(photo, quality=q + 1)) * 8 / pixels > target


@pytest.mark.fast
def test_grey_comes_back_grey(photo):
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    out = nic.decompress(nic.compress(Image.fromarray(grey)))
    assert out.mode == "L" and psnr(grey, np.asarray(out)) > 28


@pytest.mark.fast
@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_kept_losslessly(photo, mode):
    img = Image.fromarray(photo).convert(mode)
    alpha = (np.arange(photo.shape[0] * photo.shape[1]) % 251).reshape(photo.shape[:2]).astype(np.uint8)
    img.putalpha(Image.fromarray(alpha))
    out = nic.decompress(nic.compress(img))
    assert out.mode == mode
    assert np.array_equal(np.asarray(out)[:, :, -1], alpha)


@pytest.mark.fast
def test_palette_and_bilevel_images(photo):
    for img in (Image.fromarray(photo).quantize(64), Image.fromarray(photo).convert("1")):
        out = nic.decompress(nic.compress(img))
        assert out.size == img.size


@pytest.mark.fast
def test_numpy_float_input(photo):
    # floats in [0, 1] are the same picture as the uint8 one
    assert nic.compress(photo.astype(np.float32) / 255) == nic.compress(photo)


@pytest.mark.fast
def test_bad_api_input(photo):
    with pytest.raises(NicError, match="quality"):
        nic.compress(photo, quality=0)
    with pytest.raises(NicError, match="quality"):
        nic.compress(photo, quality=101)
    with pytest.raises(NicError, match="shape"):
        nic.compress(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(NicError, match="unknown model"):
        nic.compress(photo, model="no-such-model")
    with pytest.raises(FormatError):
        nic.decompress(b"not a nic file")


@pytest.mark.fast
def test_other_weights_are_refused(photo):
    data = bytearray(nic.compress(photo))
    h, sections = nic.container.unpack(bytes(data))
    h.weights_hash = b"\x00" * 8
    forged = nic.container.pack(h, sections)
    with pytest.raises(FormatError, match="other weights"):
        nic.decompress(forged)


def test_decoding_is_bit_exact_across_threads_and_runs(full_photo):
    data = nic.compress(full_photo, quality=50)
    old = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 1, 2):
            torch.set_num_threads(threads)
            outs.append(np.asarray(nic.decompress(data, exact=True)))
    finally:
        torch.set_num_threads(old)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


@pytest.mark.fast
def test_encoding_is_deterministic(photo):
    assert nic.compress(photo, quality=60) == nic.compress(photo, quality=60)


@pytest.mark.fast
def test_integer_hyper_synthesis_matches_the_float_network():
    lm = registry.load(registry.DEFAULT_MODEL)
    m = lm.model
    torch.manual_seed(0)
    z = torch.randint(-4, 5, (1, m.config["N"], 3, 5))
    exact = m.coding["h_s"](z).double() / 2**12
    with torch.no_grad():
        approx = m.h_s(z.float()).double()
    assert (exact - approx).abs().max() < 0.02
    assert torch.equal(m.coding["h_s"](z), m.coding["h_s"](z.clone()))


@pytest.mark.fast
def test_picture_round_trip_keeps_metadata(photo):
    pic = picture_from_array(photo)
    pic.orientation, pic.bit_depth = 6, 16
    out = codec.decode(codec.encode(pic, 40))
    assert (out.orientation, out.bit_depth, out.width, out.height) == (6, 16, pic.width, pic.height)


@pytest.mark.fast
def test_tiled_decoding_is_bit_identical_to_one_pass(full_photo, monkeypatch):
    from nic.runtime import tiling

    data = nic.compress(full_photo[:320, :448], quality=30)
    whole = np.asarray(nic.decompress(data, exact=True))
    monkeypatch.setattr(tiling, "SYNTHESIS_TILE", 80)  # 5-latent tiles, with borders everywhere
    monkeypatch.setattr(tiling, "ONE_PASS", 0)
    tiled = np.asarray(nic.decompress(data, exact=True))
    assert np.array_equal(whole, tiled)


@pytest.mark.fast
def test_tiled_encoding_matches_one_pass_closely(full_photo, monkeypatch):
    from nic.runtime import tiling

    data = nic.compress(full_photo, quality=50)
    monkeypatch.setattr(tiling, "ANALYSIS_TILE", 256)
    tiled = nic.compress(full_photo, quality=50)
    # float analysis in tiles is not bit-identical, but the file is the same to within 1%
    assert abs(len(tiled) - len(data)) < 0.01 * len(data)
    assert abs(psnr(full_photo, np.asarray(nic.decompress(tiled))) -
               psnr(full_photo, np.asarray(nic.decompress(data)))) < 0.02
