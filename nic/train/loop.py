"""The training loop: one process or DDP, atomic checkpoints, exact resume, JSONL logs.

Run through `nic train`; under `torchrun --nproc_per_node N -m nic train ...` every process
trains on its own crops and gradients are averaged (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from nic.errors import NicError
from nic.models.registry import build, from_bytes
from nic.train.config import to_toml
from nic.train.data import CropSampler, load_sources
from nic.train.loss import rd_loss
from nic.train.precision import Precision, candidates, fastest

CHECKPOINT = "checkpoint.pt"


def hardware(device: torch.device) -> str:
    """A one-line description of what trained the model, for the model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def learning_rate(step: int, optim: dict[str, Any]) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr over the remaining steps."""
    if step < optim["warmup"]:
        return optim["lr"] * (step + 1) / optim["warmup"]
    frac = (step - optim["warmup"]) / max(1, optim["steps"] - optim["warmup"])
    return optim["min_lr"] + 0.5 * (optim["lr"] - optim["min_lr"]) * (1 + math.cos(math.pi * min(frac, 1.0)))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file, then rename: a kill at any moment leaves the old one whole."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise NicError(f"{path}: no checkpoint to resume from")
    return torch.load(path, map_location="cpu", weights_only=True)


def kodak_check(model: torch.nn.Module, cfg: dict[str, Any]) -> list[dict]:
    """RD points from real bytes: export the current weights and code a few held-out images."""
    from nic.eval.rd import learned_points
    from nic.models.weights import serialize

    rcfg = cfg["run"]
    images = sorted(Path(rcfg["eval_dir"]).glob("*.png"))[: rcfg["eval_images"]]
    if not images:
        return []
    snapshot = copy.deepcopy(model).cpu().float()  # leave the training model where it is
    lm = from_bytes("training-check", serialize(snapshot, cfg["model"]))
    with torch.inference_mode():
        return learned_points(lm, images, rcfg["eval_qualities"])


def _init_from(model: torch.nn.Module, path: Path) -> None:
    """Start from another run's weights, or a shipped weights file, wherever names and shapes
    match (e.g. the factorized model from a hyperprior's transforms and gains); the rest keeps
    its fresh init. A shipped file's integer-only decoder networks come back as the float
    values of their integer weights, so a shipped model can be trained further. Gain tables
    learned for another lambda range are resampled to this model's levels."""
    if path.suffix == ".safetensors":
        if not path.exists():
            raise NicError(f"{path}: no such weights file")
        loaded = from_bytes(path.stem, path.read_bytes()).model
        theirs, their_cfg = loaded.state_dict(), getattr(loaded, "config", {})
    else:
        state = load_checkpoint(path / CHECKPOINT if path.is_dir() else path)
        theirs, their_cfg = state["model"], state["config"]["model"]
    ours = model.state_dict()
    shared = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    if not shared:
        raise NicError(f"{path}: no weights match this architecture")
    model.load_state_dict(shared, strict=False)
    gain = getattr(model, "gain", None)
    if gain is not None and "gain.log_gain" in theirs and "lmbda_min" in their_cfg and (
            (their_cfg["levels"], their_cfg["lmbda_min"], their_cfg["lmbda_max"])
            != (gain.levels, gain.lmbda_min, gain.lmbda_max)):
        gain.load_resampled(theirs["gain.log_gain"], theirs["gain.log_inv_gain"],
                            their_cfg["lmbda_min"], their_cfg["lmbda_max"])


def _select_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def train(cfg: dict[str, dict[str, Any]] | None, run_dir: Path, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train the model described by `cfg` into `run_dir`, or continue from its checkpoint
    (with `cfg` None, the config the run was started with)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    ckpt_path = run_dir / CHECKPOINT
    state = load_checkpoint(ckpt_path) if resume else None
    cfg = cfg or state["config"]
    device = _select_device(cfg["run"]["device"], local_rank)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg["run"]["threads"]:
        torch.set_num_threads(cfg["run"]["threads"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    run_dir.mkdir(parents=True, exist_ok=True)
    mcfg = dict(cfg["model"])
    torch.manual_seed(cfg["run"]["seed"])  # the same initial weights on every rank and rerun
    model = build(mcfg.pop("architecture"), **mcfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["optim"]["lr"])
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
    elif cfg["run"]["init"]:
        _init_from(model, Path(cfg["run"]["init"]))

    dcfg, ocfg, rcfg = cfg["data"], cfg["optim"], cfg["run"]
    images, held_out = load_sources(dcfg["sources"], dcfg["max_side"], dcfg["holdout"])
    sampler = CropSampler(images, dcfg["crop"], device, rcfg["seed"])
    per_rank = max(1, dcfg["batch"] // world)
    levels = model.gain.levels

    def batch(at: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The crops and level positions of step `at`: a pure function of seed, step and rank."""
        gen = sampler.generator(at, rank)
        x = sampler.batch(per_rank, gen)
        return x, torch.rand(per_rank, generator=gen).to(device) * (levels - 1)

    def trial(net: torch.nn.Module, p: Precision) -> None:
        x, t = batch(0)
        with p.autocast(device):
            out = net(p.layout(x), t)
        rd_loss(x, out, net.gain.lmbda(t), ocfg["metric"])["loss"].backward()

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
    log = (run_dir / "log.jsonl").open("a") if rank == 0 else None
    if rank == 0:
        (run_dir / "config.toml").write_text(to_toml(cfg))
        if held_out:
            (run_dir / "validation.txt").write_text("".join(f"{p}\n" for p in held_out))
        log.write(json.dumps({"step": step, "precision": precision.name, "note": note,
                              "trial_s_per_step": timings, "train_images": len(images),
                              "held_out": len(held_out)}) + "\n")
        log.flush()
    bar = tqdm(total=ocfg["steps"], initial=step, disable=not progress or rank != 0,
               dynamic_ncols=True, mininterval=2.0)
    skipped, window, t_window = 0, [], time.time()
    t_start = time.time() - elapsed
    model.train()
    while step < ocfg["steps"]:
        x, t = batch(step)
        torch.manual_seed(rcfg["seed"] * 7919 + step * 131 + rank)  # the noise, reproducibly
        lr = learning_rate(step, ocfg)
        for group in opt.param_groups:
            group["lr"] = lr
        with precision.autocast(device):
            out = fwd(precision.layout(x), t)
        m = rd_loss(x, out, model.gain.lmbda(t), ocfg["metric"])
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
        if rank == 0 and (step % rcfg["checkpoint_every"] == 0 or step == ocfg["steps"]):
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "elapsed": time.time() - t_start, "config": cfg, "hardware": hardware(device),
            })
            if rcfg["eval_every"] and step % rcfg["eval_every"] == 0:
                points = kodak_check(model, cfg)
                log.write(json.dumps({"step": step, "check": points}) + "\n")
                log.flush()
            if rcfg["snapshot_every"] and step % rcfg["snapshot_every"] == 0:
                (run_dir / "snapshots").mkdir(exist_ok=True)
                save_checkpoint(run_dir / "snapshots" / f"step-{step:07d}.pt", {
                    "model": model.state_dict(), "step": step, "elapsed": time.time() - t_start,
                    "config": cfg, "hardware": hardware(device)})
    bar.close()
    if log:
        log.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"step": step, "elapsed": time.time() - t_start, "skipped": skipped}
