"""`nic export-onnx`: every exported graph, run in onnxruntime on a real photo's latents,
matches the torch network it came from; the coding state is the weights file's, bit for bit.

Tolerance (docs/ONNX.md): both sides compute in float32 but sum in different orders, so
graphs agree to within ONNX_RTOL of their output's largest magnitude, and the default
model's synthesis to within one pixel level of the fast path's (float32) pixels.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nic import cli
from nic.entropy.checkerboard import anchors, neighbours
from nic.models import registry
from nic.onnx_export import CODING_FILE, MANIFEST, fast_g_s
from nic.runtime.fast import fast_synthesis, float_twin
from nic.runtime.integer import FRAC_BITS
from nic.runtime.weights import deserialize

ort = pytest.importorskip("onnxruntime")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

pytestmark = pytest.mark.fast
ONNX_RTOL = 1e-5  # of the output's largest magnitude; measured < 1e-6 (docs/ONNX.md)


def export(model: str, folder: Path, *flags: str, capsys=None) -> tuple[int, str]:
    """Run `nic export-onnx` in this process: (exit code, stderr)."""
    code = cli.main(["export-onnx", model, str(folder), *flags])
    return code, capsys.readouterr().err if capsys else ""


@pytest.fixture(scope="module")
def checkerboard_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("onnx") / "checkerboard"
    start = time.perf_counter()
    assert cli.main(["export-onnx", "checkerboard", str(folder)]) == 0
    print(f"export: {time.perf_counter() - start:.2f} s")
    return folder


def run(folder: Path, graph: str, x: torch.Tensor) -> torch.Tensor:
    """One exported graph on `x` in onnxruntime, on one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / f"{graph}.onnx"), options, providers=["CPUExecutionProvider"])
    entry = json.loads((folder / MANIFEST).read_text())["graphs"][graph]
    (out,) = session.run(None, {entry["inputs"][0]["name"]: x.numpy()})
    assert out.shape[1] == entry["outputs"][0]["shape"][1]
    return torch.from_numpy(out)


def close(folder: Path, graph: str, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run `graph` and its torch network on `x`, check they agree, and return torch's output."""
    with torch.no_grad():
        ref = net(x)
    got = run(folder, graph, x)
    diff = (got - ref).abs().max().item()
    print(f"{graph}: max abs diff {diff:.3g} (output up to {ref.abs().max().item():.3g})")
    assert got.shape == ref.shape
    assert diff <= ONNX_RTOL * max(1.0, ref.abs().max().item()), graph
    return ref


def image(photo: np.ndarray, side: int = 64) -> torch.Tensor:
    """A side x side crop of a real photo as (1, 3, side, side) in [0, 1]."""
    return torch.from_numpy(photo[:side, :side].copy()).permute(2, 0, 1)[None].float().div(255)


def synthesis_matches(folder: Path, model, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Check g_s on the ŷ that decoding y's streams gives: against its torch network, and its
    pixels within one level of the fast path's in float32. Returns the real-valued ŷ."""
    y_fixed = model.decompress_latent(model.compress_latent(y, 60), x.shape[2], x.shape[3], 60)
    y_hat = y_fixed.float() / 2**FRAC_BITS
    close(folder, "g_s", fast_g_s(model), y_hat)
    pixels = run(folder, "g_s", y_hat).mul(255).round().clamp(0, 255)
    fast = fast_synthesis(model, torch.float32)(y_fixed).float()
    assert pixels.shape == fast.shape and (pixels - fast).abs().max() <= 1
    return y_hat


def test_checkerboard_graphs_match_torch(checkerboard_dir, photo):
    """Each graph on what it sees when coding a real photo: its latent, the decoded ŷ, the anchors."""
    model = registry.load("checkerboard").model
    x = image(photo)
    y = close(checkerboard_dir, "g_a", float_twin(model, "g_a"), x)
    z = torch.round(close(checkerboard_dir, "h_a", float_twin(model, "h_a"), y))
    hyper = close(checkerboard_dir, "h_s", float_twin(model, "h_s"), z)
    y_hat = synthesis_matches(checkerboard_dir, model, y, x)
    first = anchors(*y_hat.shape[-2:]).to(y_hat.dtype)
    ctx = close(checkerboard_dir, "context", float_twin(model, "context"), neighbours(y_hat * first))
    close(checkerboard_dir, "param_net", float_twin(model, "param_net"), torch.cat([hyper, ctx], 1))


def test_manifest_and_coding_state(checkerboard_dir):
    loaded = registry.load("checkerboard")
    manifest = json.loads((checkerboard_dir / MANIFEST).read_text())
    assert manifest["model"] == "checkerboard" and manifest["weights_hash"] == loaded.weights_hash.hex()
    assert manifest["architecture"] == "checkerboard" and manifest["config"] == loaded.model.config
    assert manifest["downsampling"] == 64
    assert set(manifest["graphs"]) == {"g_a", "h_a", "g_s", "h_s", "context", "param_net"}
    assert all((checkerboard_dir / g["file"]).is_file() for g in manifest["graphs"].values())
    path = Path(registry.available()["checkerboard"]["path"])
    tensors, _ = deserialize(path.read_bytes(), str(path))
    want = {k: v for k, v in tensors.items() if k.startswith("coding.")}
    got = safetensors_numpy.load_file(str(checkerboard_dir / CODING_FILE))  # readable without torch
    assert set(got) == set(want) and manifest["coding"]["tensors"] == len(want)
    for k, v in want.items():
        assert torch.equal(torch.from_numpy(got[k]), v), k


def test_conv_ae_graphs_match_torch(tmp_path, photo, capsys):
    """Another architecture (no hyperprior, a sigmoid head); also --force and its refusal."""
    assert export("conv-ae", tmp_path, capsys=capsys)[0] == 0
    model = registry.load("conv-ae").model
    x = image(photo)
    synthesis_matches(tmp_path, model, close(tmp_path, "g_a", float_twin(model, "g_a"), x), x)
    before = (tmp_path / MANIFEST).stat().st_mtime_ns
    code, err = export("conv-ae", tmp_path, capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and "already exists (use --force to overwrite)" in err
    assert (tmp_path / MANIFEST).stat().st_mtime_ns == before
    assert export("conv-ae", tmp_path, "--force", capsys=capsys)[0] == 0


def test_comcnn_graphs_match_torch(tmp_path, photo, capsys):
    assert export("comcnn", tmp_path, capsys=capsys)[0] == 0
    model = registry.load("comcnn").model
    x = image(photo, 32)
    compact = close(tmp_path, "com", model.compact, x)
    close(tmp_path, "rec", model.restore, model.rec_input(compact.clamp(0, 1), [60]))


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown model 'nope'"),
    (["conv-ae", "missing/sub"], "no such directory"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    model, *rest = args
    code, err = export(model, tmp_path / (rest[0] if rest else "out"), capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and message in err and "Traceback" not in err


def test_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    code, err = export("conv-ae", tmp_path / "f", capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and "not a directory" in err


def test_without_the_extra(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    code, err = export("checkerboard", tmp_path, capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and "pip install 'nic[onnx]'" in err
    assert not list(tmp_path.iterdir())
