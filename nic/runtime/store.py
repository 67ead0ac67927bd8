"""Where weights files live, and finding the exact weights that a .nic file names.

A model's current weights are `NAME.safetensors` (with its card `NAME.json`) in the package's
`weights/` folder or in the user's model folder. Weights never disappear once files may have
been made with them: replacing a model's weights (`nic export --force`,
`scripts/ship_weights.py`) moves the old pair into `archive/NAME-HASH.safetensors` beside it,
where HASH is the 16 hex digits that .nic headers carry, and so does retiring a model
(`scripts/ship_weights.py --retire NAME`). Archived weights only ever decode, so the archive
keeps their decode-only cut (`weights.cut`, made by the caller's `strip`), and the
archived card records the cut's own sha256 beside the full file's. Decoding looks for the
weights whose hash the header names among the current files and both archives, and checks
that the file it found really has that hash (a cut: that it is the file its card records, cut
from the full file the header names), so a file written by any release decodes in every later
one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from nic.errors import NicError
from nic.runtime.weights import cut_from, weights_hash
from nic.writes import atomic_write
from nic_decode.weights import vouched_hash  # the card's word on a cut, shared with nic_decode

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
ARCHIVE = "archive"


def user_model_dir() -> Path:
    return Path(os.environ.get("NIC_MODEL_DIR") or Path.home() / ".local/share/nic/models")


def model_dirs() -> list[Path]:
    """Folders of current weights, the package's first (its models win over user ones)."""
    return [WEIGHTS_DIR, user_model_dir()]


def archived_path(folder: Path, name: str, whash: bytes) -> Path:
    return folder / ARCHIVE / f"{name}-{whash.hex()}.safetensors"


def candidates(name: str, whash: bytes) -> list[Path]:
    """Files that may hold model `name`'s weights with hash `whash`: current ones, then archived."""
    current = [d / f"{name}.safetensors" for d in model_dirs()]
    return [p for p in current + [archived_path(d, name, whash) for d in model_dirs()] if p.is_file()]


def verified_hash(path: Path) -> bytes:
    """The weights hash that .nic files made with the weights at `path` name. A full file's is
    its own. A decode-only cut cannot prove which full file it was cut from, so its claim counts
    only when the cut is the file that its card's `decode_only.sha256` records and the card's
    `sha256` is the full file it claims; any other cut is refused."""
    data = _read(path)
    claimed = cut_from(data)
    if claimed is None:
        return weights_hash(data)
    return vouched_hash(path, data, claimed)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise NicError(f"{path}: cannot read ({e.strerror})") from None


def install_check(folder: Path, name: str) -> None:
    """Refuse to replace model `name`'s weights in `folder` (before any work is done)."""
    for p in (folder / f"{name}.safetensors", folder / f"{name}.json"):
        if p.exists():
            raise NicError(f"{p}: already exists (use --force to replace it; the old weights are archived)")


# What the archive keeps of a full weights file: its decode-only cut (`registry.decode_only`),
# or the file itself for a model whose decoder reads every tensor.
Strip = Callable[[bytes], bytes]


def install(folder: Path, name: str, data: bytes, card: bytes, strip: Strip, force: bool = False) -> Path | None:
    """Make `data` (and its card) model `name`'s current weights in `folder`.

    Weights already there are refused without `force`; with it they move to the archive, as
    `strip` cuts them (not deleted), so files made with them still decode. Returns where the
    old weights went.
    """
    if not force:
        install_check(folder, name)
    weights, card_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    folder.mkdir(parents=True, exist_ok=True)
    old = weights.read_bytes() if weights.is_file() else None
    replaced = old is not None and weights_hash(old) != weights_hash(data)
    archived = _archive(folder, name, old, strip) if replaced else None
    atomic_write(weights, data, force=True)
    atomic_write(card_path, card, force=True)
    return archived


def retire(folder: Path, name: str, strip: Strip) -> Path:
    """Take model `name` out of `folder`'s current models: its weights (as `strip` cuts them)
    and card move to the archive, so it is no longer offered but every file made with it still
    decodes."""
    weights = folder / f"{name}.safetensors"
    if not weights.is_file():
        raise NicError(f"{weights}: no such model to retire")
    archived = _archive(folder, name, weights.read_bytes(), strip)
    weights.unlink()
    weights.with_suffix(".json").unlink(missing_ok=True)
    return archived


def _archive(folder: Path, name: str, old: bytes, strip: Strip) -> Path:
    """Write model `name`'s current weights `old` (read once by the caller), as `strip` cuts
    them, and its card in `folder` to the archive under the full file's hash; the card gains the
    full file's sha256 and size and, for a cut, the cut's own (`decode_only`), which
    `verified_hash` checks. Returns the archived weights file."""
    card_path = folder / f"{name}.json"
    archived = archived_path(folder, name, weights_hash(old))
    if archived.exists():
        return archived
    try:
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        card = card if isinstance(card, dict) else None
    except (OSError, ValueError):
        card = None
    if card is None:
        raise NicError(f"{card_path}: not a readable model card, so its weights cannot be archived")
    kept = strip(old)
    card |= {"sha256": hashlib.sha256(old).hexdigest(), "size_bytes": len(old)}
    if kept != old:
        card["decode_only"] = {"sha256": hashlib.sha256(kept).hexdigest(), "size_bytes": len(kept)}
    archived.parent.mkdir(exist_ok=True)
    atomic_write(archived.with_suffix(".json"), (json.dumps(card, indent=2) + "\n").encode(), force=True)
    atomic_write(archived, kept)
    return archived
