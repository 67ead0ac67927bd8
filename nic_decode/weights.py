"""Finding the weights a .nic header names, as nic does (nic/runtime/store.py), and reading
the integer coding state from them.

A header names the first 8 bytes of the SHA-256 of the full weights file it was made with.
The current weights of a model are `NAME.safetensors` in nic's package folder or the user's
model folder; replaced or retired ones live in `archive/NAME-HASH.safetensors` beside them,
possibly as a decode-only cut that claims the full file's hash, believed only when its card
records both the cut's and the full file's SHA-256. The `nic-decode` wheel, which has no nic
beside it, carries instead what decoding needs of each of those files, built from them
(`bundle.py`): nic's folders are searched first, the bundle last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nic_decode import bundle
from nic_decode import tensors as st
from nic_decode.errors import FormatError, NicError

FORMAT = "nic-weights-1"
CUT_FROM = "decode_only_of"
RETIRED = {"factorized": "checkerboard"}
PACKAGE_WEIGHTS = Path(__file__).resolve().parent.parent / "nic" / "weights"  # nic's, when installed beside it


def model_dirs() -> list[Path]:
    """Folders of current weights, nic's package folder first (as nic's `store.model_dirs`)."""
    user = Path(os.environ.get("NIC_MODEL_DIR") or Path.home() / ".local/share/nic/models")
    return [PACKAGE_WEIGHTS, user]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise NicError(f"{path}: cannot read ({e.strerror})") from None


def _cut_from(data: bytes) -> str | None:
    try:
        claimed = st.metadata(data, "").get(CUT_FROM)
    except NicError:
        return None
    return claimed if isinstance(claimed, str) and re.fullmatch(r"[0-9a-f]{64}", claimed) else None


def verified_hash(path: Path, data: bytes) -> bytes:
    """The weights hash that files made with `data` name; a cut's claim only if its card vouches."""
    claimed = _cut_from(data)
    if claimed is None:
        return hashlib.sha256(data).digest()[:8]
    return vouched_hash(path, data, claimed)


def vouched_hash(path: Path, data: bytes, claimed: str) -> bytes:
    """The hash a decode-only cut claims (`claimed`, the full file's SHA-256 in hex), believed
    only when its card records both that and the cut's own SHA-256: nic's store asks the same."""
    card_path = path.with_suffix(".json")
    try:
        card = json.loads(_read(card_path))
        matches = card["sha256"] == claimed and card["decode_only"]["sha256"] == hashlib.sha256(data).hexdigest()
    except (NicError, ValueError, TypeError, KeyError):
        matches = False
    if not matches:
        raise NicError(f"{path}: decode-only weights that its card {card_path.name} does not vouch for (refused)")
    return bytes.fromhex(claimed)[:8]


@dataclass
class Weights:
    """A weights file's architecture, config and integer coding tensors ("coding." stripped)."""

    name: str
    architecture: str
    config: dict
    coding: dict[str, np.ndarray]
    graph: Path | None = None  # the bundle's float32 graph: g_s (hyperprior, checkerboard), RecCNN (comcnn)
    external: tuple[str, ...] = ()  # the coding tensors the graph takes as initializers


def find(name: str, whash: bytes) -> Weights:
    """The weights of model `name` whose hash is `whash`, current or archived, or a FormatError."""
    dirs = model_dirs()
    current = [d / f"{name}.safetensors" for d in dirs]
    archived = [d / "archive" / f"{name}-{whash.hex()}.safetensors" for d in dirs]
    found_current = [p for p in current if p.is_file()]
    for path in found_current + [p for p in archived if p.is_file()]:
        data = _read(path)
        if verified_hash(path, data) == whash:
            return _parse(name, data, str(path))
    bundled = bundle.folder(name, whash)
    if bundled is not None:
        return Weights(name, *bundle.read(bundled))
    if found_current:
        installed = hashlib.sha256(_read(found_current[0])).digest()[:8]
        raise FormatError(f"file was made with other weights for model {name!r} ({whash.hex()}): neither the "
                          f"installed ones ({installed.hex()}) nor an archived copy")
    if bundle.hashes(name):
        raise FormatError(f"file was made with other weights for model {name!r} ({whash.hex()}): not among "
                          f"this decoder's ({', '.join(bundle.hashes(name))})")
    if name in RETIRED:
        raise FormatError(f"file was made with weights of the retired model {name!r} ({whash.hex()}) "
                          "that are not in the archive")
    raise NicError(f"unknown model {name!r} (no weights for it in {', '.join(map(str, dirs))})")


def _parse(name: str, data: bytes, what: str) -> Weights:
    meta = st.metadata(data, what)
    if meta.get("format") != FORMAT:
        raise NicError(f"{what}: not a nic weights file (format {meta.get('format')!r}, expected {FORMAT!r})")
    try:
        config = json.loads(meta["config"])
        architecture = config.pop("architecture")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NicError(f"{what}: not a nic weights file (no config: {e})") from None
    coding = {k.removeprefix("coding."): v for k, v in st.load(data, what, "coding.").items()}
    return Weights(name, architecture, config, coding)
