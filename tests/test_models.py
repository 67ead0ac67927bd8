"""Every shipped model: listed with a model card, round-trips real images, rate follows quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nic
from nic import container, geometry
from nic.eval.metrics import psnr
from nic.models import registry
from nic.models.base import CompressionModel

from .conftest import SHIPPED

pytestmark = pytest.mark.fast

SMALL = {"hyperprior": dict(N=16, M=16), "checkerboard": dict(N=16, M=16),
         "factorized": dict(N=16, M=8), "conv-ae": dict(width=8, latent=4),
         "comcnn": dict(width=8, rec_layers=4)}  # fresh models of each architecture, kept quick


def test_exactly_these_models_ship():
    assert sorted(p.stem for p in registry.WEIGHTS_DIR.glob("*.safetensors")) == sorted(SHIPPED)


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


@pytest.mark.parametrize("architecture", sorted(registry.ARCHITECTURES))
def test_every_architecture_implements_the_model_contract(architecture, photo2):
    """What the codec and the training loop rely on, and nothing else, from a fresh model."""
    model = registry.build(architecture, **SMALL.get(architecture, {}))
    assert isinstance(model, CompressionModel) and model.coding == {}
    x = torch.from_numpy(photo2[:64, :64]).permute(2, 0, 1)[None].float().div(255).repeat(2, 1, 1, 1)
    t = torch.tensor([0.0, model.levels - 1.0])
    out = model(x, t)
    assert out["x_hat"].shape == x.shape and out["bits"].shape == (2,) and (out["bits"] > 0).all()
    lmbda = model.lmbda(t)
    assert lmbda.shape == (2,) and lmbda[0] <= lmbda[1]
    model.eval()
    model.load_coding(model.export_coding())
    image = geometry.arrange(photo2, geometry.plan(photo2.shape[1], photo2.shape[0], model.downsampling))
    streams = model.compress(image, 50)
    assert streams and all(isinstance(s, bytes) for s in streams)
    assert model.decompress(streams, *image.shape[:2], 50).shape == image.shape


def test_the_same_weights_serialize_to_the_same_bytes_every_time():
    """The weights hash names the weights in every .nic header, so it must not depend on the
    export (safetensors writes its metadata in a randomly seeded hash-map order)."""
    from nic.runtime.weights import deserialize, serialize

    torch.manual_seed(0)
    model = registry.build(architecture="hyperprior", N=16, M=16)
    config = {"architecture": "hyperprior", "N": 16, "M": 16}
    files = {serialize(model, config) for _ in range(8)}
    assert len(files) == 1
    tensors, read_config = deserialize(files.pop(), "test")
    assert read_config == config and set(tensors) >= set(model.state_dict()) - {
        k for k in model.state_dict() if k.startswith(model.integer_only)}
