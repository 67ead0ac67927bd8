"""The models the `nic-decode` wheel carries, which has no nic (and no weights files) beside it.

One folder per weights file it decodes, `models/<model>-<16 hex digits of its hash>/`, built from
nic's shipped and archived weights by scripts/build_decoder_wheel.py (never committed):

    coding.safetensors   the weights file's `coding.*` tensors, as stored: what exact decoding reads
    g_s.onnx             the float32 synthesis of nic's fast path (`nic export-onnx`'s g_s)
    manifest.json        model, weights hash, architecture and config; written last
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nic_decode import tensors as st
from nic_decode.errors import NicError

MODELS = Path(__file__).resolve().parent / "models"
FORMAT = "nic-decode-model-1"
CODING, GRAPH, MANIFEST = "coding.safetensors", "g_s.onnx", "manifest.json"


def folder(name: str, whash: bytes) -> Path | None:
    """The bundled folder of model `name`'s weights `whash`, if the bundle has it (complete)."""
    path = MODELS / f"{name}-{whash.hex()}"
    return path if (path / MANIFEST).is_file() else None


def hashes(name: str) -> list[str]:
    """The weights hashes (hex) of model `name` that the bundle carries, for error messages."""
    return sorted(p.parent.name.removeprefix(f"{name}-") for p in MODELS.glob(f"{name}-*/{MANIFEST}"))


def read(path: Path) -> tuple[str, dict, dict[str, np.ndarray], Path]:
    """(architecture, config, coding tensors without "coding.", g_s graph) of a bundled folder."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        data = (path / CODING).read_bytes()
    except (OSError, ValueError) as e:
        raise NicError(f"{path}: damaged model folder ({e})") from None
    if manifest.get("format") != FORMAT:
        raise NicError(f"{path}: not a nic-decode model folder (format {manifest.get('format')!r})")
    coding = {k.removeprefix("coding."): v for k, v in st.load(data, str(path / CODING), "coding.").items()}
    return manifest["architecture"], manifest["config"], coding, path / GRAPH
