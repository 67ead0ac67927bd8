"""Build the `nic-decode` wheel into dist/: nic_decode, plus a models folder made from every
shipped and archived weights file of the models it decodes (`nic_decode/bundle.py`).

The wheel is built from a staging copy (decoder/pyproject.toml beside a copy of nic_decode/),
so that no generated file lands in the checkout. Needs nic's install (torch, onnx) to export
the graphs; `--no-build-isolation`: the venv's setuptools, no download.

    python scripts/build_decoder_wheel.py [--out dist]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save as st_save

from nic.models import registry
from nic.onnx_export import graphs, to_onnx
from nic.runtime.weights import deserialize
from nic_decode import bundle
from nic_decode import tensors as st
from nic_decode.decoder import DECODE_COST
from nic_decode.integer import FRAC_BITS

ROOT = Path(__file__).resolve().parent.parent


def weights_files() -> list[tuple[str, Path]]:
    """(model, weights file) of every shipped and archived weights file nic_decode decodes."""
    out = []
    for name in DECODE_COST:
        out.append((name, registry.WEIGHTS_DIR / f"{name}.safetensors"))
        out += [(name, p) for p in sorted((registry.WEIGHTS_DIR / "archive").glob(f"{name}-*.safetensors"))]
    return out


def _subpixel_taps(k: int, padding: int) -> np.ndarray:
    """(4 phases, 9 taps) -> index into a k x k kernel flattened, k * k where the tap is zero:
    nic's `subpixel_kernel` (runtime/integer.py) as a gather."""
    index = np.full((4, 9), k * k, dtype=np.int64)
    for ay, ax, ty, tx in np.ndindex(2, 2, 3, 3):
        ky, kx = ay + padding - 2 * (ty - 1), ax + padding - 2 * (tx - 1)
        if 0 <= ky < k and 0 <= kx < k:
            index[ay * 2 + ax, ty * 3 + tx] = ky * k + kx
    return index


def _external_int16(name: str, ints: np.ndarray, head: dict, base: int, source: str) -> TensorProto:
    """An int16 initializer whose bytes are those of tensor `source` in coding.safetensors."""
    stored = TensorProto(name=name, data_type=TensorProto.INT16, dims=ints.shape)
    stored.data_location = TensorProto.EXTERNAL
    start, end = head[source]["data_offsets"]
    for key, value in (("location", bundle.CODING), ("offset", str(base + start)), ("length", str(end - start))):
        stored.external_data.add(key=key, value=value)
    return stored


