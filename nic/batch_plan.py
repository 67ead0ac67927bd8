"""Deciding, before a folder batch starts, what happens to each file: write it, skip it
(done before, with the same settings), or refuse it, with a reason: two inputs that would
write one output, an output that exists but was made otherwise, or a file of the input
folder that an output would replace. Nothing is silently kept or silently overwritten.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from nic import container, writes
from nic.errors import NicError
from nic.io import max_pixels
from nic.models import registry
from nic.quality import DEFAULT_QUALITY


@dataclass
class Decision:
    src: Path
    dst: Path
    action: str  # "write", "skip" or "refuse"
    reason: str = ""


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _differs_compressed(src: Path, dst: Path, options: dict) -> str | None:
    """How an existing .nic output differs from what these options would make, or None."""
    try:
        header, _ = container.unpack(container.read(dst, max_pixels()))
    except NicError:
        return "is not a readable .nic file"
    model = options.get("model") or registry.DEFAULT_MODEL
    cards = registry.available()
    if header.model != model:
        return f"was made with model {header.model}, not {model}"
    if model in cards and header.weights_hash != registry.weights_hash_of(Path(cards[model]["path"])):
        return f"was made with other weights of {model}"
    bpp = options.get("bpp")
    if bpp is None and header.quality != options.get("quality", DEFAULT_QUALITY):
        return f"was made at quality {header.quality}, not {options.get('quality', DEFAULT_QUALITY)}"
    if bpp is not None and dst.stat().st_size * 8 / (header.width * header.height) > bpp:
        return f"is larger than {bpp} bpp"
    if options.get("strip") and header.version == container.METADATA_VERSION:
        return "keeps metadata, and --strip was given"
    return None


def _differs(kind: str, src: Path, dst: Path, options: dict) -> str | None:
    if dst.stat().st_mtime < src.stat().st_mtime:
        return "is older than its input"
    return _differs_compressed(src, dst, options) if kind == "compress" else None


def decide(kind: str, found: list[tuple[Path, Path]], src_dir: Path, out_dir: Path, options: dict) -> list[Decision]:
    """One decision per (input, output) pair, in order."""
    by_output: dict[Path, list[Path]] = defaultdict(list)
    for src, dst in found:
        by_output[dst].append(src)
    force = options.get("force", False)
    in_place = _inside(out_dir, src_dir)
    decisions = []
    for src, dst in found:
        others = [str(o) for o in by_output[dst] if o != src]
        if others:
            decisions.append(Decision(src, dst, "refuse", f"{src} and {', '.join(others)} would both be written "
                                                          f"to {dst}; rename one"))
        elif not os.path.lexists(dst):
            decisions.append(Decision(src, dst, "write"))
        elif in_place and force:
            decisions.append(Decision(src, dst, "refuse", f"{dst}: exists in the input folder; nic never "
                                                          "replaces its inputs' folder files, even with --force"))
        elif force:  # a symlink, device or FIFO is refused now, not by the worker
            problem = writes.not_replaceable(dst)
            decisions.append(Decision(src, dst, "refuse", problem) if problem else Decision(src, dst, "write"))
        else:
            why = _differs(kind, src, dst, options) if dst.is_file() else "is not a regular file"
            decisions.append(Decision(src, dst, "skip") if why is None else Decision(
                src, dst, "refuse", f"{dst}: exists and {why} (use --force to replace it)"))
    return decisions
