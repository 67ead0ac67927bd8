"""The checkerboard context model: the same function as a masked 5x5 conv, a hyperprior's
exact twin when it starts from one, and a two-pass file whose symbols come back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from nic import geometry
from nic.entropy import coder
from nic.entropy.checkerboard import OFFSETS, anchors, neighbours, neighbours_at
from nic.errors import FormatError
from nic.models import registry
from nic.runtime.fast import float_twin
from nic.train.checkpoint import init_from


@pytest.mark.fast
def test_context_is_a_checkerboard_masked_5x5_conv():
    """A 1x1 conv over the gathered neighbours computes, at every non-anchor, what a 5x5 conv
    sees of the anchors (He et al.'s masked conv): nothing of the symbols not yet decoded."""
    torch.manual_seed(0)
    y = torch.randn(1, 6, 9, 11) * anchors(9, 11)
    w = torch.randn(4, 6, 5, 5)
    gathered = torch.cat([w[:, :, dy + 2, dx + 2] for dy, dx in OFFSETS], dim=1)[:, :, None, None]
    full = F.conv2d(y, w, padding=2)
    ours = F.conv2d(neighbours(y), gathered)
    rest = ~anchors(9, 11)
    assert torch.allclose(ours[..., rest], full[..., rest], atol=1e-5)
    grid = F.pad(y[0].permute(1, 2, 0), (0, 0, 2, 2, 2, 2))  # the coder's (h + 4, w + 4, C) layout
    assert torch.equal(neighbours_at(grid, *rest.nonzero(as_tuple=True))[:, :, 0], neighbours(y)[..., rest])
    assert all((dy + dx) % 2 for dy, dx in OFFSETS) and len(OFFSETS) == 12


@pytest.mark.fast
def test_a_checkerboard_started_from_the_shipped_weights_computes_the_same(photo2):
    """The context's last layer starts at zero: training begins at the hyperprior it came from."""
    shipped = registry.WEIGHTS_DIR / "hyperprior.safetensors"
    config = {k: v for k, v in registry.available()["hyperprior"]["config"].items() if k != "architecture"}
    hyper = registry.build("hyperprior", **config)
    init_from(hyper, shipped)
    model = registry.build("checkerboard", **config)
    init_from(model, shipped)
    x = torch.from_numpy(photo2[:64, :64]).permute(2, 0, 1)[None].float().div(255).repeat(2, 1, 1, 1)
    t = torch.tensor([1.0, model.levels - 1.5])
    outs = []
    for m in (hyper, model):
        torch.manual_seed(3)  # the same training noise
        outs.append(m(x, t))
    assert torch.equal(outs[0]["x_hat"], outs[1]["x_hat"]) and torch.equal(outs[0]["bits"], outs[1]["bits"])


@pytest.fixture(scope="module")
def coded(photo2):
    """The shipped transforms with a context that matters (random, small), coding state loaded."""
    config = {k: v for k, v in registry.available()["hyperprior"]["config"].items() if k != "architecture"}
    model = registry.build("checkerboard", **config).eval()
    init_from(model, registry.WEIGHTS_DIR / "hyperprior.safetensors")
    torch.manual_seed(1)
    with torch.no_grad():
        model.param_net[-1].weight.normal_(0, 0.01)
    model.load_coding(model.export_coding())
    image = geometry.arrange(photo2, geometry.plan(photo2.shape[1], photo2.shape[0], model.downsampling))
    return model, image


@pytest.mark.fast
def test_every_symbol_comes_back_exactly(coded, monkeypatch):
    """The decoder rebuilds each half's tables from what it has decoded so far and must land on
    the encoder's symbols and tables, position by position."""
    model, image = coded
    sent = []
    encode = coder.encode
    monkeypatch.setattr(coder, "encode", lambda s, i, t: sent.append((s.copy(), i.copy())) or encode(s, i, t))
    streams = model.compress(image, 60)
    got = []
    decode = coder.decode
    monkeypatch.setattr(coder, "decode", lambda b, i, t, term: got.append(i.copy()) or decode(b, i, t, term))
    y_hat = model.decompress_latent(streams, *image.shape[:2], 60)
    assert len(streams) == 3 and len(sent) == 3
    for (_, index), decoded_index in zip(sent, got, strict=True):
        assert np.array_equal(index.reshape(-1), decoded_index.reshape(-1))
    rest = ~anchors(*y_hat.shape[-2:])
    assert (sent[2][0] != 0).any()  # the rest half is coded, not empty
    assert y_hat[..., rest].abs().sum() > 0 and y_hat[..., ~rest].abs().sum() > 0


@pytest.mark.fast
def test_the_context_changes_the_rest_half_only(coded):
    model, image = coded
    with_context = model.compress(image, 60)
    last = model.param_net[-1].weight
    saved = last.detach().clone()
    try:
        with torch.no_grad():
            last.zero_()
        model.load_coding(model.export_coding())
        without = model.compress(image, 60)
    finally:
        with torch.no_grad():
            last.copy_(saved)
        model.load_coding(model.export_coding())
    assert with_context[:2] == without[:2] and with_context[2] != without[2]


@pytest.mark.fast
def test_a_file_with_the_wrong_number_of_sections_is_a_format_error(coded):
    model, image = coded
    streams = model.compress(image, 60)
    with pytest.raises(FormatError, match="expects 3 latent sections"):
        model.decompress(streams[:2], *image.shape[:2], 60)


@pytest.mark.fast
def test_refinement_prices_the_rate_with_the_context(coded):
    """`--effort` optimizes the rate the coder will spend: priced with the context's second
    pass, the y bits of hard-rounded symbols land near the real streams' size; priced with h_s
    alone, they miss what the context changes."""
    model, image = coded
    quality = 95
    latent = model.analyse(image).latent
    streams = model.compress_latent(latent, quality)
    real = 8 * (len(streams[1]) + len(streams[2]))
    gain, inv_gain = model.quality_gains(quality)
    with torch.no_grad():
        hyper = float_twin(model, "h_s")(torch.round(model.h_a(latent)))
        y_g = latent * gain
        twins = {name: float_twin(model, name) for name in model.entropy.nets}
        priced, alone = (float(e.rate(twins, hyper, lambda mu_g: torch.round(y_g - mu_g), gain, inv_gain)[0].sum())
                         for e in (model.entropy, model.entropy.conditional))
    assert abs(priced - real) < 0.1 * real
    assert abs(priced - real) < abs(alone - real) / 2


def test_refinement_lowers_a_checkerboard_models_rd_cost(coded, monkeypatch):
    """Effort 1 on a context model: a file that costs less in bits + lambda * MSE of its exactly
    decoded pixels than effort 0's, and than refining for the hyperprior's rate alone would."""
    model, image = coded
    quality = 95
    analysis = model.analyse(image)
    lmbda = model.quality_lmbda(quality)

    def cost(streams: list[bytes]) -> float:
        decoded = model.decompress(streams, *image.shape[:2], quality, exact=True).astype(np.float64)
        return 8 * sum(map(len, streams)) / image[..., 0].size + lmbda * np.mean((decoded - image) ** 2)

    refined = cost(model.code(analysis, quality, effort=1))
    monkeypatch.setattr(model.entropy, "rate", model.entropy.conditional.rate)  # h_s's rate alone
    assert refined < min(cost(model.code(analysis, quality)), cost(model.code(analysis, quality, effort=1)))
