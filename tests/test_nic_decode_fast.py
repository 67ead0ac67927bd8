"""nic_decode's fast path (g_s in float32 with onnxruntime) against nic's float32 decoder: within
one level, and its tiles (for large images) within one level of a single pass. The graph comes
from a bundle as the decoder wheel carries it, built here for the file's weights alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nic
import nic_decode
from nic.container import unpack
from nic.models import registry
from nic_decode import bundle, decoder, fast, weights
from nic_decode.decoder import fast_synthesis

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fresh(photo) -> bytes:
    return nic.compress(Image.fromarray(photo), quality=75)


@pytest.fixture(scope="module")
def models(fresh, tmp_path_factory) -> Path:
    """A bundle holding the default's current weights, made by the wheel's build script."""
    spec = importlib.util.spec_from_file_location("build_decoder_wheel", ROOT / "scripts" / "build_decoder_wheel.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path_factory.mktemp("models")
    name = unpack(fresh)[0].model
    script.export_weights(name, Path(registry.available()[name]["path"]), out)
    return out


@pytest.fixture(autouse=True)
def bundled_only(models, monkeypatch):
    """nic_decode as the wheel installs it: no nic weights beside it, only its bundle."""
    monkeypatch.setattr(weights, "model_dirs", lambda: [])
    monkeypatch.setattr(bundle, "MODELS", models)
    decoder.load_model.cache_clear()
    fast_synthesis.cache_clear()
    yield
    decoder.load_model.cache_clear()
    fast_synthesis.cache_clear()


@pytest.mark.fast
def test_fast_decode_is_within_a_level_of_nics_float32(fresh, monkeypatch):
    monkeypatch.setenv("NIC_PRECISION", "float32")
    ours = nic_decode.decode(fresh, exact=False).astype(int)
    assert np.abs(ours - np.asarray(nic.decompress(fresh)).astype(int)).max() <= 1
    assert not np.array_equal(ours, nic_decode.decode(fresh))  # the float g_s ran, not the exact one


@pytest.mark.fast
def test_tiles_match_one_pass(fresh, monkeypatch):
    """Tiles of 32 pixels (2 latent pixels plus margins) over a 128 x 96 image, as a 24 MP image
    gets tiles of 1024."""
    header, _ = unpack(fresh)
    synthesis = fast_synthesis(header.model, header.weights_hash)
    y_hat = np.random.default_rng(0).integers(-4 << 12, 4 << 12, size=(144, 6, 8))  # ŷ in [-4, 4]
    whole = synthesis(y_hat).astype(int)
    assert len(np.unique(whole)) > 100  # not saturated: the comparison means something
    monkeypatch.setattr(fast, "ONE_PASS", 0)
    monkeypatch.setattr(fast, "TILE", 32)
    assert np.abs(synthesis(y_hat).astype(int) - whole).max() <= 1
