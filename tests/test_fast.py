"""The fast float synthesis and analysis against the exact integer path, and the exact path's
own building blocks (per-tap GEMMs) against torch's convolutions."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nic
from nic import fine
from nic.container import FINE_SECTION, LATENT_SECTION
from nic.errors import NicError
from nic.eval.metrics import psnr
from nic.io import read_image
from nic.models import registry
from nic.runtime import fast
from nic.runtime import precision as measured
from nic.runtime.fast import FastSynthesis, fast_synthesis, float_twin
from nic.runtime.integer import ACT_LIMIT, FRAC_BITS, IntegerNet
from tests.conftest import DATA, run_nic

# The tolerance the README states for the fast path against the exact one.
MAX_LEVELS, MIN_PSNR = 4, 50.0
# The quality a fast decode may lose against the exact one: the bf16 synthesis scales its GDNs
# in float32, which took its worst loss on Kodak 23 from 0.061 dB to under 0.015 dB.
MAX_PSNR_LOSS = 0.02
PRECISIONS = [torch.float32] + ([torch.bfloat16] if measured.native_bf16() else [])


def decode_with(data: bytes, precision: torch.dtype) -> np.ndarray:
    """The fast synthesis at `precision`, plus the fine layer where the file has one."""
    header, sections = nic.container.unpack(data)
    m = registry.load(header.model).model
    hp, wp = (-(-s // m.downsampling) * m.downsampling for s in (header.height, header.width))
    fines = [s for kind, s in sections if kind == FINE_SECTION]
    quality = fine.base_quality(fines) if fines else header.quality
    y_hat = m.decompress_latent([s for kind, s in sections if kind == LATENT_SECTION], hp, wp, quality)
    rgb = fast_synthesis(m, precision)(y_hat)[0].permute(1, 2, 0).numpy()
    return (fine.decode(fines, rgb) if fines else rgb)[:header.height, :header.width]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("quality", [10, 90])
def test_fast_and_exact_decodes_agree_within_the_stated_tolerance(full_photo, precision, quality):
    data = nic.compress(full_photo, quality=quality)
    exact = np.asarray(nic.decompress(data, exact=True))
    fast_rgb = decode_with(data, precision)
    assert fast_rgb.shape == exact.shape
    assert np.abs(fast_rgb.astype(int) - exact.astype(int)).max() <= MAX_LEVELS
    assert psnr(fast_rgb, exact) >= MIN_PSNR
    assert abs(psnr(full_photo, fast_rgb) - psnr(full_photo, exact)) < MAX_PSNR_LOSS


def test_default_decode_is_the_fast_path_and_exact_is_bit_identical_across_threads(full_photo):
    data = nic.compress(full_photo[:256, :384], quality=50)
    default = np.asarray(nic.decompress(data))
    model = registry.load(registry.DEFAULT_MODEL).model
    assert np.array_equal(default, decode_with(data, fast.precision(model, "g_s")))
    old = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            outs.append(np.asarray(nic.decompress(data, exact=True)))
    finally:
        torch.set_num_threads(old)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


@pytest.mark.fast
@pytest.mark.parametrize("name", ["factorized", "conv-ae"])
def test_fast_synthesis_of_the_other_latent_models(name, photo2):
    # factorized is retired and its archived weights only decode: its golden file stands in
    data = (DATA / "golden" / f"{name}-q50-rgb.nic").read_bytes() if name in registry.RETIRED else \
        nic.compress(photo2, quality=80, model=name)
    exact, fast_rgb = np.asarray(nic.decompress(data, exact=True)), np.asarray(nic.decompress(data))
    assert fast_rgb.shape == exact.shape and exact.shape[2] == 3
    assert psnr(fast_rgb, exact) >= MIN_PSNR


@pytest.mark.fast
def test_fast_tiles_agree_with_one_pass(full_photo, monkeypatch):
    data = nic.compress(full_photo[:320, :448], quality=30)
    whole = np.asarray(nic.decompress(data))
    monkeypatch.setattr(FastSynthesis, "tile", 96)  # 6-latent tiles, borders everywhere
    monkeypatch.setattr(FastSynthesis, "one_pass", 0)
    tiled = np.asarray(nic.decompress(data))
    assert psnr(whole, tiled) >= MIN_PSNR and np.abs(whole.astype(int) - tiled.astype(int)).max() <= MAX_LEVELS


@pytest.mark.fast
def test_fast_head_bands_give_the_one_band_result(full_photo, monkeypatch):
    m = registry.load("hyperprior").model
    data = nic.compress(full_photo[:256, :256], quality=50, model="hyperprior")
    y_hat = m.decompress_latent([s for _, s in nic.container.unpack(data)[1]], 256, 256, 50)
    synthesis = fast_synthesis(m, torch.float32)
    one_band = synthesis(y_hat)
    monkeypatch.setattr(fast, "HEAD_BAND_BYTES", 1)  # one row per band
    assert torch.equal(synthesis(y_hat), one_band)


@pytest.mark.fast
def test_float_twin_is_a_frozen_float32_copy_of_the_dequantized_network():
    m = registry.load("hyperprior").model
    twin = float_twin(m, "g_s")
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in twin.parameters())
    assert all(torch.equal(a, b) for a, b in zip(twin.parameters(), m.g_s.parameters(), strict=True))
    with torch.no_grad():
        next(twin.parameters()).add_(1)
    assert not torch.equal(next(twin.parameters()), next(m.g_s.parameters()))
    # the twin of h_s tracks the exact integer network on the same (integer) hyper-latent
    z = torch.randint(-4, 5, (1, m.config["N"], 3, 4))
    exact = m.coding["h_s"](z) / 2**FRAC_BITS
    assert (float_twin(m, "h_s")(z.float()) - exact).abs().max() < 0.02


@pytest.mark.fast
def test_a_bad_precision_setting_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("NIC_PRECISION", "float16")
    with pytest.raises(NicError, match="NIC_PRECISION"):
        measured.forced()


def test_cli_decompress_exact(tmp_path, photo):
    src = tmp_path / "p.nic"
    src.write_bytes(nic.compress(photo, quality=50))
    r = run_nic("decompress", src, "-o", tmp_path / "exact.png", "--exact")
    assert r.returncode == 0, r.stderr
    r = run_nic("decompress", src, "-o", tmp_path / "fast.png")
    assert r.returncode == 0, r.stderr
    exact = np.asarray(read_image(tmp_path / "exact.png").rgb)
    assert np.array_equal(exact, np.asarray(nic.decompress(src.read_bytes(), exact=True)))
    assert psnr(exact, np.asarray(read_image(tmp_path / "fast.png").rgb)) >= MIN_PSNR


def _exact_reference(a: torch.Tensor, layer: nn.Module, net: IntegerNet) -> torch.Tensor:
    """One integer layer by torch's own float64 convolution: exact on these integer values."""
    spec = net.layers[0]
    conv = F.conv_transpose2d if isinstance(layer, nn.ConvTranspose2d) else F.conv2d
    extra = {"output_padding": 1} if isinstance(layer, nn.ConvTranspose2d) else {}
    acc = conv(a.double(), spec["weight"], spec["bias"], stride=layer.stride, padding=layer.padding, **extra)
    return acc.mul_(spec["scale"].view(1, -1, 1, 1)).add_(0.5).floor_()


