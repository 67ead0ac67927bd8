"""A minimal safetensors reader: nic's weights files without the safetensors or torch packages.

The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw little-endian data. Only the dtypes nic's coding tensors use
are read; anything malformed is a NicError naming the file.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from nic_decode.errors import NicError

_DTYPES = {"I8": "<i1", "I16": "<i2", "I32": "<i4", "I64": "<i8", "U8": "u1", "F16": "<f2", "F32": "<f4",
           "F64": "<f8", "BOOL": "?"}


def header(data: bytes, what: str) -> dict:
    """The parsed JSON header of a safetensors file."""
    try:
        (n,) = struct.unpack_from("<Q", data)
        if 8 + n > len(data):
            raise ValueError("header longer than the file")
        parsed = json.loads(data[8:8 + n])
        if not isinstance(parsed, dict):
            raise ValueError("header is not a JSON object")
        return parsed
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise NicError(f"{what}: not a nic weights file ({e})") from None


def metadata(data: bytes, what: str) -> dict[str, str]:
    meta = header(data, what).get("__metadata__", {})
    return meta if isinstance(meta, dict) else {}


def load(data: bytes, what: str, prefix: str = "") -> dict[str, np.ndarray]:
    """The tensors whose names start with `prefix`, as read-only numpy arrays (no copy)."""
    head = header(data, what)
    base = 8 + struct.unpack_from("<Q", data)[0]
    out = {}
    for name, info in head.items():
        if name == "__metadata__" or not name.startswith(prefix):
            continue
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            start, end = (base + int(o) for o in info["data_offsets"])
            shape = tuple(int(s) for s in info["shape"])
            if not base <= start <= end <= len(data) or end - start != dtype.itemsize * int(np.prod(shape)):
                raise ValueError(f"tensor {name!r} does not fit the file")
            out[name] = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize,
                                      offset=start).reshape(shape)
        except (KeyError, TypeError, ValueError) as e:
            raise NicError(f"{what}: not a nic weights file ({e})") from None
    return out
