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
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from nic.models import registry
from nic.onnx_export import graphs, to_onnx
from nic.runtime.weights import deserialize
from nic_decode import bundle
from nic_decode.decoder import DECODE_COST
from nic_decode.fast import OnnxGraph
from nic_decode.integer import FRAC_BITS

ROOT = Path(__file__).resolve().parent.parent


G_S_GRAPHS = ("hyperprior", "checkerboard")  # architectures whose bundle carries a float g_s (nic_decode/fast.py)


def weights_files() -> list[tuple[str, Path]]:
    """(model, weights file) of every shipped and archived weights file (a retired model has
    archived ones only), each an architecture nic_decode decodes (DECODE_COST). Archived files
    are NAME-<16 hex digits>, so one model's never pass for another's whose name it starts."""
    out = []
    for name in (*registry.SHIPPED, *registry.RETIRED):
        current = registry.WEIGHTS_DIR / f"{name}.safetensors"
        out += [(name, current)] if current.is_file() else []
        out += [(name, p) for p in sorted((registry.WEIGHTS_DIR / "archive").glob(f"{name}-*.safetensors"))
                if re.fullmatch(f"{re.escape(name)}-[0-9a-f]{{16}}", p.stem)]
    for _, path in out:
        if deserialize(path.read_bytes(), str(path))[1]["architecture"] not in DECODE_COST:
            raise SystemExit(f"{path}: nic_decode does not decode its architecture; add it to DECODE_COST")
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


def _external_int16(name: str, shape: tuple[int, ...]) -> TensorProto:
    """An int16 initializer that the graph does not hold: nic_decode hands it coding tensor `name`
    when it opens the graph (onnxruntime's in-memory external initializers, `fast.OnnxGraph`)."""
    stored = TensorProto(name=name, data_type=TensorProto.INT16, dims=shape)
    stored.data_location = TensorProto.EXTERNAL
    stored.external_data.add(key="location", value=bundle.PACKED)
    return stored


def slim_graph(graph: bytes, coding: dict[str, np.ndarray]) -> tuple[bytes, list[str]]:
    """g_s.onnx whose transposed convs take their weights from the coding tensors (`coding`,
    without "coding."; int16, cast and scaled by 2**-bits per output channel in the graph, the
    same float32 values, checked), not from a float32 copy: 0.16 MB, not 3.4 MB; and the names of
    the coding tensors it takes. Each runs as a 3x3 conv making its four output phases +
    DepthToSpace, as nic's fast path runs its last one: onnxruntime's transposed conv took 1.8x as
    long. onnxruntime folds the weights' cast, scale and gather once per session."""
    model = onnx.load_from_string(graph)
    inits = {i.name: i for i in model.graph.initializer}
    prologue, body, taken = [], [], []
    for node in model.graph.node:
        layer = node.input[1].removesuffix(".weight") if node.op_type == "ConvTranspose" else ""
        source = f"g_s.{layer}.weight"
        if source not in coding:
            body.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ints, bits = coding[source], coding[f"g_s.{layer}.bits"]
        cin, cout, k, _ = ints.shape
        if attrs.get("strides") != [2, 2] or attrs.get("output_padding") != [1, 1] or len(set(attrs["pads"])) != 1:
            raise SystemExit(f"{node.name}: not a stride-2 transposed conv that doubles its input")
        scale = np.ldexp(np.float32(1), -bits.astype(np.int32)).astype(np.float32).reshape(1, -1, 1, 1)
        weight, bias = (numpy_helper.to_array(inits[n]) for n in node.input[1:])
        if not np.array_equal(ints.astype(np.float32) * scale, weight):
            raise SystemExit(f"{node.input[1]}: not coding's int16 weights times 2**-bits; cannot slim")
        taken.append(source)
        w = node.input[1]
        model.graph.initializer.remove(inits[w])
        model.graph.initializer.remove(inits[node.input[2]])
        model.graph.initializer.extend([
            _external_int16(source, ints.shape), numpy_helper.from_array(scale, f"{w}.scale"),
            numpy_helper.from_array(np.array([cin, cout, k * k], np.int64), f"{w}.flat"),
            numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 1], np.int64), f"{w}.pad"),
            numpy_helper.from_array(_subpixel_taps(k, attrs["pads"][0]), f"{w}.taps"),
            numpy_helper.from_array(np.array([cout * 4, cin, 3, 3], np.int64), f"{w}.shape"),
            numpy_helper.from_array(np.repeat(bias, 4), f"{w}.bias4")])
        prologue += [helper.make_node("Cast", [source], [f"{w}.float"], to=TensorProto.FLOAT),
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
    return model.SerializeToString(), taken


def half_weights(graph: bytes) -> bytes:
    """A graph whose float32 weights that float16 holds exactly (RecCNN's conv weights, which
    the weights file stores as float16) are stored so and cast back first thing in the graph:
    the same float32 values, half the bytes (1.3 MB per comcnn weights file, not 2.7)."""
    model = onnx.load_from_string(graph)
    casts = []
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype != np.float32 or not np.array_equal(a.astype(np.float16).astype(np.float32), a):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(a.astype(np.float16), f"{name}.f16"))
        casts.append(helper.make_node("Cast", [f"{name}.f16"], [name], to=TensorProto.FLOAT))
    nodes = casts + list(model.graph.node)
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    return model.SerializeToString()


