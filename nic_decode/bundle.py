"""The models the `nic-decode` wheel carries, which has no nic (and no weights files) beside it.

One folder per weights file it decodes, `models/<model>-<16 hex digits of its hash>/`, built from
nic's shipped and archived weights by scripts/build_decoder_wheel.py (never committed):

    coding.npz           the weights file's `coding.*` tensors, compact: each stored as its byte
                         planes (byte k of every value, k = 0, 1, ...), deflated; probability
                         tables' counts as second differences first
    g_s.onnx             the float32 synthesis of nic's fast path (`nic export-onnx`'s g_s), for
                         the models whose fast path has one (hyperprior, checkerboard); its
                         transposed convs take their int16 weights from the coding tensors
                         (the manifest's "external"), handed to onnxruntime at load
    rec.onnx             comcnn's RecCNN in float32 (`nic export-onnx`'s rec), the weights that
                         the weights file stores as float16 stored so and cast back in the graph
    manifest.json        model, weights hash, architecture, config, graph file; written last

The install's size is a budget (docs/DECODER.md). Integer weights and gains sit well inside
their types' range, so planed, their high bytes deflate well (int16 weights to 83%, int64
gains and biases to a fifth); a table's counts are smooth in the symbol, so their second
differences are small (factorized's 8.2 MB of int32 counts: 2.0 MB). Expanding them is exact
integer arithmetic, ~0.06 s per model load.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from nic_decode.errors import NicError

MODELS = Path(__file__).resolve().parent / "models"
FORMAT = "nic-decode-model-2"
PACKED, MANIFEST = "coding.npz", "manifest.json"
G_S, REC = "g_s.onnx", "rec.onnx"  # the float graph a folder may carry, named in its manifest
COUNTS, DIFF2 = ".counts", ".diff2"  # a table's counts, and the suffix they are packed under
INDEX = "__index__"  # the member of coding.npz that holds each tensor's dtype and shape


def folder(name: str, whash: bytes) -> Path | None:
    """The bundled folder of model `name`'s weights `whash`, if the bundle has it (complete)."""
    path = MODELS / f"{name}-{whash.hex()}"
    return path if (path / MANIFEST).is_file() else None


def hashes(name: str) -> list[str]:
    """The weights hashes (hex) of model `name` that the bundle carries, for error messages."""
    return sorted(p.parent.name.removeprefix(f"{name}-") for p in MODELS.glob(f"{name}-*/{MANIFEST}"))


def pack(tensors: dict[str, np.ndarray]) -> bytes:
    """Tensors -> the bytes of coding.npz (the build's half of `unpack`, kept beside it)."""
    index, planes = {}, {}
    for name, a in tensors.items():
        if name.endswith(COUNTS):
            a = np.diff(np.diff(a.astype(np.int64), prepend=0), prepend=0).astype(np.int32)  # |counts| < 2**24
            name += DIFF2
        a = np.ascontiguousarray(a)
        index[name] = [a.dtype.str, list(a.shape)]
        planes[name] = np.ascontiguousarray(a.reshape(-1).view(np.uint8).reshape(-1, a.itemsize).T)  # byte planes
    buf = io.BytesIO()
    np.savez_compressed(buf, **{INDEX: np.array(json.dumps(index))}, **planes)
    return buf.getvalue()


def unpack(data: bytes, what: str) -> dict[str, np.ndarray]:
    """The tensors `pack` packed, counts expanded back (exact: int64 running sums)."""
    out = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for name, (dtype, shape) in json.loads(str(npz[INDEX])).items():
                a = np.ascontiguousarray(npz[name].T).view(np.dtype(dtype)).reshape(shape)
                out[name.removesuffix(DIFF2)] = np.cumsum(np.cumsum(a, dtype=np.int64)) if name.endswith(DIFF2) else a
    except (zipfile.BadZipFile, OSError, KeyError, TypeError, ValueError, EOFError) as e:
        raise NicError(f"{what}: damaged model file ({type(e).__name__}: {e})") from None
    for a in out.values():
        a.flags.writeable = False  # shared by every caller of `coding`
    return out


@functools.lru_cache(maxsize=4)
def coding(path: Path) -> dict[str, np.ndarray]:
    """The coding tensors (without "coding.") of a bundled folder, read-only; expanded once per
    process (the exact decoder and the fast g_s both take them)."""
    try:
        packed = (path / PACKED).read_bytes()
    except OSError as e:
        raise NicError(f"{path}: damaged model folder ({e})") from None
    return unpack(packed, str(path / PACKED))


def read(path: Path) -> tuple[str, dict, dict[str, np.ndarray], Path | None, tuple[str, ...]]:
    """(architecture, config, coding tensors without "coding.", its graph or None, the coding
    tensors the graph takes) of a bundled folder."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise NicError(f"{path}: damaged model folder ({e})") from None
    if manifest.get("format") != FORMAT:
        raise NicError(f"{path}: not a nic-decode model folder (format {manifest.get('format')!r})")
    graph, external = manifest.get("graph"), tuple(manifest.get("external", ()))
    tensors = coding(path)
    if graph not in (None, G_S, REC) or not set(external) <= tensors.keys():
        raise NicError(f"{path}: damaged model folder (graph {graph!r} taking {list(external)})")
    return manifest["architecture"], manifest["config"], tensors, path / graph if graph else None, external
