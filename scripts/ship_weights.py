"""Ship new weights for a model in one step: the current ones move to the archive.

    python scripts/ship_weights.py runs/mine/export/hyperprior.safetensors [--name hyperprior]

Copies the weights file and its model card (the .json beside it) into nic/weights/ as model
NAME (default: the file's own name). The weights they replace go to
nic/weights/archive/NAME-HASH.safetensors with their card, so every .nic file made with them
keeps decoding. `nic export RUN --name NAME --out nic/weights --force` does the same in one go
from a training run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nic.errors import NicError  # noqa: E402
from nic.models.registry import from_bytes  # noqa: E402
from nic.models.store import WEIGHTS_DIR, install  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="an exported NAME.safetensors, with NAME.json beside it")
    p.add_argument("--name", help="model name to ship it as (default: the file's name)")
    p.add_argument("--into", type=Path, default=WEIGHTS_DIR, help="weights folder (default: the package's)")
    args = p.parse_args()
    name = args.name or args.weights.stem
    try:
        data, card = args.weights.read_bytes(), args.weights.with_suffix(".json").read_bytes()
        from_bytes(name, data, source=str(args.weights))  # refuse anything that would not load
        archived = install(args.into, name, data, card, force=True)
    except (NicError, OSError) as e:
        print(f"ship_weights: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.into / (name + '.safetensors')}: now model {name!r}"
          + (f"; the previous weights are in {archived}" if archived else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
