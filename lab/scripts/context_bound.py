"""What a checkerboard context could still save on a trained hyperprior's latents, without training one.

For every non-anchor symbol of ŷ (row + column odd), the residual the hyperprior leaves,
r = (round(y·gain - mu·gain)) / sigma, is regressed (least squares, per channel) on the same
channel's residuals at its 12 anchors (`checkerboard.OFFSETS`), and |r| on their |r|. The R²
of the first says how much of the mean a context could still predict; at high rate a
Gaussian whose variance shrinks by (1 - R²) costs 0.5·log2(1 / (1 - R²)) fewer bits per
symbol, which the table turns into a share of the model's estimated bits. A linear,
same-channel predictor is a lower bound on what a trained context network finds, but when it
is near zero the latents are close to white given ẑ, and a context model learns little unless
the analysis transform is retrained with it.

    python lab/scripts/context_bound.py --weights nic/weights/hyperprior.safetensors --images 60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nic.entropy.checkerboard import OFFSETS, anchors, neighbours
from nic.entropy.gaussian import SCALE_MAX, SCALE_MIN, gaussian_bin_probability
from nic.models.registry import from_bytes
from nic.train.data import holdout

ROOT = Path(__file__).resolve().parents[2]  # the repository


def held_out_patches(train: Path, count: int) -> list[np.ndarray]:
    """The first `count` of the patches that training holds out (`data.holdout = 120`), as
    RGB uint8 arrays (`sections.py` codes the same ones)."""
    files = holdout([train], 120)[:count]
    if not files:
        raise SystemExit(f"{train}: no patches found (pass the patch pack with --train)")
    return [np.asarray(Image.open(f).convert("RGB")).copy() for f in files]


def patches(train: Path, count: int) -> torch.Tensor:
    """`held_out_patches` as one (count, 3, H, W) batch in [0, 1]."""
    return torch.from_numpy(np.stack(held_out_patches(train, count))).permute(0, 3, 1, 2).float().div(255)


def r_squared(target: torch.Tensor, feats: torch.Tensor) -> float:
    """R² of a least-squares fit of target (n,) on feats (n, k) plus a constant; 0 for a
    constant target (a channel that rounds to one symbol everywhere: nothing to predict)."""
    if not target.var() > 0:
        return 0.0
    x = torch.cat([feats, torch.ones(len(target), 1, dtype=feats.dtype)], dim=1)
    fit = x @ torch.linalg.lstsq(x, target[:, None]).solution
    return float(1 - (target - fit[:, 0]).var() / target.var())


@torch.no_grad()
def measure(model: torch.nn.Module, x: torch.Tensor, level: float) -> dict:
    y = model.g_a(x)
    mu, log_sigma = model.h_s(torch.round(model.h_a(y))).chunk(2, dim=1)
    gain, _ = model.gain(torch.full((len(x),), level))
    sigma = (log_sigma.exp().clamp(SCALE_MIN, SCALE_MAX) * gain)
    q = torch.round(y * gain - mu * gain)
    bits = -torch.log2(gaussian_bin_probability(q, sigma)).double()
    r = (q / sigma).double()
    rest = ~anchors(*y.shape[-2:])
    around = neighbours(r * (~rest))
    channels = y.shape[1]
    mean_r2, abs_r2 = [], []
    for c in range(channels):
        target = r[:, c][:, rest].flatten()
        feats = around[:, c::channels][:, :, rest].permute(0, 2, 1).reshape(-1, len(OFFSETS))
        mean_r2.append(r_squared(target, feats))
        abs_r2.append(r_squared(target.abs(), feats.abs()))
    mean_r2 = np.clip(np.array(mean_r2), 0, 0.999)
    saved = 0.5 * np.log2(1 / (1 - mean_r2))  # bits per non-anchor symbol, per channel
    rest_count = int(rest.sum()) * len(x)
    share = float(saved.sum() * rest_count / bits.sum())
    return {"level": level, "lambda": float(model.lmbda(torch.tensor([level]))[0]),
            "bits_per_symbol": float(bits.mean()), "mean_r2": float(mean_r2.mean()), "max_r2": float(mean_r2.max()),
            "abs_r2": float(np.mean(abs_r2)), "saved_share": share}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=ROOT / "nic" / "weights" / "hyperprior.safetensors")
    p.add_argument("--train", type=Path, default=ROOT.parent / "shared" / "data" / "train",
                   help="the patch pack; its 120 held-out patches (as in training) are measured")
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--levels", type=float, nargs="+", default=[1.0, 5.0, 9.0])
    p.add_argument("--out", type=Path, default=ROOT / "lab" / "results" / "context_bound.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = from_bytes(args.weights.stem, args.weights.read_bytes()).model.eval()
    x = patches(args.train, args.images)
    rows = [measure(model, x, level) for level in args.levels if level <= model.levels - 1]
    print(f"{'level':>5} {'lambda':>7} {'bits/symbol':>11} {'R² mean':>8} {'max':>6} {'R² |r|':>7} "
          f"{'rate a context saves':>21}")
    for r in rows:
        print(f"{r['level']:5.1f} {r['lambda']:7.4f} {r['bits_per_symbol']:11.3f} {r['mean_r2']:8.3f} "
              f"{r['max_r2']:6.3f} {r['abs_r2']:7.3f} {100 * r['saved_share']:20.2f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"weights": str(args.weights), "images": len(x), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
