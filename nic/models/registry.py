"""Model names -> architectures, and finding and loading exported weight files.

A model is `NAME.safetensors` (see `weights.py`) with its model card `NAME.json`, found in
the package's own `weights/` folder or in the user's model folder ($NIC_MODEL_DIR, default
~/.local/share/nic/models), which is where `nic export` puts them; weights that were replaced
live on in an archive (`store.py`), so that files made with them still decode.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from nic.errors import FormatError, NicError
from nic.models.base import CompressionModel
from nic.models.checkerboard import CheckerboardHyperprior
from nic.models.comcnn import ComRecCNN
from nic.models.conv_ae import ConvAutoencoder
from nic.models.factorized import FactorizedPrior
from nic.models.hyperprior import MeanScaleHyperprior
from nic.runtime import store
from nic.runtime.config_check import build_checked, check_config
from nic.runtime.store import WEIGHTS_DIR, user_model_dir
from nic.runtime.weights import cut, cut_from, deserialize, identity

__all__ = ["WEIGHTS_DIR", "DEFAULT_MODEL", "SHIPPED", "RETIRED", "ARCHITECTURES", "build", "user_model_dir",
           "available", "unknown_model", "load"]

DEFAULT_MODEL = "checkerboard"  # since 2026-12-07; "hyperprior" before, still shipped

# The models whose current weights ship in the package (WEIGHTS_DIR), each with golden files
# (scripts/make_golden.py); tests check the folder holds exactly these.
SHIPPED = ("checkerboard", "checkerboard-msssim", "hyperprior", "conv-ae", "comcnn")

# Shipped models taken out of the package, and the model that replaces each. Their weights are
# in the archive (`store.retire`): they no longer encode, but every file made with them decodes.
RETIRED = {"factorized": DEFAULT_MODEL}  # 2026-11-30: +132% BD-rate against JPEG on Kodak

ARCHITECTURES: dict[str, type[CompressionModel]] = {
    "hyperprior": MeanScaleHyperprior,
    "checkerboard": CheckerboardHyperprior,
    "factorized": FactorizedPrior,
    "conv-ae": ConvAutoencoder,
    "comcnn": ComRecCNN,
}
_warned: set[str] = set()


def build(architecture: str, **config) -> CompressionModel:
    """A fresh (untrained) model of the named architecture; `build(**config)` takes a model
    config as runs and weights files save it (architecture and constructor arguments)."""
    if architecture not in ARCHITECTURES:
        raise NicError(f"unknown architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[architecture](**config)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_card(card: object) -> dict:
    """The card, if the fields nic reads from it (`nic models`) have the types it reads them as;
    a ValueError naming the first that does not otherwise, so a hand-edited card is skipped aloud."""
    if not isinstance(card, dict):
        raise ValueError("not a JSON object")
    for key, kind, word in (("architecture", str, "string"), ("config", dict, "object"),
                            ("training", dict, "object"), ("rd", dict, "object")):
        if key in card and not isinstance(card[key], kind):
            raise ValueError(f"{key!r} is not a JSON {word}")
    if not _number(card.get("training", {}).get("wall_time_s", 0)):
        raise ValueError("'training.wall_time_s' is not a number")
    if "rd" in card:
        points = card["rd"].get("points")
        if not isinstance(points, list) or not all(
                isinstance(p, dict) and "quality" in p and _number(p.get("bpp")) and _number(p.get("psnr"))
                for p in points) or not {"data", "images"} <= set(card["rd"]):
            raise ValueError("'rd' is not data, images and a list of points with quality, bpp and psnr")
    return card


def _read_card(weights: Path) -> dict:
    card = weights.with_suffix(".json")
    if not card.is_file():
        return {}
    return _check_card(json.loads(card.read_text()))


def available() -> dict[str, dict]:
    """Model cards of every model found, by name (shipped models win over user ones).

    A user model whose card cannot be read is left out with a one-line warning naming the
    file, so that one broken file does not break every command.
    """
    cards: dict[str, dict] = {}
    for d in reversed(store.model_dirs()):
        for w in sorted(d.glob("*.safetensors")) if d.is_dir() else []:
            try:
                cards[w.stem] = _read_card(w) | {"path": str(w)}
            except (OSError, ValueError, UnicodeDecodeError) as e:
                if str(w) not in _warned:
                    _warned.add(str(w))
                    reason = f"{type(e).__name__}: {e}" if type(e) is ValueError else type(e).__name__
                    warnings.warn(f"skipping model {w.stem!r}: {w.with_suffix('.json')} is not a readable "
                                  f"model card ({reason})", stacklevel=2)
    return cards


@dataclass
class LoadedModel:
    """A model ready to code: the network with its integer coding state, and its identity."""

    name: str
    model: CompressionModel
    weights_hash: bytes
    decode_only: bool = False  # an archived release's cut (`decode_only`): it decodes, never encodes


def from_bytes(name: str, data: bytes, source: str | None = None) -> LoadedModel:
    """Build model `name` from a weights file's bytes, its config checked before anything is
    built; `source` (the file) is named in any error. A decode-only cut loads without its
    encoder, marked `decode_only`, under the hash of the full file it claims to be cut from."""
    what = source or f"model {name!r}"
    tensors, config = deserialize(data, what)
    config = check_config(config, ARCHITECTURES, what)
    model = build_checked(ARCHITECTURES[config.pop("architecture")], config, tensors, what)
    params = {k: v.float() for k, v in tensors.items() if not k.startswith("coding.")}
    try:
        missing, unexpected = model.load_state_dict(params, strict=False)
    except RuntimeError as e:  # torch lists every tensor of another shape, one a line: name the first
        first = next((line.strip() for line in str(e).splitlines() if "mismatch" in line), "")
        raise NicError(f"{what}: weights do not fit its config{f' ({first})' if first else ''}") from None
    decode_only = cut_from(data) is not None
    absent = model.integer_only + (model.encoder_params if decode_only else ())
    if unexpected or any(not k.startswith(absent) for k in missing):
        raise NicError(f"{what}: weights do not fit its architecture")
    model.eval()
    try:
        model.load_coding({k: v for k, v in tensors.items() if k.startswith("coding.")})
    except (KeyError, ValueError, RuntimeError, IndexError) as e:
        raise NicError(f"{what}: coding tensors missing or malformed ({type(e).__name__}: {e})") from None
    return LoadedModel(name, model, identity(data), decode_only)


def decode_only(data: bytes, source: str = "the archived weights") -> bytes:
    """What the archive keeps of full weights file `data`: its decode-only cut, without its
    architecture's `encoder_params` (the file itself where the decoder reads every tensor)."""
    _, config = deserialize(data, source)
    drop = ARCHITECTURES[check_config(config, ARCHITECTURES, source)["architecture"]].encoder_params
    return cut(data, drop) if drop else data


