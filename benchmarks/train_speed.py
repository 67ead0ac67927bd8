"""Training speed on this machine: steps/s and megapixels/s by precision, layout, threads, batch and crop.

Each setting runs in a fresh subprocess (its own thread count), one warm-up step and then
`--steps` timed training steps (forward, rate-distortion loss, backward, Adam) of the hyperprior
(the default's transforms and hyper path, without its context) with 10 gain levels. Prints a
table and writes JSON.

    python benchmarks/train_speed.py
    python benchmarks/train_speed.py --threads 1 --shapes 8x128 4x192 --compile
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ["fp32", "fp32+channels_last", "bf16", "bf16+channels_last"]


def worker(precision: str, threads: int, batch: int, crop: int, steps: int, compile_: bool) -> dict:
    """Runs inside the subprocess: time `steps` training steps after one warm-up."""
    import torch

    from nic.models.registry import build
    from nic.train.loss import rd_loss
    from nic.train.precision import Precision

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    p = Precision(precision.split("+")[0], precision.endswith("channels_last"))
    model = build("hyperprior", levels=10, lmbda_max=0.4197)
    model = model.to(memory_format=torch.channels_last if p.channels_last else torch.contiguous_format)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    fwd = torch.compile(model) if compile_ else model
    x = p.layout(torch.rand(batch, 3, crop, crop))
    t = torch.rand(batch) * 9

    def step() -> None:
        with p.autocast(torch.device("cpu")):
            out = fwd(x, t)
        loss = rd_loss(x, out, model.gain.lmbda(t))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    step()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    s = (time.perf_counter() - start) / steps
    return {"precision": precision, "threads": threads, "batch": batch, "crop": crop, "compile": compile_,
            "s_per_step": s, "steps_per_s": 1 / s, "mpx_per_s": batch * crop * crop / s / 1e6,
            "first_step_s": warmup}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precisions", nargs="+", default=PRECISIONS, choices=PRECISIONS)
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--shapes", nargs="+", default=["8x128", "4x192", "2x256"], help="BATCHxCROP")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to start)")
    p.add_argument("--out", default="benchmarks/results/train_speed.json")
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        prec, threads, batch, crop, steps, comp = args.worker
        print(json.dumps(worker(prec, int(threads), int(batch), int(crop), int(steps), comp == "1")))
        return
    rows = []
    print(f"{'precision':>19} {'thr':>3} {'batch':>5} {'crop':>4} {'compile':>7} {'s/step':>7} "
          f"{'steps/s':>7} {'Mpx/s':>6}")
    for shape in args.shapes:
        batch, crop = (int(v) for v in shape.split("x"))
        for threads in args.threads:
            for prec in args.precisions:
                for comp in [False, True] if args.compile else [False]:
                    cmd = [sys.executable, __file__, "--worker", prec, str(threads), str(batch), str(crop),
                           str(args.steps), "1" if comp else "0"]
                    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                    if res.returncode != 0:
                        print(f"{prec:>19} {threads:3d} {batch:5d} {crop:4d} {comp!s:>7}  failed: "
                              f"{res.stderr.strip().splitlines()[-1:]}")
                        continue
                    r = json.loads(res.stdout.strip().splitlines()[-1])
                    rows.append(r)
                    print(f"{prec:>19} {threads:3d} {batch:5d} {crop:4d} {comp!s:>7} {r['s_per_step']:7.3f} "
                          f"{r['steps_per_s']:7.2f} {r['mpx_per_s']:6.3f}", flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu, "torch": __import__("torch").__version__, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
