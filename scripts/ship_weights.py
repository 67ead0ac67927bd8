"""Ship new weights for a model in one step: the current ones move to the archive.

    python scripts/ship_weights.py runs/mine/export/hyperprior.safetensors [--name hyperprior]
    python scripts/ship_weights.py --retire factorized

Copies the weights file and its model card (the .json beside it) into nic/weights/ as model
NAME (default: the file's own name). The weights they replace go to
nic/weights/archive/NAME-HASH.safetensors with their card, cut to what decoding needs
(`registry.decode_only`: the archive only ever decodes), so every .nic file made with them
keeps decoding. `nic export RUN --name NAME --out nic/weights --force` does the same in one go
from a training run. `--retire NAME` takes a shipped model out: its weights (cut the same way)
and card move to the archive (it is no longer offered, its files still decode); it must be
listed first in `RETIRED` (nic/models/registry.py) with the model that replaces it, which its
error names.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nic.errors import NicError  # noqa: E402
from nic.models.registry import RETIRED, decode_only, from_bytes  # noqa: E402
from nic.runtime.store import WEIGHTS_DIR, install, retire  # noqa: E402


def ship(weights: Path, name: str, into: Path) -> str:
    data, card = weights.read_bytes(), weights.with_suffix(".json").read_bytes()
    from_bytes(name, data, source=str(weights))  # refuse anything that would not load
    archived = install(into, name, data, card, strip=decode_only, force=True)
    return (f"{into / (name + '.safetensors')}: now model {name!r}"
            + (f"; the previous weights are in {archived}" if archived else ""))


def retire_model(name: str, into: Path) -> str:
    if name not in RETIRED:
        raise NicError(f"add {name!r} to RETIRED in nic/models/registry.py first, with the model that replaces it")
    archived = retire(into, name, decode_only)
    return f"model {name!r} retired in favour of {RETIRED[name]!r}; its weights are in {archived}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, nargs="?", help="an exported NAME.safetensors, with NAME.json beside it")
    p.add_argument("--name", help="model name to ship it as (default: the file's name)")
    p.add_argument("--retire", metavar="NAME", help="retire shipped model NAME instead (to the archive)")
    p.add_argument("--into", type=Path, default=WEIGHTS_DIR, help="weights folder (default: the package's)")
    args = p.parse_args()
    if (args.weights is None) == (args.retire is None):
        p.error("give either a weights file or --retire NAME")
    try:
        if args.retire:
            print(retire_model(args.retire, args.into))
        else:
            print(ship(args.weights, args.name or args.weights.stem, args.into))
    except (NicError, OSError) as e:
        print(f"ship_weights: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
