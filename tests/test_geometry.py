"""Padding and folding: the pixel limit bounds the padded work, and thin or long images are
folded into strips instead of being padded to 64 times their size."""

from __future__ import annotations

import numpy as np
import pytest

import nic
from nic import container, geometry
from nic.errors import NicError
from nic.eval.metrics import psnr

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("width, height", [(100000, 1), (1, 100000), (1000, 3), (5, 777), (3000, 30), (768, 512),
                                           (56, 40), (1, 1), (65, 64)])
def test_layouts_keep_work_near_the_pixel_count_and_undo_exactly(width, height):
    layout = geometry.plan(width, height, 64)
    unfolded = geometry.Layout(width, height, 64)
    assert layout.work <= unfolded.work
    assert layout.work <= max(2.2 * width * height, 64 * 64)  # never the 64x of padding a 1-pixel side
    if layout.fold:
        assert layout.fold % 64 == 0 and layout.work * 2 <= unfolded.work
        assert geometry.from_header(width, height, layout.fold, 64) == layout
    rng = np.random.default_rng(width * 7 + height)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    coded = geometry.arrange(pixels, layout)
    assert coded.shape[:2] == layout.padded
    assert np.array_equal(geometry.restore(coded, layout), pixels)


def test_a_one_pixel_high_image_is_coded_folded(full_photo):
    line = full_photo[:27].reshape(1, -1, 3)[:, :20000]  # 27 rows of a photo, end to end
    data = nic.compress(line, quality=75)
    header = container.unpack(data)[0]
    assert header.fold and header.version == container.FINE_VERSION  # quality 75: a fine layer on the folded strips
    out = np.asarray(nic.decompress(data))
    assert out.shape == line.shape and psnr(line, out) > 25
    assert len(data) * 8 / line.shape[1] < 12  # bits per pixel; padded to 64 rows it took about 50


def test_the_pixel_limit_counts_the_padded_work(photo, monkeypatch):
    monkeypatch.setenv("NIC_MAX_PIXELS", "5000")
    square = np.ascontiguousarray(photo[:70, :70])  # 4900 pixels, coded as 128x128
    with pytest.raises(NicError, match="70x70 needs 16384 pixels of work after padding, over the limit of 5000"):
        nic.compress(square, model="hyperprior")  # decoding cost 1 per pixel
    data = nic.compress(np.ascontiguousarray(photo[:64, :64]), quality=50, model="hyperprior")  # 64x64: no padding
    monkeypatch.setenv("NIC_MAX_PIXELS", "100000")
    header, sections = container.unpack(data)
    header.width, header.height = 1, 60000  # an unfolded thin image: 64 x 60032 to synthesise
    for version in (1, 2):
        header.version = version
        with pytest.raises(NicError, match="1x60000 needs 3842048 pixels of work after padding"):
            nic.decompress(container.pack(header, sections))


def test_a_slow_decoder_gets_a_proportionally_smaller_limit(photo2, monkeypatch):
    monkeypatch.setenv("NIC_MAX_PIXELS", "30000")  # photo2 is 100x80: 16384 padded for hyperprior
    nic.decompress(nic.compress(photo2, quality=50))
    with pytest.raises(NicError, match="this model's decoding cost per pixel"):
        nic.compress(photo2, quality=50, model="comcnn")
