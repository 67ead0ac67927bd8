"""Model names -> architectures, and finding and loading exported weight files.

A model is `NAME.safetensors` (see `weights.py`) with its model card `NAME.json`, found in
the package's own `weights/` folder or in the user's model folder ($NIC_MODEL_DIR, default
~/.local/share/nic/models), which is where `nic export` puts them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from nic.errors import NicError
from nic.models.base import CompressionModel
from nic.models.comcnn import ComRecCNN
from nic.models.conv_ae import ConvAutoencoder
from nic.models.factorized import FactorizedPrior
from nic.models.hyperprior import MeanScaleHyperprior
from nic.models.weights import deserialize, weights_hash

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "hyperprior"

ARCHITECTURES: dict[str, type[CompressionModel]] = {
    "hyperprior": MeanScaleHyperprior,
    "factorized": FactorizedPrior,
    "conv-ae": ConvAutoencoder,
    "comcnn": ComRecCNN,
}


def build(architecture: str, **config) -> CompressionModel:
    """A fresh (untrained) model of the named architecture; `build(**config)` takes a model
    config as runs and weights files save it (architecture and constructor arguments)."""
    if architecture not in ARCHITECTURES:
        raise NicError(f"unknown architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[architecture](**config)


def user_model_dir() -> Path:
    return Path(os.environ.get("NIC_MODEL_DIR") or Path.home() / ".local/share/nic/models")


def available() -> dict[str, dict]:
    """Model cards of every model found, by name (shipped models win over user ones)."""
    cards: dict[str, dict] = {}
    for d in (user_model_dir(), WEIGHTS_DIR):
        for w in sorted(d.glob("*.safetensors")) if d.is_dir() else []:
            card = w.with_suffix(".json")
            cards[w.stem] = (json.loads(card.read_text()) if card.is_file() else {}) | {"path": str(w)}
    return cards


@dataclass
class LoadedModel:
    """A model ready to code: the network with its integer coding state, and its identity."""

    name: str
    model: CompressionModel
    weights_hash: bytes


def from_bytes(name: str, data: bytes) -> LoadedModel:
    tensors, config = deserialize(data, f"model {name!r}")
    model = build(**config)
    params = {k: v.float() for k, v in tensors.items() if not k.startswith("coding.")}
    missing, unexpected = model.load_state_dict(params, strict=False)
    if unexpected or any(not k.startswith(model.integer_only) for k in missing):
        raise NicError(f"model {name!r}: weights do not fit its architecture")
    model.eval()
    model.load_coding({k: v for k, v in tensors.items() if k.startswith("coding.")})
    return LoadedModel(name, model, weights_hash(data))


@lru_cache(maxsize=8)
def load(name: str) -> LoadedModel:
    """Load a model by name (cached)."""
    cards = available()
    if name not in cards:
        raise NicError(f"unknown model {name!r} (available: {', '.join(sorted(cards)) or 'none'})")
    return from_bytes(name, Path(cards[name]["path"]).read_bytes())
