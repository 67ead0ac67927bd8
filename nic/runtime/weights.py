"""The weights file: safetensors with float weights, integer coding tensors and the config.

Layers that run as integer networks at coding time are stored only in that form.
Other convolution kernels are stored in float16 (the round trip costs < 0.01 dB); GDN, densities,
gains and every integer coding tensor keep their exact dtype.

An archived release only ever decodes old files, so the archive keeps a decode-only cut of it
(`cut`): the same file without the tensors that only encoding or training reads. The
.nic files made with it name the full file's hash, so the cut records the full file's sha256
in its metadata (`cut_from`); the store checks the cut against its card before believing it.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from nic.errors import NicError

if TYPE_CHECKING:  # the runtime never imports an architecture; this is a type only
    from nic.models.base import CompressionModel

FORMAT = "nic-weights-1"
CUT_FROM = "decode_only_of"  # metadata of a decode-only cut: the sha256 (hex) of the full file


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
    n, header = _header(data)
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors keeps the tensor data 8-byte aligned
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def _header(data: bytes) -> tuple[int, dict]:
    """The length and the parsed JSON of a safetensors file's header."""
    (n,) = struct.unpack_from("<Q", data)
    return n, json.loads(data[8:8 + n])


def _metadata(data: bytes) -> dict[str, str]:
    return _header(data)[1].get("__metadata__", {})


def cut(data: bytes, drop: tuple[str, ...]) -> bytes:
    """The decode-only cut of full weights file `data`: without the tensors under the state-dict
    prefixes `drop` (what only encoding or training reads); every other tensor, the config and
    the coding state are kept bit for bit, so decoding gives the same pixels."""
    meta = _metadata(data)
    if CUT_FROM in meta:
        raise NicError(f"already a decode-only cut of {meta[CUT_FROM][:16]}")
    tensors = {k: v for k, v in st_load(data).items() if not k.startswith(drop)}
    return _canonical(st_save(tensors, metadata=meta | {CUT_FROM: hashlib.sha256(data).hexdigest()}))


def cut_from(data: bytes) -> str | None:
    """The sha256 (hex) of the full weights file that `data` is a decode-only cut of, as the cut
    claims it (the store checks the claim); None for a full weights file."""
    try:
        claimed = _metadata(data).get(CUT_FROM)
    except (struct.error, ValueError, AttributeError):
        return None  # not a weights file at all: `deserialize` says so
    return claimed if isinstance(claimed, str) and re.fullmatch(r"[0-9a-f]{64}", claimed) else None


def identity(data: bytes) -> bytes:
    """The weights hash that .nic files made with these weights carry: a full file's own, a
    decode-only cut's claimed one (see `store.verified_hash` for the checked form)."""
    claimed = cut_from(data)
    return bytes.fromhex(claimed)[:8] if claimed else weights_hash(data)


def deserialize(data: bytes, what: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config) of a weights file; anything malformed is a one-line NicError."""
    try:
        meta = _header(data)[1]["__metadata__"]
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        if CUT_FROM in meta and cut_from(data) is None:
            raise ValueError(f"a malformed {CUT_FROM!r}")
        return st_load(data), json.loads(meta["config"])
    except Exception as e:  # safetensors, struct, json and key errors all mean the same here
        raise NicError(f"{what}: not a nic weights file ({e})") from None
