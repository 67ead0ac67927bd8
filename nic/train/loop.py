"""The training loop: one process or DDP, atomic checkpoints, exact resume, JSONL logs.

Run through `nic train`; under `torchrun --nproc_per_node N -m nic train ...` every process
trains on its own crops and gradients are averaged (NCCL on GPUs, gloo on CPUs). The model is
used only through its contract (`models/base.py`): its forward pass and its rate schedule.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from nic.errors import NicError
from nic.models.registry import build
from nic.train.checkpoint import CHECKPOINT, hardware, init_from, load_checkpoint, save_checkpoint
from nic.train.config import to_toml
from nic.train.data import CropSampler, load_sources
from nic.train.export import check_points
from nic.train.loss import rd_loss
from nic.train.precision import Precision, candidates, fastest


def learning_rate(step: int, optim: dict[str, Any]) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr over the remaining steps."""
    if step < optim["warmup"]:
        return optim["lr"] * (step + 1) / optim["warmup"]
    frac = (step - optim["warmup"]) / max(1, optim["steps"] - optim["warmup"])
    return optim["min_lr"] + 0.5 * (optim["lr"] - optim["min_lr"]) * (1 + math.cos(math.pi * min(frac, 1.0)))


def fitted_steps(step: int, spent_s: float, s_per_step: float, hours: float) -> int:
    """The step count that ends a run within `hours` of wall time, `spent_s` of it gone at
    `step`, at `s_per_step` from here on (never fewer than the steps already taken)."""
    return step + max(0, int((hours * 3600 - spent_s) / s_per_step))


def trainable(model: torch.nn.Module, only: list[str]) -> list[torch.nn.Parameter]:
    """The parameters to train: all, or those under the module names in `only` (the rest is
    frozen, so backward skips it: e.g. a new context model trained on fixed transforms)."""
    for name, p in model.named_parameters():
        p.requires_grad_(not only or name.split(".")[0] in only)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise NicError(f"optim.only={only!r} names no module of this model")
    return params