def check_graph(slim: Path, full: bytes, tolerance: float, external: dict[str, np.ndarray]) -> None:
    """The slim graph, as nic_decode opens it, computes what the full one does, up to float32
    rounding of sums."""
    ours, theirs = OnnxGraph(slim, external), ort.InferenceSession(full, providers=["CPUExecutionProvider"])
    first = theirs.get_inputs()[0]
    x = np.random.default_rng(0).normal(0, 2, (1, first.shape[1], 6, 5)).astype(np.float32)
    a, (b,) = ours(x), theirs.run(None, {first.name: x})
    if a.shape != b.shape or np.abs(a - b).max() > tolerance:
        raise SystemExit(f"{slim}: differs from nic's graph ({np.abs(a - b).max() if a.shape == b.shape else a.shape})")


def export_weights(name: str, path: Path, models: Path) -> Path:
    """What decoding needs of one weights file (a decode-only cut included, under the hash it
    claims): its bundle folder in `models`. The nic-by-path twin of `nic export-onnx`."""
    data = path.read_bytes()
    whash = registry.weights_hash_of(path)
    tensors, config = deserialize(data, str(path))
    architecture = config.pop("architecture")
    folder = models / f"{name}-{whash.hex()}"
    folder.mkdir(parents=True)
    coding = {k.removeprefix("coding."): v.contiguous() for k, v in tensors.items() if k.startswith("coding.")}
    graph = {**dict.fromkeys(G_S_GRAPHS, bundle.G_S), "comcnn": bundle.REC}.get(architecture)
    (folder / bundle.PACKED).write_bytes(bundle.pack({k: v.numpy() for k, v in coding.items()}))
    external: list[str] = []
    if graph is not None:
        loaded = registry.from_bytes(name, data, source=str(path))
        net = graph.removesuffix(".onnx")
        full = to_onnx(next(g for g in graphs(loaded.model) if g.name == net))[0]  # `nic export-onnx`'s graph
        if graph == bundle.G_S:
            slim, external = slim_graph(full, {k: v.numpy() for k, v in coding.items()})
            (folder / graph).write_bytes(slim)
            check_graph(folder / graph, full, 1e-4, {k: coding[k].numpy() for k in external})
        else:
            (folder / graph).write_bytes(half_weights(full))
            check_graph(folder / graph, full, 1e-6, {})
    unpacked = bundle.coding(folder)
    if unpacked.keys() != coding.keys() or any(not np.array_equal(unpacked[k], v.numpy()) for k, v in coding.items()):
        raise SystemExit(f"{folder}: the bundle does not read back as the weights' coding tensors")
    manifest = {"format": bundle.FORMAT, "model": name, "weights_hash": whash.hex(),
                "architecture": architecture, "config": config, "graph": graph, "external": external,
                "frac_bits": FRAC_BITS,
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
