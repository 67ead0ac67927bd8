"""Training configuration: defaults, TOML files, and `section.key=value` overrides."""

from __future__ import annotations

import copy
import inspect
import tomllib
from pathlib import Path
from typing import Any

from nic.errors import NicError
from nic.models.registry import ARCHITECTURES, DEFAULT_MODEL
from nic.quality import STANDARD_QUALITIES

# No default data: a run names its images (`nic train --data`, or data.sources in its config).
DEFAULTS: dict[str, dict[str, Any]] = {
    # the default model's architecture (a shipped model is named after its own); the rest of the
    # model section: the architecture's own defaults
    "model": {"architecture": DEFAULT_MODEL},
    "data": {"sources": [], "crop": 128, "batch": 8, "max_side": 512,
             "holdout": 0, "augment": "flip", "grey": False},
    "optim": {"lr": 3e-4, "min_lr": 1e-5, "warmup": 500, "steps": 30000, "hours": 0.0, "clip": 1.0,
              "metric": "mse", "balance": 0.5, "only": []},
    "run": {"seed": 0, "init": "", "device": "auto", "threads": 0, "precision": "auto",
            "channels_last": "auto", "compile": False, "log_every": 50,
            "checkpoint_every": 500,
            "snapshot_every": 0, "eval_every": 0, "eval_dir": "",
            "eval_images": 4, "eval_qualities": list(STANDARD_QUALITIES)},
}


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def resolve(path: str | Path | None = None, overrides: list[str] = (),
            base: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Defaults, then `base` (e.g. a checkpoint's config), then the TOML file, then
    `section.key=value` overrides, each checked against the known keys.

    A run saved before a key existed gets its default, which is what that run did."""
    cfg = copy.deepcopy(DEFAULTS)
    for section, table in (base or {}).items():
        cfg.setdefault(section, {}).update(copy.deepcopy(table))
    layers: list[tuple[str, str, Any]] = []
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise NicError(f"{path}: cannot read config ({e})") from None
        for section, table in data.items():
            if not isinstance(table, dict):
                raise NicError(f"{path}: '{section}' must be a table")
            layers += [(section, k, v) for k, v in table.items()]
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise NicError(f"override {item!r} must look like section.key=value")
        layers.append((section, name, _parse_value(value.strip())))
    for section, name, value in layers:
        if section not in cfg:
            raise NicError(f"unknown config section {section!r} (known: {', '.join(cfg)})")
        if name not in cfg[section] and section != "model":
            raise NicError(f"unknown config key {section}.{name}")
        cfg[section][name] = value
    return _complete_model(cfg)


def _complete_model(cfg: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Check the model keys against the architecture and fill in its defaults, so the saved
    config says everything the run used."""
    arch = cfg["model"].get("architecture")
    if arch not in ARCHITECTURES:
        raise NicError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    params = inspect.signature(ARCHITECTURES[arch]).parameters
    for key in cfg["model"]:
        if key != "architecture" and key not in params:
            raise NicError(f"unknown config key model.{key} for architecture {arch!r}")
    defaults = {k: p.default for k, p in params.items()}
    cfg["model"] = {"architecture": arch, **defaults, **cfg["model"]}
    return cfg


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_toml(cfg: dict[str, dict[str, Any]]) -> str:
    """The resolved config as TOML, saved beside every run so it can be reproduced."""
    return "\n".join(
        f"[{section}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items())
        for section, table in cfg.items()
    )
