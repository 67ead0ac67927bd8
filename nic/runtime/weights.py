"""The weights file: safetensors with float weights, integer coding tensors and the config.

Layers that run as integer networks at coding time are stored only in that form.
Other convolution kernels are stored in float16 (the round trip costs < 0.01 dB); GDN, densities,
gains and every integer coding tensor keep their exact dtype.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from nic.errors import NicError

if TYPE_CHECKING:  # the runtime never imports an architecture; this is a type only
    from nic.models.base import CompressionModel

FORMAT = "nic-weights-1"


def weights_hash(data: bytes) -> bytes:
    """The 8-byte identity of a weights file, written into every .nic header made with it."""
    return hashlib.sha256(data).digest()[:8]


def serialize(model: CompressionModel, config: dict) -> bytes:
    """Weights + coding state of a trained model."""
    tensors = {}
    for k, v in model.state_dict().items():
        if k.startswith(model.integer_only):
            continue  # stored as its exact integer twin in the coding tensors
        is_kernel = k.endswith(".weight") and v.dim() == 4 and "gamma" not in k
        tensors[k] = (v.half() if is_kernel else v).contiguous()
    tensors |= {k: v.contiguous() for k, v in model.export_coding().items()}
    return _canonical(st_save(tensors, metadata={"format": FORMAT, "config": json.dumps(config)}))


def _canonical(data: bytes) -> bytes:
    """The same file with its header's metadata keys in sorted order.

    safetensors writes metadata in hash-map order, which changes from process to process; the
    weights hash names the weights in every .nic header, so the same weights must give the
    same bytes."""
    (n,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors keeps the tensor data 8-byte aligned
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def deserialize(data: bytes, what: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config) of a weights file; anything malformed is a one-line NicError."""
    try:
        (n,) = struct.unpack_from("<Q", data)
        meta = json.loads(data[8:8 + n])["__metadata__"]
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        return st_load(data), json.loads(meta["config"])
    except Exception as e:  # safetensors, struct, json and key errors all mean the same here
        raise NicError(f"{what}: not a nic weights file ({e})") from None
