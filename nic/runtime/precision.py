"""Which float precision runs a fast network quickest on this CPU: measured once, remembered.

Native bf16 does not mean faster bf16. On a Xeon with AVX512-BF16 and no AMX, the default's
g_s took 0.35 s in bf16 against 0.23 s in float32 (768x512, one thread), while its g_a took
0.53 s against 0.82 s. So each network is timed in both precisions on a probe input, the two
taking turns so that passing load cannot favour one, and the faster one is kept per CPU,
torch version, thread count and network shape, in a small JSON file under the user's cache
folder ($NIC_CACHE_DIR, else $XDG_CACHE_HOME/nic, else ~/.cache/nic). A later process reads
it rather than paying the probe (about a second) again, so one machine keeps choosing the
same precision and its encoder keeps writing the same bytes. $NIC_PRECISION overrides it all.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from nic.errors import NicError
from nic_decode.output import temp_written

PRECISIONS = {"bfloat16": torch.bfloat16, "float32": torch.float32}
CACHE_FILE = "precision.json"
ROUNDS = 3  # timed runs of each precision, after one warm-up each


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether the CPU multiplies bf16 in hardware (else bf16 is emulated, never faster)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return torch.backends.mkldnn.is_available() and any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def forced() -> torch.dtype | None:
    """The precision $NIC_PRECISION names, if any."""
    name = os.environ.get("NIC_PRECISION", "")
    if name and name not in PRECISIONS:
        raise NicError(f"NIC_PRECISION must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return PRECISIONS.get(name)


def cache_path() -> Path:
    root = os.environ.get("NIC_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nic"
    return Path(root) / CACHE_FILE


@lru_cache(maxsize=1)
def _cpu() -> str:
    """The CPU as /proc/cpuinfo names it (vendor, family, model, stepping: cloud CPUs often share
    one model name across generations), else what the platform says."""
    try:
        lines = Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return " ".join(fields.get(k, "") for k in ("vendor_id", "cpu family", "model", "stepping", "model name"))


def _key(network: str, signature: str) -> str:
    shape = hashlib.sha256(signature.encode()).hexdigest()[:12]
    return f"{_cpu()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {network} {shape}"


def _read() -> dict[str, str]:
    try:
        table = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def measure(probes: dict[torch.dtype, Callable[[], object]]) -> dict[torch.dtype, float]:
    """The fastest of ROUNDS runs of each probe, after a warm-up, the probes taking turns."""
    for probe in probes.values():
        probe()
    best = dict.fromkeys(probes, math.inf)
    for _ in range(ROUNDS):
        for p, probe in probes.items():
            start = time.perf_counter()
            probe()
            best[p] = min(best[p], time.perf_counter() - start)
    return best


def fastest(network: str, signature: str, probe: Callable[[torch.dtype], Callable[[], object]]) -> torch.dtype:
    """The precision to run `network` in: $NIC_PRECISION, else float32 without native bf16,
    else the remembered or freshly measured faster one. `signature` names the network's shape
    (the timing does not depend on its weights); `probe(p)` builds a run of it in precision p."""
    chosen = forced()
    if chosen is not None:
        return chosen
    if not native_bf16():
        return torch.float32
    key = _key(network, signature)
    name = _read().get(key)
    if name in PRECISIONS:
        return PRECISIONS[name]
    seconds = measure({p: probe(p) for p in PRECISIONS.values()})
    chosen = min(seconds, key=seconds.get)
    table = _read() | {key: next(n for n, p in PRECISIONS.items() if p == chosen)}
    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        with temp_written(cache_path(), (json.dumps(table, indent=1, sort_keys=True) + "\n").encode()) as tmp:
            os.replace(tmp, cache_path())  # whole or not at all; the last of two writers wins
    except OSError:
        pass  # a read-only home: measured again by the next process, no worse than that
    return chosen
