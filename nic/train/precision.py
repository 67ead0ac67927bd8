"""Numeric precision and memory layout for training: fp32 or bf16 autocast, NCHW or channels_last.

Which is fastest depends on the machine: on CPUs with native bf16 (AVX512-BF16, AMX) bf16
autocast with channels_last is 2-5x faster than fp32; elsewhere bf16 is emulated and slower.
`auto` times a few real steps of each candidate and keeps the fastest.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    dtype: str  # "fp32" | "bf16"
    channels_last: bool

    @property
    def name(self) -> str:
        return self.dtype + ("+channels_last" if self.channels_last else "")

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16")

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 math runs in hardware here (else autocast would only emulate it)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def candidates(precision: str, channels_last: bool | str, device: torch.device) -> tuple[list[Precision], str]:
    """The settings worth timing for `run.precision` / `run.channels_last`, and a note on any fallback."""
    note = ""
    if precision == "bf16" and not native_bf16(device):
        precision, note = "fp32", f"bf16 has no native support on this {device.type}: using fp32"
    dtypes = {"auto": ["fp32", "bf16"] if native_bf16(device) else ["fp32"]}.get(precision, [precision])
    layouts = [False, True] if channels_last == "auto" else [bool(channels_last)]
    if precision != "auto" and channels_last == "auto":  # an explicit precision: no timing
        layouts = [precision == "bf16" or device.type == "cuda"]
    return [Precision(d, cl) for d in dtypes for cl in layouts], note


def fastest(options: list[Precision], step: Callable[[torch.nn.Module, Precision], None],
            model: torch.nn.Module, repeats: int = 3) -> tuple[Precision, dict[str, float]]:
    """Time `repeats` steps (after one warm-up) of each option on a throwaway copy of the model.

    The options take turns, one step each per round, and each keeps its fastest step: load from
    other processes that comes and goes then cannot land on one option's turn alone (timed one
    after another, two runs started side by side both picked bf16 on a CPU where it is 1.4x slower).
    """
    if len(options) == 1:
        return options[0], {}
    trials = {}
    for opt in options:
        layout = torch.channels_last if opt.channels_last else torch.contiguous_format
        trials[opt.name] = copy.deepcopy(model).to(memory_format=layout)
        step(trials[opt.name], opt)
    seconds = dict.fromkeys(trials, math.inf)
    for _ in range(repeats):
        for opt in options:
            start = time.perf_counter()
            step(trials[opt.name], opt)
            seconds[opt.name] = min(seconds[opt.name], time.perf_counter() - start)
    best = min(options, key=lambda o: seconds[o.name])
    return best, seconds
