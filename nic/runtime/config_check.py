"""Checking a weights file's model config before a model is built from it.

A config is read from a file that anybody may have written: its keys must be the
architecture's constructor arguments, each of the type of its default and within bounds, and
building it may not allocate more than the file's own tensors could fill. Construction runs
under a budget that refuses an oversized tensor before it is allocated, so a config asking
for a 40 GB model is refused at once instead of being built.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nic.errors import NicError

MAX_INT = 1 << 12  # no sane layer width, level count or depth comes near this
_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full}


def _sizes(args: tuple) -> list[int]:
    return list(args[0]) if args and isinstance(args[0], (tuple, list, torch.Size)) else list(args)


def _elements(func: Callable, args: tuple, kwargs: dict) -> int:
    """How many elements a tensor-making call is about to allocate (0 for other calls)."""
    if func in _FACTORIES:
        return math.prod(_sizes(args if func is not torch.full else args[:1]) or [kwargs.get("size", 1)])
    if func is torch.eye:
        return args[0] * (args[1] if len(args) > 1 and isinstance(args[1], int) else args[0])
    if func is torch.linspace:
        return int(args[2] if len(args) > 2 else kwargs.get("steps", 1))
    if func is torch.Tensor.repeat:
        return args[0].numel() * math.prod(_sizes(args[1:]))
    return 0


class _Budget(TorchFunctionMode):
    def __init__(self, limit: int, what: str):
        super().__init__()
        self.left, self.what = limit, what

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.left -= _elements(func, args, kwargs)
        if self.left < 0:
            raise NicError(f"{self.what}: its config describes a model far larger than the file's weights")
        return func(*args, **kwargs)


@contextmanager
def allocation_budget(elements: int, what: str) -> Iterator[None]:
    """Refuse, before allocating, any tensor that would take the total over `elements`."""
    with _Budget(elements, what):
        yield


def _check_value(key: str, value: object, default: object, what: str) -> None:
    if isinstance(default, bool):
        ok = type(value) is bool
    elif isinstance(default, int):
        ok = type(value) is int and 1 <= value <= MAX_INT
    elif isinstance(default, float):
        ok = type(value) in (int, float) and 0 < value < float("inf")
    elif isinstance(default, tuple):  # a short list of widths
        ok = (type(value) in (list, tuple) and 0 < len(value) <= 8
              and all(type(v) is int and 1 <= v <= MAX_INT for v in value))
    else:
        ok = type(value) is type(default)
    if not ok:
        raise NicError(f"{what}: config value {key}={value!r} is not a valid {type(default).__name__} here")


def check_config(config: object, architectures: dict[str, type[nn.Module]], what: str) -> dict:
    """The config, its keys and value types checked against its architecture (NicError if not)."""
    arch = config.get("architecture") if isinstance(config, dict) else None
    if arch not in architectures:
        raise NicError(f"{what}: unknown architecture {arch!r} in its config (known: {', '.join(architectures)})")
    params = inspect.signature(architectures[arch].__init__).parameters
    for key, value in config.items():
        if key == "architecture":
            continue
        if key not in params or key == "self":
            raise NicError(f"{what}: config key {key!r} is not an argument of {arch}")
        _check_value(key, value, params[key].default, what)
    return dict(config)


def build_checked(cls: type[nn.Module], config: dict, tensors: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Build `cls(**config)` allocating at most about twice what the file's tensors hold."""
    budget = 2 * sum(t.numel() for t in tensors.values()) + (1 << 20)
    with allocation_budget(budget, what):
        return cls(**config)
