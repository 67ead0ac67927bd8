"""BD-rate against JPEG as training goes on: what more training would buy.

Exports every snapshot of a run (`run.snapshot_every`) and its final checkpoint as temporary
models, measures them all with `nic eval` (real files) on Kodak or, with `--validation`, on the
patches the run held out of training (`data.holdout`, listed in its validation.txt), and prints
BD-rate against Pillow's JPEG by training step and hours. Writes JSON.

    python benchmarks/learning_curve.py runs/hyperprior-cpu
    python benchmarks/learning_curve.py runs/hyperprior-cpu --validation --out benchmarks/results/curve-val.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from checkpoints_eval import held_out, measure

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--qualities", default="1,10,25,50,75,90,100")
    p.add_argument("--validation", action="store_true", help="measure on the run's held-out patches instead")
    p.add_argument("--images", type=int, default=0, help="only the first N images (0: all)")
    p.add_argument("--jobs", type=int, default=2, help="nic eval worker processes")
    p.add_argument("--results", default="results/learning-curve")
    p.add_argument("--out", default="benchmarks/results/learning_curve.json")
    args = p.parse_args()
    run = Path(args.run)
    files = sorted(Path(args.data).glob("*.png"))
    if args.validation:
        files = held_out(run)
        args.data = f"{run / 'validation.txt'} ({len(files)} held-out images)"
    points, names = {}, {}
    for ckpt in sorted(run.glob("snapshots/*.pt")) + [run / "checkpoint.pt"]:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        name = f"{run.name}-{state['step']}"
        points[name] = ckpt
        names[name] = {"step": state["step"], "hours": state["elapsed"] / 3600, "hardware": state["hardware"]}
    bd = measure(points, files[:args.images or None], args.qualities, Path(args.results), args.jobs)["psnr"]["jpeg"]
    print(f"{'model':>28} {'step':>7} {'hours':>6}  BD-rate vs JPEG")
    for name, info in names.items():
        info["bd_rate_vs_jpeg"] = bd[name]["bd_rate"]
        print(f"{name:>28} {info['step']:7d} {info['hours']:6.2f}  {info['bd_rate_vs_jpeg']:+.1f}%")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"run": str(run), "data": args.data, "images": args.images or "all",
                               "qualities": args.qualities, "hardware": next(iter(names.values()))["hardware"],
                               "points": names}, indent=2) + "\n")


if __name__ == "__main__":
    main()
