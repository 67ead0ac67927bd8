"""`nic export`: a training run -> NAME.safetensors + NAME.json (the model card); weights it
replaces (with --force) move to the archive, so files made with them still decode."""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nic.errors import NicError
from nic.eval.rd import learned_points
from nic.models.base import CompressionModel
from nic.models.registry import from_bytes
from nic.runtime.store import install, install_check
from nic.runtime.weights import serialize
from nic.train.checkpoint import load_checkpoint, trained_model

CARD_QUALITIES = [1, 10, 25, 50, 75, 90, 100]


def _history(init: Path) -> list[dict]:
    """The training runs behind what a run started from, so that a card adds up every run, not
    just the last: a weights file's card history (or its one recorded run), or, for a run's
    checkpoint or snapshot, that run up to the checkpoint and whatever it started from. Where
    that cannot be read (the file is gone, or its card says nothing), one `untraced` entry says
    so, and the card's total leaves it out rather than silently undercounting."""
    if not init.name:
        return []
    untraced = [{"untraced": str(init)}]
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
    return _runs_behind(state)


def _runs_behind(state: dict[str, Any]) -> list[dict]:
    """Every run behind a checkpoint's weights, oldest first, its own run last."""
    return _history(Path(state["config"]["run"]["init"])) + [_run_record(state)]


def _run_record(state: dict[str, Any]) -> dict:
    """One run as a model card records it, from its checkpoint."""
    cfg = state["config"]
    return {
        "data": cfg["data"]["sources"], "crop": cfg["data"]["crop"], "batch": cfg["data"]["batch"],
        "steps": state["step"], "wall_time_s": round(state["elapsed"], 1),
        "hardware": state["hardware"], "optimizer": cfg["optim"],
        "precision": f"{cfg['run'].get('precision', 'fp32')}"
                     f"{'+channels_last' if cfg['run'].get('channels_last') is True else ''}",
        "init": cfg["run"]["init"], "held_out": cfg["data"].get("holdout", 0),
    }


def export(run: Path, name: str, out_dir: Path, kodak: Path | None = None, force: bool = False,
           qualities: list[int] = CARD_QUALITIES, note: str = "") -> dict:
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
    history = _runs_behind(state)
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
    archived = install(out_dir, name, data, (json.dumps(card, indent=2) + "\n").encode(), force)
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


def _points(name: str, weights: bytes, images: list[Path], qualities: list[int]) -> list[dict]:
    """Mean bpp and PSNR per quality of a weights file, through the codec's real code path."""
    with torch.inference_mode():
        return learned_points(from_bytes(name, weights), images, qualities)
