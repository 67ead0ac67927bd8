"""Every shipped model: listed with a model card, round-trips real images, rate follows quality."""

from __future__ import annotations

import numpy as np
import pytest

import nic
from nic import container
from nic.eval.metrics import psnr
from nic.models import registry

SHIPPED = ["hyperprior", "factorized", "conv-ae", "comcnn"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_has_weights_and_a_card(name):
    card = registry.available()[name]
    assert card["path"].startswith(str(registry.WEIGHTS_DIR))
    assert card["training"]["steps"] > 0 and card["training"]["hardware"]
    assert len(card["rd"]["points"]) >= 5 and card["rd"]["images"] == 24


@pytest.mark.parametrize("name", SHIPPED)
def test_round_trip_and_rate_control(name, photo2):
    small, large = (nic.compress(photo2, quality=q, model=name) for q in (10, 90))
    assert len(small) < len(large)
    out = np.asarray(nic.decompress(large))
    assert out.shape == photo2.shape
    assert psnr(photo2, out) > psnr(photo2, np.asarray(nic.decompress(small)))
    assert container.unpack(large)[0].model == name


def test_comcnn_payload_is_a_real_jpeg(photo2):
    header, sections = container.unpack(nic.compress(photo2, quality=50, model="comcnn"))
    (jpeg,) = [s for kind, s in sections if kind == container.LATENT_SECTION]
    assert jpeg[:3] == b"\xff\xd8\xff" and jpeg[-2:] == b"\xff\xd9"
