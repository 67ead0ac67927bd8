"""What buys rate at an equal budget: training runs that differ in one setting, side by side.

Every run starts from the same weights (`run.init`) and sees about the same number of crop
pixels; each is exported and coded with `nic eval` (real files) on the patches the runs held
out of training (`data.holdout`; all runs must hold out the same ones). The table gives each
run's difference from the first run's config, its steps, pixels, wall time on one thread,
and BD-rate (PSNR) against the starting weights and against JPEG. Writes JSON.

    python lab/scripts/ablation.py runs/abl/A runs/abl/B ... --start weights-next/hyperprior.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from checkpoints_eval import held_out, measure

from nic.train.config import resolve

ROOT = Path(__file__).resolve().parents[2]  # the repository


def _differences(cfg: dict, base: dict) -> str:
    cfg, base = resolve(base=cfg), resolve(base=base)  # keys newer than a run: their defaults
    keys = [f"{s}.{k}={v}" for s, table in cfg.items() for k, v in table.items()
            if s in ("data", "optim", "model") and base[s].get(k) != v]
    return ", ".join(keys) or "(baseline)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--start", type=Path, required=True, help="the weights every run started from")
    p.add_argument("--qualities", default="1,10,25,50,75,90,100")
    p.add_argument("--images", type=int, default=0, help="only the first N held-out images (0: all)")
    p.add_argument("--jobs", type=int, default=2, help="nic eval worker processes")
    p.add_argument("--results", default="results/ablation")
    p.add_argument("--out", default="lab/results/ablation.json")
    args = p.parse_args()
    files = held_out(args.runs[0])
    for run in args.runs[1:]:
        if held_out(run) != files:
            raise SystemExit(f"{run}: holds out other images than {args.runs[0]}")
    files = files[:args.images or None]
    states = {run.name: torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
              for run in args.runs}
    base = states[args.runs[0].name]["config"]
    bd = measure({"start": args.start} | {run.name: run / "checkpoint.pt" for run in args.runs},
                 files, args.qualities, Path(args.results), args.jobs)["psnr"]
    rows = {}
    print(f"{'run':>6}  {'steps':>6} {'Mpx':>7} {'s/step':>6}  {'vs start':>8} {'vs JPEG':>8}  setting")
    for name, state in states.items():
        cfg = state["config"]
        pixels = state["step"] * cfg["data"]["batch"] * cfg["data"]["crop"] ** 2
        rows[name] = {"setting": _differences(cfg, base), "steps": state["step"], "megapixels": pixels / 1e6,
                      "wall_s": round(state["elapsed"], 1), "s_per_step": state["elapsed"] / state["step"],
                      "bd_rate_vs_start": bd["start"][name]["bd_rate"], "bd_rate_vs_jpeg": bd["jpeg"][name]["bd_rate"],
                      "hardware": state["hardware"]}
        r = rows[name]
        print(f"{name:>6}  {r['steps']:6d} {r['megapixels']:7.0f} {r['s_per_step']:6.3f}  "
              f"{r['bd_rate_vs_start']:+7.2f}% {r['bd_rate_vs_jpeg']:+7.1f}%  {r['setting']}")
    print(f"start: {bd['jpeg']['start']['bd_rate']:+.1f}% vs JPEG; {len(files)} held-out images, "
          f"qualities {args.qualities}")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"start": str(args.start), "images": len(files), "qualities": args.qualities,
                               "start_bd_rate_vs_jpeg": bd["jpeg"]["start"]["bd_rate"], "runs": rows},
                              indent=2) + "\n")


if __name__ == "__main__":
    main()
