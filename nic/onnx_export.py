"""`nic export-onnx`: a model's float networks as ONNX graphs, for decoders without PyTorch.

A folder that a decoder in another runtime (onnxruntime, in `nic_decode`) needs and nothing else:

    g_a.onnx, h_a.onnx, ...   each float32 network, batch and spatial axes dynamic
    coding.safetensors        the weights file's `coding.*` tensors (integer networks, gains,
                              entropy tables), as stored: what the exact decoder runs
    manifest.json             the model, its weights hash and config, and every graph's file,
                              inputs, outputs and meaning; written last, so a folder with a
                              manifest is complete

The graphs are what the fast float path computes in float32 (`runtime/fast.py`; never bf16,
whose precision depends on the CPU). The prior path must stay exact (one ulp there picks
another table), so the float h_s and context networks are for encoders and analysis tools
only: a decoder takes them from coding.safetensors. Exported with torch's TorchScript exporter
(`dynamo=False`): it needs only the `onnx` package and takes ~2 s for the default model, where
the dynamo exporter takes ~10 s and needs onnxscript, for the same graphs.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import nn

from nic.entropy.checkerboard import OFFSETS, neighbours
from nic.errors import NicError
from nic.models import registry
from nic.models.base import LatentModel
from nic.models.comcnn import ComRecCNN
from nic.runtime.fast import FastNet, float_twin
from nic.runtime.integer import FRAC_BITS
from nic.runtime.weights import deserialize, identity
from nic.writes import atomic_write, check_writable

FORMAT = "nic-onnx-1"
OPSET = 18
CODING_FILE = "coding.safetensors"
MANIFEST = "manifest.json"


@dataclass
class Graph:
    """One network to export: its module, an example input (traced for the graph's shapes),
    its tensor names and what it computes, for the manifest."""

    name: str
    side: str  # "encoder" or "decoder": which coder runs it
    net: nn.Module
    example: torch.Tensor
    input: str
    output: str
    computes: str


class _Call(nn.Module):
    """A model's method as a module, so that a network with glue around it (ComCNN's pooling,
    RecCNN's residual) exports as one graph, its parameters as the graph's weights."""

    def __init__(self, model: nn.Module, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


def fast_g_s(model: LatentModel) -> nn.Sequential:
    """The fast synthesis's network in float32 (subpixel head, GDN scaled as there), untiled."""
    fast = FastNet(model.g_s, torch.float32, split_gdn=True)
    return nn.Sequential(*fast.body, *fast.head).eval()


def _latent_graphs(model: LatentModel) -> list[Graph]:
    """g_a and g_s; with a hyperprior h_a and h_s; with a checkerboard its two context networks."""
    s = model.downsampling
    x = torch.rand(1, 3, 2 * s, 3 * s)  # unequal sides, none of 1: no axis traces as a constant
    with torch.no_grad():
        y = float_twin(model, "g_a")(x)
    graphs = [
        Graph("g_a", "encoder", float_twin(model, "g_a"), x, "x", "y",
              "analysis: image in [0, 1] (padded to the model's downsampling) -> latent y"),
        Graph("g_s", "decoder", fast_g_s(model), y, "y_hat", "x_hat",
              f"synthesis: real-valued ŷ (the decoded fixed-point latent / 2**{FRAC_BITS}) -> image in [0, 1]; "
              "pixels = clip(round(x_hat * 255), 0, 255)"),
    ]
    if not hasattr(model, "h_a"):
        return graphs
    with torch.no_grad():
        z = torch.round(float_twin(model, "h_a")(y))
        hyper = float_twin(model, "h_s")(z)
    graphs += [
        Graph("h_a", "encoder", float_twin(model, "h_a"), y, "y", "z",
              "hyper-analysis: latent y -> hyper-latent z (coded as round(z))"),
        Graph("h_s", "decoder", float_twin(model, "h_s"), z, "z_hat", "hyper",
              "hyper-synthesis, float twin of the exact integer h_s: round(z) -> (mu, log sigma) of y, "
              "concatenated on channels; decoders must run coding.h_s (exact) to pick tables"),
    ]
    if hasattr(model, "context"):
        near = neighbours(y)
        with torch.no_grad():
            ctx = float_twin(model, "context")(near)
        graphs += [
            Graph("context", "decoder", float_twin(model, "context"), near, "neighbours", "context",
                  "checkerboard context, float twin of coding.context: the decoded anchors at "
                  "context_offsets around each position, offset-major on channels -> context features"),
            Graph("param_net", "decoder", float_twin(model, "param_net"), torch.cat([hyper, ctx], 1),
                  "hyper_context", "delta",
                  "checkerboard parameters, float twin of coding.param_net: hyper and context concatenated "
                  "on channels -> correction added to (mu, log sigma) of the non-anchor symbols"),
        ]
    return graphs


def _comcnn_graphs(model: ComRecCNN) -> list[Graph]:
    """ComCNN (image -> compact image that JPEG codes) and RecCNN (its upsampled input -> image)."""
    x = torch.rand(1, 3, 8, 12)
    rec_in = torch.rand(1, 3 + model.quality_input, 8, 12)
    quality = " and a constant plane of JPEG quality / 100" if model.quality_input else ""
    return [
        Graph("com", "encoder", _Call(model, "compact").eval(), x, "x", "compact",
              "ComCNN: image in [0, 1] -> half-size compact image, coded as JPEG"),
        Graph("rec", "decoder", _Call(model, "restore").eval(), rec_in, "rec_in", "x_hat",
              f"RecCNN: the decoded JPEG upsampled 2x (bicubic, align_corners=False){quality} -> image in "
              "[0, 1]; pixels = round(clip(x_hat, 0, 1) * 255)"),
    ]


def graphs(model: nn.Module) -> list[Graph]:
    """Every network of `model` that coding runs in float."""
    if isinstance(model, LatentModel):
        return _latent_graphs(model)
    if isinstance(model, ComRecCNN):
        return _comcnn_graphs(model)
    raise NicError(f"no ONNX export for architecture {type(model).__name__}")


def _axes(scale: Fraction) -> list[str]:
    """Names of the batch and spatial axes of a tensor at `scale` times the input's resolution."""
    if scale == 1:
        return ["batch", "height", "width"]
    op = f"*{scale}" if scale > 1 else f"/{1 / scale}"
    return ["batch", f"height{op}", f"width{op}"]


def _shape(t: torch.Tensor, names: list[str]) -> list[str | int]:
    return [names[0], t.shape[1], names[1], names[2]]


def to_onnx(graph: Graph) -> tuple[bytes, dict]:
    """(the ONNX file, its manifest entry)."""
    with torch.no_grad():
        out = graph.net(graph.example)
    names_in = _axes(Fraction(1))
    names_out = _axes(Fraction(out.shape[2], graph.example.shape[2]))
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's deprecation notices are for torch's users, not nic's
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.net, (graph.example,), buf, input_names=[graph.input], output_names=[graph.output],
                          dynamic_axes={graph.input: dict(zip((0, 2, 3), names_in, strict=True)),
                                        graph.output: dict(zip((0, 2, 3), names_out, strict=True))},
                          opset_version=OPSET, dynamo=False)
    entry = {"file": f"{graph.name}.onnx", "side": graph.side, "computes": graph.computes,
             "inputs": [{"name": graph.input, "dtype": "float32", "shape": _shape(graph.example, names_in)}],
             "outputs": [{"name": graph.output, "dtype": "float32", "shape": _shape(out, names_out)}]}
    return buf.getvalue(), entry