def start_device(run: dict[str, Any], world: int, local_rank: int) -> torch.device:
    """This process's device, with the process group (under torchrun) and thread count set up."""
    name = run["device"]
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if run["threads"]:
        torch.set_num_threads(run["threads"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def train(cfg: dict[str, dict[str, Any]] | None, run_dir: Path, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train the model described by `cfg` into `run_dir`, or continue from its checkpoint
    (with `cfg` None, the config the run was started with)."""
    t_called = time.time()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    ckpt_path = run_dir / CHECKPOINT
    state = load_checkpoint(ckpt_path) if resume else None
    cfg = cfg or state["config"]
    dcfg, ocfg, rcfg = cfg["data"], cfg["optim"], cfg["run"]
    if not dcfg["sources"]:
        raise NicError("no training data: give image folders or a CIFAR-100 .tar.gz with --data, "
                       "or data.sources in a --config")
    if rcfg["eval_every"] and not rcfg["eval_dir"]:
        raise NicError("run.eval_every needs run.eval_dir: a folder of PNGs to measure the weights on")
    if ocfg["hours"] and ocfg["warmup"] < 20:
        raise NicError("optim.hours needs optim.warmup of at least 20 steps: the run is timed in its second half")
    device = start_device(rcfg, world, int(os.environ.get("LOCAL_RANK", "0")))

    # The model and its optimizer: fresh, resumed, or started from other weights.
    torch.manual_seed(rcfg["seed"])  # the same initial weights on every rank and rerun
    model = build(**cfg["model"]).to(device)
    opt = torch.optim.Adam(trainable(model, ocfg["only"]), lr=ocfg["lr"])
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
    elif rcfg["init"]:
        init_from(model, Path(rcfg["init"]))

    # The data: every batch is a pure function of seed, step and rank, so resume is exact.
    images, held_out = load_sources(dcfg["sources"], dcfg["max_side"], dcfg["holdout"], dcfg["grey"])
    run_dir.mkdir(parents=True, exist_ok=True)  # only once the weights and data have loaded
    sampler = CropSampler(images, dcfg["crop"], device, rcfg["seed"], dcfg["augment"])
    per_rank = max(1, dcfg["batch"] // world)

    def batch(at: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The crops of step `at` and their level positions in the model's rate schedule."""
        gen = sampler.generator(at, rank)
        x = sampler.batch(per_rank, gen)
        return x, torch.rand(per_rank, generator=gen).to(device) * (model.levels - 1)

    # Precision and memory layout: timed on this machine unless the config fixes them.
    def trial(net: torch.nn.Module, p: Precision) -> None:
        x, t = batch(0)
        with p.autocast(device):
            out = net(p.layout(x), t)
        rd_loss(x, out, net.lmbda(t), ocfg["metric"], ocfg["balance"])["loss"].backward()

    options, note = candidates(rcfg["precision"], rcfg["channels_last"], device)
    precision, timings = fastest(options, trial, model)
    if world > 1:  # every rank must train the same way: rank 0's timing decides
        choice = torch.tensor([options.index(precision)], device=device)
        dist.broadcast(choice, 0)
        precision = options[int(choice)]
    rcfg["precision"], rcfg["channels_last"] = precision.dtype, precision.channels_last  # resume reuses it
    model = model.to(memory_format=torch.channels_last if precision.channels_last else torch.contiguous_format)
    net = DistributedDataParallel(model) if world > 1 else model
    fwd = torch.compile(net) if rcfg["compile"] else net

    # The run folder: resolved config, held-out list, log.
    log = (run_dir / "log.jsonl").open("a") if rank == 0 else None
    if rank == 0:
        (run_dir / "config.toml").write_text(to_toml(cfg))
        if held_out:
            (run_dir / "validation.txt").write_text("".join(f"{p}\n" for p in held_out))
        log.write(json.dumps({"step": step, "precision": precision.name, "note": note,
                              "trial_s_per_step": timings, "train_images": len(images),
                              "held_out": len(held_out)}) + "\n")
        log.flush()

    def checkpoint(path: Path, with_optimizer: bool) -> None:
        save_checkpoint(path, {"model": model.state_dict(),
                               **({"optimizer": opt.state_dict()} if with_optimizer else {}),
                               "step": step, "elapsed": time.time() - t_start, "config": cfg,
                               "hardware": hardware(device)})

    def fit_steps(s_per_step: float, spent_s: float) -> None:
        """End of warm-up (the schedule so far does not depend on the step count): set
        optim.steps to what fits in optim.hours at the speed of the warm-up's second half."""
        steps = torch.tensor([fitted_steps(step, spent_s, s_per_step, ocfg["hours"])], device=device)
        if world > 1:  # every rank must stop at the same step: rank 0's clock decides
            dist.broadcast(steps, 0)
        ocfg["steps"] = int(steps)
        bar.total = ocfg["steps"]
        if rank == 0:
            (run_dir / "config.toml").write_text(to_toml(cfg))
            log.write(json.dumps({"step": step, "fitted": {"hours": ocfg["hours"], "spent_s": spent_s,
                                                           "s_per_step": s_per_step, "steps": ocfg["steps"]}}) + "\n")
            log.flush()

    bar = tqdm(total=ocfg["steps"], initial=step, disable=not progress or rank != 0,
               dynamic_ncols=True, mininterval=2.0)
    skipped, window, t_window = 0, [], time.time()
    t_start = time.time() - elapsed
    half = ocfg["warmup"] // 2  # optim.hours times the warm-up's second half (from a resume within it)
    t_timed = (step, time.time()) if ocfg["hours"] and half <= step < ocfg["warmup"] else None
    model.train()
    while step < ocfg["steps"] or (ocfg["hours"] and step < ocfg["warmup"]):  # fitted at the warm-up's end
        x, t = batch(step)
        torch.manual_seed(rcfg["seed"] * 7919 + step * 131 + rank)  # the noise, reproducibly
        lr = learning_rate(step, ocfg)
        for group in opt.param_groups:
            group["lr"] = lr
        with precision.autocast(device):
            out = fwd(precision.layout(x), t)
        m = rd_loss(x, out, model.lmbda(t), ocfg["metric"], ocfg["balance"])
        opt.zero_grad(set_to_none=True)
        m["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), ocfg["clip"])
        finite = torch.isfinite(m["loss"]) & torch.isfinite(grad_norm)
        if world > 1:  # every rank must agree to skip, or DDP falls out of step
            flag = finite.float().to(device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag.bool()
        if bool(finite):
            opt.step()
        else:
            skipped += 1
        step += 1
        bar.update(1)
        if ocfg["hours"] and step == half:
            t_timed = (step, time.time())
        if ocfg["hours"] and step == ocfg["warmup"]:
            fit_steps((time.time() - t_timed[1]) / (step - t_timed[0]), elapsed + time.time() - t_called)
        window.append([m["loss"].item(), m["bpp"].item(), m["psnr"].item()])
        if rank == 0 and (step % rcfg["log_every"] == 0 or step == ocfg["steps"]):
            loss, bpp, psnr = (sum(c) / len(c) for c in zip(*window, strict=True))
            rate = len(window) / max(1e-9, time.time() - t_window)
            record = {"step": step, "loss": loss, "bpp": bpp, "psnr": psnr, "lr": lr,
                      "steps_per_s": rate, "skipped": skipped, "elapsed_s": time.time() - t_start}
            log.write(json.dumps(record) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{loss:.3f}", bpp=f"{bpp:.3f}", psnr=f"{psnr:.2f}", refresh=False)
            window, t_window = [], time.time()
        if rank != 0:
            continue
        if step % rcfg["checkpoint_every"] == 0 or step == ocfg["steps"]:
            checkpoint(ckpt_path, with_optimizer=True)
        if rcfg["eval_every"] and step % rcfg["eval_every"] == 0:
            log.write(json.dumps({"step": step, "check": check_points(model, cfg)}) + "\n")
            log.flush()
        if rcfg["snapshot_every"] and step % rcfg["snapshot_every"] == 0:
            (run_dir / "snapshots").mkdir(exist_ok=True)
            checkpoint(run_dir / "snapshots" / f"step-{step:07d}.pt", with_optimizer=False)
    bar.close()
    if log:
        log.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"step": step, "elapsed": time.time() - t_start, "skipped": skipped}
