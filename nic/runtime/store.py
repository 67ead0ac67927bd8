"""Where weights files live, and finding the exact weights that a .nic file names.

A model's current weights are `NAME.safetensors` (with its card `NAME.json`) in the package's
`weights/` folder or in the user's model folder. Weights never disappear once files may have
been made with them: replacing a model's weights (`nic export --force`,
`scripts/ship_weights.py`) moves the old pair into `archive/NAME-HASH.safetensors` beside it,
where HASH is the 16 hex digits that .nic headers carry, and so does retiring a model
(`scripts/ship_weights.py --retire NAME`). Decoding looks for the weights whose hash the header
names among the current files and both archives, and checks that the file it found really has
that hash, so a file written by any release decodes in every later one.
"""

from __future__ import annotations

import os
from pathlib import Path

from nic.errors import NicError
from nic.runtime.weights import weights_hash
from nic.writes import atomic_write

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


def install_check(folder: Path, name: str) -> None:
    """Refuse to replace model `name`'s weights in `folder` (before any work is done)."""
    for p in (folder / f"{name}.safetensors", folder / f"{name}.json"):
        if p.exists():
            raise NicError(f"{p}: already exists (use --force to replace it; the old weights are archived)")


def install(folder: Path, name: str, data: bytes, card: bytes, force: bool = False) -> Path | None:
    """Make `data` (and its card) model `name`'s current weights in `folder`.

    Weights already there are refused without `force`; with it they move to the archive (not
    deleted), so files made with them still decode. Returns where the old weights went.
    """
    if not force:
        install_check(folder, name)
    weights, card_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    folder.mkdir(parents=True, exist_ok=True)
    old = weights.read_bytes() if weights.is_file() else None
    archived = _archive(folder, name, old) if old is not None and weights_hash(old) != weights_hash(data) else None
    atomic_write(weights, data, force=True)
    atomic_write(card_path, card, force=True)
    return archived


def retire(folder: Path, name: str) -> Path:
    """Take model `name` out of `folder`'s current models: its weights and card move to the
    archive, so it is no longer offered but every file made with it still decodes."""
    weights = folder / f"{name}.safetensors"
    if not weights.is_file():
        raise NicError(f"{weights}: no such model to retire")
    archived = _archive(folder, name, weights.read_bytes())
    weights.unlink()
    weights.with_suffix(".json").unlink(missing_ok=True)
    return archived


def _archive(folder: Path, name: str, old: bytes) -> Path:
    """Copy model `name`'s current weights `old` (read once by the caller) and its card in
    `folder` to the archive under their hash; returns the archived weights file."""
    card_path = folder / f"{name}.json"
    archived = archived_path(folder, name, weights_hash(old))
    archived.parent.mkdir(exist_ok=True)
    if not archived.exists():
        atomic_write(archived, old)
    if card_path.is_file() and not archived.with_suffix(".json").exists():
        atomic_write(archived.with_suffix(".json"), card_path.read_bytes())
    return archived