@lru_cache(maxsize=8)
def _load_file(name: str, path: str, size: int, mtime_ns: int) -> LoadedModel:
    """One weights file as model `name`, cached while the file is unchanged."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise NicError(f"{path}: cannot read ({e.strerror})") from None
    return from_bytes(name, data, source=path)


def _version(path: Path) -> tuple[str, int, int]:
    """(path, size, mtime): the cache key of a file's contents for as long as it is unchanged."""
    try:
        st = path.stat()
    except OSError as e:
        raise NicError(f"{path}: cannot read ({e.strerror})") from None
    return str(path), st.st_size, st.st_mtime_ns


def _load_path(name: str, path: Path) -> LoadedModel:
    return _load_file(name, *_version(path))


@lru_cache(maxsize=32)
def _hash_cached(path: str, size: int, mtime_ns: int) -> bytes:
    return store.verified_hash(Path(path))


def weights_hash_of(path: Path) -> bytes:
    """The hash that .nic files made with a weights file on disk name, checked (a decode-only
    cut's against its card: `store.verified_hash`), cached while the file is unchanged."""
    return _hash_cached(*_version(path))


def unknown_model(name: str, cards: dict[str, dict] | None = None) -> NicError:
    """The one-line error for a model name with no current weights; a retired one says so."""
    if name in RETIRED:
        return NicError(f"model {name!r} was retired in favour of {RETIRED[name]!r} "
                        "(files made with it still decode)")
    cards = available() if cards is None else cards
    return NicError(f"unknown model {name!r} (available: {', '.join(sorted(cards)) or 'none'})")


def load(name: str, whash: bytes | None = None) -> LoadedModel:
    """Load a model by name: its current weights, or, given the hash that a .nic header
    names, exactly those weights, current or archived (a retired model's included)."""
    cards = available()
    current = Path(cards[name]["path"]) if name in cards else None
    if whash is None or current is not None and weights_hash_of(current) == whash:
        if current is None:
            raise unknown_model(name, cards)
        return _load_path(name, current)
    for path in store.candidates(name, whash):
        if weights_hash_of(path) == whash:
            return _load_path(name, path)
    if current is not None:
        raise FormatError(f"file was made with other weights for model {name!r} ({whash.hex()}): neither the "
                          f"installed ones ({weights_hash_of(current).hex()}) nor an archived copy")
    if name in RETIRED:
        raise FormatError(f"file was made with weights of the retired model {name!r} ({whash.hex()}) "
                          "that are not in the archive")
    raise unknown_model(name, cards)