def _weights(name: str, whash: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config) of the weights file that model `name` was loaded from."""
    path = Path(registry.available()[name]["path"])
    data = path.read_bytes()
    if identity(data) != whash:
        raise NicError(f"{path}: changed while it was being exported; run again")
    return deserialize(data, str(path))


def export_onnx(name: str, folder: Path, force: bool = False) -> dict:
    """Export model `name` into `folder` (made if missing); returns the manifest. Every file is
    checked before any work and written atomically; nothing is replaced without `force`."""
    if folder.exists() and not folder.is_dir():
        raise NicError(f"{folder}: not a directory")
    if not folder.parent.is_dir():
        raise NicError(f"{folder.parent}: no such directory")
    loaded = registry.load(name)
    todo = graphs(loaded.model)
    try:
        folder.mkdir(exist_ok=True)
    except OSError as e:
        raise NicError(f"{folder}: cannot create ({e.strerror})") from None
    for file in [f"{g.name}.onnx" for g in todo] + [CODING_FILE, MANIFEST]:
        check_writable(folder / file, force)
    tensors, config = _weights(name, loaded.weights_hash)
    coding = {k: v.contiguous() for k, v in tensors.items() if k.startswith("coding.")}
    files, entries = {}, {}
    for g in todo:
        files[f"{g.name}.onnx"], entries[g.name] = to_onnx(g)
    files[CODING_FILE] = st_save(coding, metadata={"model": name, "weights_hash": loaded.weights_hash.hex()})
    manifest = {
        "format": FORMAT, "model": name, "weights_hash": loaded.weights_hash.hex(),
        "architecture": config.pop("architecture"), "config": config,
        "downsampling": loaded.model.downsampling,  # image sides are padded to a multiple of this
        "exporter": f"torch {torch.__version__} TorchScript exporter, opset {OPSET}",
        "frac_bits": FRAC_BITS, "graphs": entries,
        "coding": {"file": CODING_FILE, "tensors": len(coding),
                   "computes": "the exact coding state: integer networks (weight, bias, bits per layer), "
                               "per-quality gains and entropy tables, as in the weights file"},
    }
    if "context" in entries:
        manifest["context_offsets"] = [list(o) for o in OFFSETS]
    files[MANIFEST] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    for file, data in files.items():  # the manifest last: a folder with one is complete
        atomic_write(folder / file, data, force)
    return manifest
