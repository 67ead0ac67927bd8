"""A training run on disk and what a run starts from: atomic checkpoints, the model a config
describes, initial weights from another run or a shipped file (`run.init`), and the line
naming the hardware that goes into checkpoints and model cards."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from nic.errors import NicError
from nic.models.base import CompressionModel
from nic.models.registry import build, from_bytes

CHECKPOINT = "checkpoint.pt"  # in the run folder; snapshots go to snapshots/step-NNNNNNN.pt


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file, then rename: a kill at any moment leaves the old one whole."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint file, or the checkpoint of a run folder."""
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.exists():
        raise NicError(f"{path}: no checkpoint to resume from")
    return torch.load(path, map_location="cpu", weights_only=True)


def trained_model(state: dict[str, Any]) -> CompressionModel:
    """The model a checkpoint holds, built from the run's own config."""
    model = build(**state["config"]["model"])
    model.load_state_dict(state["model"])
    return model


def init_from(model: CompressionModel, path: Path) -> None:
    """Start from another run's weights, or a shipped weights file, wherever names and shapes
    match (e.g. the factorized model from a hyperprior's transforms and gains); the rest keeps
    its fresh init. A shipped file's integer-only decoder networks come back as the float
    values of their integer weights, so a shipped model can be trained further. Gain tables
    learned for another lambda range are resampled to this model's levels, and narrower
    transforms are widened without changing what the model computes (`_widen_into`); wider ones
    are refused, since dropping them would silently start the transform from scratch."""
    if path.suffix == ".safetensors":
        if not path.exists():
            raise NicError(f"{path}: no such weights file")
        loaded = from_bytes(path.stem, path.read_bytes())
        if loaded.decode_only:
            raise NicError(f"{path}: an archived release's decode-only weights (no encoder) cannot start a run")
        theirs, their_cfg = loaded.model.state_dict(), loaded.model.config
    else:
        state = load_checkpoint(path)
        theirs, their_cfg = state["model"], state["config"]["model"]
    ours = model.state_dict()
    shared = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    if not shared:
        raise NicError(f"{path}: no weights match this architecture")
    _widen_into(model, ours, {k: v for k, v in theirs.items() if k in ours and k not in shared}, path)
    model.load_state_dict(shared, strict=False)
    gain = model.gain
    if "gain.log_gain" in theirs and "lmbda_min" in their_cfg and (
            (their_cfg["levels"], their_cfg["lmbda_min"], their_cfg["lmbda_max"])
            != (gain.levels, gain.lmbda_min, gain.lmbda_max)):
        # A ladder wholly outside theirs measures another distortion (MS-SSIM's lambdas are
        # ~1000x MSE's at equal rate): lambda says nothing about rate across it, so equal
        # numbers of levels keep their tables level for level (already loaded above).
        disjoint = gain.lmbda_max < their_cfg["lmbda_min"] or gain.lmbda_min > their_cfg["lmbda_max"]
        if not (disjoint and their_cfg["levels"] == gain.levels):
            gain.load_resampled(theirs["gain.log_gain"], theirs["gain.log_inv_gain"],
                                their_cfg["lmbda_min"], their_cfg["lmbda_max"])


def _widen_into(model: CompressionModel, ours: dict[str, torch.Tensor],
                narrower: dict[str, torch.Tensor], source: Path) -> None:
    """Load the transforms (g_a, g_s) of a narrower model, e.g. g_a at 96 channels into g_a
    at 128 (`N_a`), so that the wider one computes the same function: old channels keep their
    values, new channels their fresh init, and every weight that reads a new channel into an
    old one is zero (in GDN nearly zero: a zero square root would never train). Training
    then grows the new channels from a model that already works instead of from scratch. A
    wider transform cannot be loaded and is refused, in one line naming `source`."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, theirs in narrower.items():
            module_name, _, name = key.rpartition(".")
            mine = ours[key]  # shares storage with the model's parameter
            if not key.startswith(("g_a.", "g_s.")) or mine.dim() != theirs.dim():
                continue  # not a transform of this architecture: keep the fresh init
            if any(a < b for a, b in zip(mine.shape, theirs.shape, strict=True)):  # never drop a trained one
                raise NicError(f"{source}: its {key} is {tuple(theirs.shape)}, wider than this model's "
                               f"{tuple(mine.shape)}: set model.N (or model.N_a, the encoder's width) to match it")
            module = modules[module_name]
            old = tuple(slice(0, n) for n in theirs.shape)
            if isinstance(module, torch.nn.ConvTranspose2d) and name == "weight":  # (in, out, k, k)
                mine[theirs.shape[0]:, :theirs.shape[1]] = 0
            elif isinstance(module, torch.nn.Conv2d) and name == "weight":  # (out, in, k, k)
                mine[:theirs.shape[0], theirs.shape[1]:] = 0
            elif name == "gamma_sqrt":  # GDN's (out, in) coupling
                mine[:theirs.shape[0], theirs.shape[1]:] = 1e-3
            mine[old] = theirs.to(mine.dtype)


def hardware(device: torch.device) -> str:
    """A one-line description of what trained the model, for the model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