def slim_graph(graph: bytes, coding: bytes) -> bytes:
    """g_s.onnx whose transposed convs read their weights from coding.safetensors (ONNX external
    data: the int16 tensor's bytes there, cast and scaled by 2**-bits per output channel in the
    graph, the same float32 values, checked), not from a float32 copy: 0.16 MB, not 3.4 MB. Each
    runs as a 3x3 conv making its four output phases + DepthToSpace, as nic's fast path runs its
    last one: onnxruntime's transposed conv took 1.8x as long. onnxruntime folds the weights'
    cast, scale and gather once per session."""
    model = onnx.load_from_string(graph)
    head = st.header(coding, bundle.CODING)
    base = 8 + int.from_bytes(coding[:8], "little")
    tensors = st.load(coding, bundle.CODING, "coding.g_s.")
    inits = {i.name: i for i in model.graph.initializer}
    prologue, body = [], []
    for node in model.graph.node:
        layer = node.input[1].removesuffix(".weight") if node.op_type == "ConvTranspose" else ""
        source = f"coding.g_s.{layer}.weight"
        if source not in tensors:
            body.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ints, bits = tensors[source], tensors[f"coding.g_s.{layer}.bits"]
        cin, cout, k, _ = ints.shape
        if attrs.get("strides") != [2, 2] or attrs.get("output_padding") != [1, 1] or len(set(attrs["pads"])) != 1:
            raise SystemExit(f"{node.name}: not a stride-2 transposed conv that doubles its input")
        scale = np.ldexp(np.float32(1), -bits.astype(np.int32)).astype(np.float32).reshape(1, -1, 1, 1)
        weight, bias = (numpy_helper.to_array(inits[n]) for n in node.input[1:])
        if not np.array_equal(ints.astype(np.float32) * scale, weight):
            raise SystemExit(f"{node.input[1]}: not coding's int16 weights times 2**-bits; cannot slim")
        w = node.input[1]
        model.graph.initializer.remove(inits[w])
        model.graph.initializer.remove(inits[node.input[2]])
        model.graph.initializer.extend([
            _external_int16(f"{w}.int16", ints, head, base, source), numpy_helper.from_array(scale, f"{w}.scale"),
            numpy_helper.from_array(np.array([cin, cout, k * k], np.int64), f"{w}.flat"),
            numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 1], np.int64), f"{w}.pad"),
            numpy_helper.from_array(_subpixel_taps(k, attrs["pads"][0]), f"{w}.taps"),
            numpy_helper.from_array(np.array([cout * 4, cin, 3, 3], np.int64), f"{w}.shape"),
            numpy_helper.from_array(np.repeat(bias, 4), f"{w}.bias4")])
        prologue += [helper.make_node("Cast", [f"{w}.int16"], [f"{w}.float"], to=TensorProto.FLOAT),
                     helper.make_node("Mul", [f"{w}.float", f"{w}.scale"], [f"{w}.real"]),
                     helper.make_node("Reshape", [f"{w}.real", f"{w}.flat"], [f"{w}.taps_in"]),
                     helper.make_node("Pad", [f"{w}.taps_in", f"{w}.pad"], [f"{w}.padded"]),  # index k*k: 0
                     helper.make_node("Gather", [f"{w}.padded", f"{w}.taps"], [f"{w}.gathered"], axis=2),
                     helper.make_node("Transpose", [f"{w}.gathered"], [f"{w}.ordered"], perm=[1, 2, 0, 3]),
                     helper.make_node("Reshape", [f"{w}.ordered", f"{w}.shape"], [f"{w}.kernel"])]
        body += [helper.make_node("Conv", [node.input[0], f"{w}.kernel", f"{w}.bias4"], [f"{w}.phases"],
                                  kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                 helper.make_node("DepthToSpace", [f"{w}.phases"], list(node.output), blocksize=2, mode="CRD")]
    model.graph.ClearField("node")
    model.graph.node.extend(prologue + body)
    return model.SerializeToString()


def check_graph(slim: Path, full: bytes, channels: int) -> None:
    """The slim graph computes what the full one does, up to float32 rounding of sums."""
    y = np.random.default_rng(0).normal(0, 2, (1, channels, 6, 5)).astype(np.float32)
    (a,), (b,) = (ort.InferenceSession(g, providers=["CPUExecutionProvider"]).run(None, {"y_hat": y})
                  for g in (str(slim), full))
    if a.shape != b.shape or np.abs(a - b).max() > 1e-4:
        raise SystemExit(f"{slim}: differs from nic's graph ({np.abs(a - b).max() if a.shape == b.shape else a.shape})")


def export_weights(name: str, path: Path, models: Path) -> Path:
    """What decoding needs of one weights file (a decode-only cut included, under the hash it
    claims): its bundle folder in `models`. The nic-by-path twin of `nic export-onnx`."""
    data = path.read_bytes()
    whash = registry.weights_hash_of(path)
    loaded = registry.from_bytes(name, data, source=str(path))
    tensors, config = deserialize(data, str(path))
    folder = models / f"{name}-{whash.hex()}"
    folder.mkdir(parents=True)
    coding = {k: v.contiguous() for k, v in tensors.items() if k.startswith("coding.")}
    coding_file = st_save(coding, metadata={"model": name, "weights_hash": whash.hex()})
    (folder / bundle.CODING).write_bytes(coding_file)
    full = to_onnx(next(g for g in graphs(loaded.model) if g.name == "g_s"))[0]  # `nic export-onnx`'s g_s
    (folder / bundle.GRAPH).write_bytes(slim_graph(full, coding_file))
    check_graph(folder / bundle.GRAPH, full, coding["coding.g_s.0.weight"].shape[0])
    manifest = {"format": bundle.FORMAT, "model": name, "weights_hash": whash.hex(),
                "architecture": config.pop("architecture"), "config": config, "frac_bits": FRAC_BITS,
                "from": path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name}
    (folder / bundle.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def build(out: Path) -> Path:
    """Stage, export, build; returns the wheel's path."""
    with tempfile.TemporaryDirectory(prefix="nic-decode-") as tmp:
        stage = Path(tmp)
        shutil.copy(ROOT / "decoder/pyproject.toml", stage)
        shutil.copytree(ROOT / "nic_decode", stage / "nic_decode",
                        ignore=shutil.ignore_patterns("__pycache__", "models"))
        for name, path in weights_files():
            export_weights(name, path, stage / "nic_decode/models")
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("nic_decode-*.whl"):
            old.unlink()
        subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out.resolve())], cwd=stage, check=True)
    (wheel,) = out.glob("nic_decode-*.whl")
    return wheel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    wheel = build(parser.parse_args().out)
    print(f"{wheel} ({wheel.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
