"""Every shipped model: listed with a model card, round-trips real images, rate follows quality."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

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


# Each architecture as the configs use it, beyond SMALL's first-release form.
VARIANTS = [(a, SMALL.get(a, {})) for a in sorted(registry.ARCHITECTURES)] + [
    ("conv-ae", dict(widths=[8, 8, 8], latent=4, latent_relu=False, rate_trained=True)),
    ("comcnn", dict(width=8, rec_layers=4, quality_input=True)),
]


@pytest.mark.parametrize(("architecture", "config"), VARIANTS, ids=lambda v: "-".join(map(str, v)) if
                         isinstance(v, dict) else v)
def test_every_architecture_implements_the_model_contract(architecture, config, photo2):
    """What the codec and the training loop rely on, and nothing else, from a fresh model."""
    model = registry.build(architecture, **config)
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


def _user_model(folder, name: str, config: dict | None = None, card: object = None) -> None:
    """The shipped conv-ae weights as user model `name`, with another config or card if given."""
    import json

    from safetensors.torch import load, save

    from nic.runtime.weights import FORMAT, _canonical

    data = (registry.WEIGHTS_DIR / "conv-ae.safetensors").read_bytes()
    if config is not None:
        data = _canonical(save(load(data), metadata={"format": FORMAT, "config": json.dumps(config)}))
    (folder / f"{name}.safetensors").write_bytes(data)
    if card is not None:
        (folder / f"{name}.json").write_text(json.dumps(card))


@pytest.mark.parametrize("card, reason", [
    ({"training": []}, "'training' is not a JSON object"),
    ({"training": {"wall_time_s": "long"}}, "'training.wall_time_s' is not a number"),
    ({"rd": {"data": "kodak", "images": 24, "points": [{"quality": 1, "bpp": "x", "psnr": 1}]}}, "'rd' is not"),
    ({"config": 5}, "'config' is not a JSON object"),
])
def test_a_card_of_the_wrong_shape_is_skipped_with_a_warning(tmp_path, monkeypatch, capsys, card, reason):
    from nic.cli import main

    monkeypatch.setenv("NIC_MODEL_DIR", str(tmp_path))
    _user_model(tmp_path, "mine", card=card)
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    assert "checkerboard (default)" in out and "mine" not in out
    assert "skipping model 'mine'" in err and reason in err and len(err.strip().splitlines()) == 1, err


def test_a_config_that_does_not_fit_its_weights_is_one_line(tmp_path, monkeypatch, capsys, photo):
    from nic.cli import main

    monkeypatch.setenv("NIC_MODEL_DIR", str(tmp_path))
    config = {"architecture": "conv-ae", "width": 32, "latent": 16, "levels": 8, "step_max": 3.0, "step_min": 0.12,
              "lmbda_min": 1.0, "lmbda_max": 1.0}
    _user_model(tmp_path, "narrow", config)
    with pytest.raises(nic.NicError, match="narrow.safetensors: weights do not fit its config"):
        nic.compress(photo, model="narrow")
    Image.fromarray(photo).save(tmp_path / "p.png")
    assert main(["compress", str(tmp_path / "p.png"), "--model", "narrow"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights do not fit its config (size mismatch for" in err[0], err


def test_a_model_name_no_header_can_hold_is_refused_before_coding(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("NIC_MODEL_DIR", str(tmp_path))
    _user_model(tmp_path, "my model")
    lm = registry.load("my model")

    def coding(*args, **kwargs):
        raise AssertionError("the image was coded before the name was checked")

    monkeypatch.setattr(lm.model, "analyse", coding)
    with pytest.raises(nic.NicError, match="model name 'my model' cannot be written into a .nic file"):
        nic.compress(photo, model="my model")


def test_only_the_rate_trained_conv_ae_sees_its_quantizer_in_training(photo2):
    """The first release trained on its unquantized latent, so no level changed its output in
    training; trained for rate, the decoder learns from the latent each level's gains quantize."""
    x = torch.from_numpy(photo2[:32, :32]).permute(2, 0, 1)[None].float().div(255).repeat(2, 1, 1, 1)
    t = torch.tensor([0.0, 7.0])
    for rate_trained in (False, True):
        torch.manual_seed(0)
        model = registry.build("conv-ae", widths=[8, 8, 8], latent=4, latent_relu=False, rate_trained=rate_trained,
                               lmbda_min=0.001, lmbda_max=0.1)
        with torch.no_grad():
            model.g_a[-1].weight.mul_(100)  # latents of several quantizer steps, as trained ones are
        x_hat = model(x, t)["x_hat"]
        assert torch.equal(x_hat[0], x_hat[1]) is not rate_trained
    assert model.downsampling == model.latent_stride == 8 and model.g_a[-1].out_channels == 4


def test_comcnn_with_quality_input_restores_each_quality_its_own_way():
    model = registry.build("comcnn", width=8, rec_layers=4, quality_input=True)
    torch.nn.init.normal_(model.rec[-1].weight)  # the fresh model starts as plain bicubic
    decoded = torch.rand(1, 3, 8, 8)
    low, high = (model.restore(model.rec_input(decoded, [q])) for q in (10, 90))
    assert low.shape == (1, 3, 16, 16) and not torch.allclose(low, high)


def test_comcnn_keeps_full_chroma_from_its_threshold_and_decodes_either_sampling(photo2):
    from PIL import JpegImagePlugin
    model = registry.build("comcnn", width=8, rec_layers=4, quality_input=True, full_chroma_from=90)
    image = photo2[:64, :64]
    analysis = model.analyse(image)
    for quality, sampling in ((89, 2), (90, 0), (100, 0)):  # 2: 4:2:0, 0: 4:4:4
        [jpeg] = model.code(analysis, quality)
        assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(jpeg))) == sampling
        assert model.decompress([jpeg], 64, 64, quality).shape == (64, 64, 3)
    default = registry.build("comcnn", width=8, rec_layers=4)  # older configs: 4:2:0 at every quality
    [jpeg] = default.code(default.analyse(image), 100)
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(jpeg))) == 2


@pytest.mark.parametrize("widths", [[0, 8], [8] * 9, "8", [8.0], []])
def test_a_conv_ae_config_with_impossible_widths_is_one_line(widths):
    from nic.errors import NicError
    from nic.runtime.config_check import check_config
    with pytest.raises(NicError, match="widths"):
        check_config({"architecture": "conv-ae", "widths": widths}, registry.ARCHITECTURES, "test")
