"""BD-rate against JPEG as training goes on, over hours of training: what more training buys.

Exports snapshots of one or more runs (`run.snapshot_every`; every `--every` steps) and their
final checkpoints as temporary models, plus any weights files given with `--weights` (alone,
or as one line of exports with `SERIES=PATH@HOURS`), and
measures them all with `nic eval` (real files) on Kodak and on the patches the runs held out
of training (`data.holdout`, their validation.txt; all runs must hold out the same ones).
Hours run on from the training behind each run's starting weights (`RUN@HOURS`; the model
card's history says how many), so runs that continue each other make one curve. Points
measured before (`--with` earlier JSON results) join the table, the projection and the plot
without being measured again. Prints a table, writes JSON and, with `--plot`, a figure.

    python lab/scripts/learning_curve.py runs/a@5.85 runs/b@7.74 --every 4000 \\
        --weights nic/weights/hyperprior.safetensors@7.74 --plot lab/learning-curve.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from checkpoints_eval import held_out, measure

ROOT = Path(__file__).resolve().parents[2]  # the repository
SETS = ("validation", "kodak")


def _at(spec: str) -> tuple[Path, float]:
    path, _, hours = spec.rpartition("@")
    if not path:
        raise SystemExit(f"{spec}: expected PATH@HOURS (hours of training before it)")
    return Path(path), float(hours)


def points(runs: list[str], weights: list[str], every: int) -> tuple[dict[str, Path], dict[str, dict]]:
    """name -> checkpoint or weights file, and name -> {series, step, hours, hardware}."""
    paths, info = {}, {}
    for spec in runs:
        run, before = _at(spec)
        ckpts = [c for c in sorted(run.glob("snapshots/*.pt")) if int(c.stem.split("-")[1]) % every == 0]
        for ckpt in ckpts + [run / "checkpoint.pt"]:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            name = f"{run.name}-{state['step']}"
            paths[name] = ckpt
            info[name] = {"series": run.name, "step": state["step"], "hours": before + state["elapsed"] / 3600,
                          "hardware": state["hardware"]}
    for spec in weights:
        series, _, spec = spec.rpartition("=")
        path, hours = _at(spec)
        name = path.stem
        paths[name] = path
        info[name] = {"series": series or "weights", "step": None, "hours": hours, "hardware": None}
    return paths, info


def projection(info: dict[str, dict], which: str, target: float, series: list[str]) -> dict | None:
    """A straight line through BD-rate against log2(hours) over the points of `series`: the
    points gained per doubling of training, and the hours at which the line reaches `target`."""
    rows = [(math.log2(i["hours"]), i[which]) for i in info.values() if i["series"] in series and which in i]
    if len(rows) < 2:
        return None
    slope, icpt = np.polyfit(*zip(*rows, strict=True), 1)
    hours = 2 ** ((target - icpt) / slope) if slope < 0 else math.inf
    return {"series": series, "per_doubling": float(slope), "target": target, "hours": float(hours)}


def plot(info: dict[str, dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(SETS), figsize=(11, 4), sharey=True)
    order = dict.fromkeys(i["series"] for i in sorted(info.values(), key=lambda i: i["hours"]))
    palette = plt.get_cmap("tab20").colors  # one colour per series in both panels, up to 20 series
    color = {series: palette[n % len(palette)] for n, series in enumerate(order)}
    for ax, which in zip(axes, SETS, strict=True):
        for series in order:
            rows = sorted((i["hours"], i[which]) for i in info.values() if i["series"] == series and which in i)
            if rows:
                ax.plot(*zip(*rows, strict=True), "o" if series == "weights" else "o-", color=color[series],
                        label=series)
        ax.set(title=which, xlabel="hours of training", ylabel="BD-rate vs JPEG (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", ncol=2, fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", help="RUN@HOURS: a run folder and the hours of training before it")
    p.add_argument("--weights", nargs="*", default=[],
                   help="[SERIES=]PATH@HOURS: weights files measured as points, of series 'weights' unless named")
    p.add_argument("--every", type=int, default=1, help="only snapshots at multiples of this many steps")
    p.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--sets", default=",".join(SETS), help="which of validation,kodak to measure on")
    p.add_argument("--qualities", default="1,10,25,50,75,90,100")
    p.add_argument("--images", type=int, default=0, help="only the first N held-out patches (0: all)")
    p.add_argument("--jobs", type=int, default=2, help="nic eval worker processes")
    p.add_argument("--results", default="results/learning-curve")
    p.add_argument("--out", default="lab/results/learning_curve.json")
    p.add_argument("--plot", type=Path, help="also draw the curves into this image")
    p.add_argument("--target", type=float, default=-42.0, help="BD-rate vs JPEG to project the hours to")
    p.add_argument("--project", default="", help="series (run names, 'weights') whose points the line fits")
    p.add_argument("--with", dest="earlier", nargs="*", type=Path, default=[],
                   help="earlier results (this script's JSON) whose points join these, not measured again")
    args = p.parse_args()
    paths, info = points(args.runs, args.weights, args.every)
    if not paths and not args.earlier:
        raise SystemExit("nothing to measure: give runs, --weights or --with")
    sets = {"kodak": sorted(Path(args.kodak).glob("*.png"))}
    if args.runs:
        runs = [_at(spec)[0] for spec in args.runs]
        files = held_out(runs[0])
        if any(held_out(run) != files for run in runs[1:]):
            raise SystemExit("the runs hold out different images: their validation curves would not compare")
        sets["validation"] = files[:args.images or None]
    done = [s for s in args.sets.split(",") if s in sets] if paths else []
    for which in done:
        if not sets[which]:
            raise SystemExit(f"no {which} images found (--kodak, or the runs' validation.txt)")
        bd = measure(paths, sets[which], args.qualities, Path(args.results) / which, args.jobs)["psnr"]["jpeg"]
        for name in info:
            info[name][which] = bd[name]["bd_rate"]
    for earlier in args.earlier:
        info = {**json.loads(earlier.read_text())["points"], **info}
    measured = [s for s in SETS if any(s in i for i in info.values())]
    print(f"{'model':>28} {'step':>7} {'hours':>6}  " + "  ".join(f"{s + ' vs JPEG':>18}" for s in measured))
    for name, i in sorted(info.items(), key=lambda kv: kv[1]["hours"]):
        print(f"{name:>28} {i['step'] if i['step'] is not None else '':>7} {i['hours']:6.2f}  "
              + "  ".join(f"{i[s]:+17.1f}%" if s in i else f"{'':>18}" for s in measured))
    lines = {}
    for which in measured if args.project else []:
        lines[which] = line = projection(info, which, args.target, args.project.split(","))
        if line:
            print(f"{which}: {line['per_doubling']:+.1f} points per doubling of training hours; "
                  f"{args.target:+.0f}% projected at {line['hours']:.0f} h")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": args.runs, "weights": args.weights, "qualities": args.qualities,
                               "with": [str(e) for e in args.earlier],
                               "sets": {s: len(sets[s]) for s in done}, "points": info,
                               "projection": lines}, indent=2) + "\n")
    if args.plot:
        plot(info, args.plot)


if __name__ == "__main__":
    main()