@pytest.mark.fast
@pytest.mark.parametrize("layer", [nn.ConvTranspose2d(24, 20, 5, 2, 2, 1), nn.ConvTranspose2d(24, 3, 5, 2, 2, 1),
                                   nn.Conv2d(24, 20, 3, 1, 1)])
def test_integer_layers_equal_torch_convolutions_exactly(layer):
    torch.manual_seed(0)
    net = IntegerNet(nn.Sequential(layer), None, input_frac=FRAC_BITS)
    a = torch.randint(-(1 << 20), 1 << 20, (1, 24, 7, 9))
    assert torch.equal(net(a), _exact_reference(a, layer, net).clamp(-ACT_LIMIT, ACT_LIMIT))


@pytest.mark.fast
def test_the_faster_precision_is_measured_once_and_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("NIC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NIC_PRECISION", raising=False)
    monkeypatch.setattr(measured, "native_bf16", lambda: True)
    delay = {torch.bfloat16: 0.02, torch.float32: 0.0}

    def probe(p):
        return lambda: time.sleep(delay[p])

    assert measured.fastest("g_s", "one shape", probe) == torch.float32
    delay = {torch.bfloat16: 0.0, torch.float32: 0.02}
    assert measured.fastest("g_s", "another shape", probe) == torch.bfloat16
    remembered = json.loads(measured.cache_path().read_text())
    assert sorted(remembered.values()) == ["bfloat16", "float32"]

    def never(p):
        raise AssertionError("measured again")

    assert measured.fastest("g_s", "one shape", never) == torch.float32  # read back, not re-timed
    monkeypatch.setenv("NIC_PRECISION", "bfloat16")
    assert measured.fastest("g_s", "one shape", never) == torch.bfloat16
    monkeypatch.delenv("NIC_PRECISION")
    measured.cache_path().write_text("{not json")  # a damaged cache is measured afresh
    assert measured.fastest("g_s", "one shape", probe) == torch.bfloat16
    monkeypatch.setattr(measured, "native_bf16", lambda: False)  # emulated bf16 is never timed
    assert measured.fastest("g_a", "a third shape", never) == torch.float32


@pytest.mark.fast
def test_the_fast_networks_run_in_the_remembered_precision(tmp_path, monkeypatch):
    monkeypatch.setenv("NIC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NIC_PRECISION", raising=False)
    monkeypatch.setattr(measured, "native_bf16", lambda: True)
    config = {"architecture": "checkerboard", "N": 8, "M": 12, "levels": 2}
    chosen = {name: fast.precision(registry.build(**config), name) for name in ("g_s", "g_a")}
    monkeypatch.setattr(measured, "measure", lambda probes: pytest.fail("measured again"))
    fresh = registry.build(**config)  # another model of the same shape: the file answers
    assert {name: fast.precision(fresh, name) for name in ("g_s", "g_a")} == chosen
    assert len(json.loads(measured.cache_path().read_text())) == 2
