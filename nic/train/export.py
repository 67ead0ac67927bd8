"""`nic export`: a training run -> NAME.safetensors + NAME.json (the model card); weights it
replaces (with --force) move to the archive, cut to what decoding needs, so files made with
them still decode.

A card travels (shipped weights go into the wheel), so it names no folder of the machine that
trained: data sources by their names, the weights a run started from by their hash, a
checkpoint it started from by its path relative to the exported run."""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nic.errors import NicError
from nic.eval.rd import learned_points
from nic.models.base import CompressionModel
from nic.models.registry import decode_only, from_bytes
from nic.quality import STANDARD_QUALITIES
from nic.runtime.store import install, install_check
from nic.runtime.weights import identity, serialize
from nic.train.checkpoint import load_checkpoint, trained_model


def _history(init: Path, run: Path) -> list[dict]:
    """The training runs behind what a run started from, so that a card adds up every run, not
    just the last: a weights file's card history (or its one recorded run), or, for a run's
    checkpoint or snapshot, that run up to the checkpoint and whatever it started from. Where
    that cannot be read (the file is gone, or its card says nothing), one `untraced` entry says
    so, and the card's total leaves it out rather than silently undercounting. Paths are shown
    relative to `run`, the run being exported."""
    if not init.name:
        return []
    untraced = [{"untraced": _relative(init, run)}]
    if init.suffix == ".safetensors":
        if not init.with_suffix(".json").is_file():
            return untraced
        card = json.loads(init.with_suffix(".json").read_text())
        runs = [dict(r) for r in card.get("history", [])] or ([dict(card["training"])] if card.get("training") else [])
        if runs and "note" in card and "note" not in runs[-1]:
            runs[-1]["note"] = card["note"]  # the card's note tells its own (last) run
        return runs or untraced
    try:
        state = load_checkpoint(init)  # a checkpoint file or a run folder, as run.init allows
    except NicError:
        return untraced
    return _runs_behind(state, run)


def _runs_behind(state: dict[str, Any], run: Path) -> list[dict]:
    """Every run behind a checkpoint's weights, oldest first, its own run last."""
    return _history(Path(state["config"]["run"]["init"]), run) + [_run_record(state, run)]


def _relative(path: Path, run: Path) -> str:
    """`path` as a card shows it: relative to the exported run's folder."""
    try:
        return os.path.relpath(path.resolve(), run.resolve())
    except ValueError:  # on another drive
        return path.name


def _started_from(init: str, run: Path) -> str:
    """What a run started from, as a card shows it: nothing, the hash of a weights file (as .nic
    headers name weights), or a checkpoint's path relative to the exported run."""
    path = Path(init)
    if not init:
        return ""
    if path.suffix == ".safetensors" and path.is_file():
        return identity(path.read_bytes()).hex()
    return _relative(path, run)


def _run_record(state: dict[str, Any], run: Path) -> dict:
    """One run as a model card records it, from its checkpoint."""
    cfg = state["config"]
    return {
        "data": [Path(s).name for s in cfg["data"]["sources"]], "crop": cfg["data"]["crop"],
        "batch": cfg["data"]["batch"],
        "steps": state["step"], "wall_time_s": round(state["elapsed"], 1),
        "hardware": state["hardware"], "optimizer": cfg["optim"],
        "precision": f"{cfg['run'].get('precision', 'fp32')}"
                     f"{'+channels_last' if cfg['run'].get('channels_last') is True else ''}",
        "init": _started_from(cfg["run"]["init"], run), "held_out": cfg["data"].get("holdout", 0),
    }


def export(run: Path, name: str, out_dir: Path, kodak: Path | None = None, force: bool = False,
           qualities: Sequence[int] = STANDARD_QUALITIES, note: str = "") -> dict:
    """Export the run's latest checkpoint as model `name`, with RD points measured on `kodak`."""
    if not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
        raise NicError(f"model name {name!r}: use letters, digits, '-' and '_'")
    if not force:  # say so before the work
        install_check(out_dir, name)
    state = load_checkpoint(run)
    cfg = state["config"]
    model = trained_model(state).eval()
    config = file_config(model, cfg["model"]["architecture"])
    data = serialize(model, config)
    history = _runs_behind(state, run)
    untraced = [r["untraced"] for r in history if "untraced" in r]
    module_doc = inspect.getdoc(sys.modules[type(model).__module__]) or ""
    card = {
        "name": name,
        "architecture": cfg["model"]["architecture"],
        "description": module_doc.split("\n\n")[0].replace("\n", " "),
        "config": config,
        "training": history[-1],
        "history": history,
        "total": {"runs": len(history) - len(untraced), "steps": sum(r.get("steps", 0) for r in history),
                  "wall_time_s": round(sum(r.get("wall_time_s", 0) for r in history), 1),
                  **({"untraced": untraced} if untraced else {})},
        "exported": time.strftime("%Y-%m-%d"),
        **({"note": note} if note else {}),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
    }
    if kodak is not None:
        images = sorted(kodak.glob("*.png"))
        if not images:
            raise NicError(f"{kodak}: no PNG images to measure the model card's RD points on")
        card["rd"] = {"data": kodak.name, "images": len(images), "metric": "RGB PSNR, bpp from file bytes",
                      "points": _points(name, data, images, qualities)}
    archived = install(out_dir, name, data, (json.dumps(card, indent=2) + "\n").encode(), decode_only, force)
    return card | ({"archived": str(archived)} if archived else {})


def check_points(model: CompressionModel, cfg: dict[str, Any]) -> list[dict]:
    """RD points from real bytes during training: the current weights exported as they are now,
    coding a few held-out images (`run.eval_dir`, `run.eval_images`, `run.eval_qualities`)."""
    rcfg = cfg["run"]
    images = sorted(Path(rcfg["eval_dir"]).glob("*.png"))[: rcfg["eval_images"]]
    if not images:
        return []
    snapshot = copy.deepcopy(model).cpu().float()  # leave the training model where it is
    config = file_config(snapshot, cfg["model"]["architecture"])
    return _points("training-check", serialize(snapshot, config), images, rcfg["eval_qualities"])


def file_config(model: CompressionModel, architecture: str) -> dict[str, Any]:
    """The config a weights file stores: the model's own (an optional setting left at its
    default, like the hyperprior's `N_a`, is not written, so the file reads as before)."""
    return {"architecture": architecture, **model.config}


def _points(name: str, weights: bytes, images: list[Path], qualities: Sequence[int]) -> list[dict]:
    """Mean bpp and PSNR per quality of a weights file, through the codec's real code path."""
    with torch.inference_mode():
        return learned_points(from_bytes(name, weights), images, qualities)
