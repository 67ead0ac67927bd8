"""Exact fixed-point evaluation of the decoder's networks (h_s and g_s).

Floating-point convolutions give slightly different results with another thread count, CPU
or GPU; in a hyperprior model h_s picks the probability table of every symbol, so one ulp
of difference can turn the rest of a file into garbage, and in g_s it flips output pixels.
Here every decoder layer is integer arithmetic (Ballé et al. 2019, in spirit): weights are
integers (per output channel scale), activations are integers with FRAC_BITS fractional
bits, rescaled by rounding shifts. Convolutions run in float64 on integer-valued tensors:
every product and partial sum stays below 2**53, so each result is the exact integer
whatever the summation order, thread count, BLAS or machine. The integer networks track
the float ones to ~1e-4, far below what changes a decoded pixel's quality.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from nic.models.layers import GDN

FRAC_BITS = 12  # fixed-point fraction of activations and outputs
WEIGHT_LIMIT = (1 << 14) - 1  # |integer weight| <= this (stored as int16)
ACT_LIMIT = (1 << 22) - 1  # |activation| clamp: 1024 in real units, far above what networks make
CHUNK_BYTES = 64 << 20  # im2col buffer per convolution call
NORM_LIMIT = float(1 << 30)  # inverse-GDN multiplier clamp: keeps a * norm below 2**52
# Worst case accumulator: 2**22 * 2**14 * (fan-in < 2**16) = 2**52 < 2**53.


def round_shift(x: torch.Tensor, shift: int | torch.Tensor) -> torch.Tensor:
    """x * 2**-shift, rounded half up, on int64 tensors; shift is a scalar or broadcasts."""
    shift = torch.as_tensor(shift, dtype=torch.int64)
    right, left = shift.clamp_min(0), (-shift).clamp_min(0)
    half = torch.where(right > 0, torch.ones_like(right) << (right - 1).clamp_min(0), 0)
    return ((x + half) >> right) << left


def _bits_for(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Per-slice power-of-two scale that maps the largest |value| just under WEIGHT_LIMIT."""
    peak = t.abs().amax(dim=dims).clamp_min(1e-30)
    return torch.floor(torch.log2(WEIGHT_LIMIT / peak)).long().clamp(max=40)


def subpixel_kernel(w: torch.Tensor, padding: int) -> torch.Tensor:
    """ConvTranspose2d(k, stride 2) weight (in, out, k, k) -> Conv2d weight (4 out, in, 3, 3).

    A stride-2 transposed conv equals a 3x3 conv that makes the four output phases as channels,
    then pixel_shuffle(2); as a plain conv it runs on the fast GEMM path.
    """
    cin, cout, k, _ = w.shape
    out = torch.zeros(cout, 2, 2, cin, 3, 3, dtype=w.dtype)
    for ay in range(2):
        for ax in range(2):
            for ty in range(3):
                for tx in range(3):
                    ky, kx = ay + padding - 2 * (ty - 1), ax + padding - 2 * (tx - 1)
                    if 0 <= ky < k and 0 <= kx < k:
                        out[:, ay, ax, :, ty, tx] = w[:, :, ky, kx].T
    return out.reshape(cout * 4, cin, 3, 3)


def _conv3x3(a: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 3x3, stride-1, zero-padded conv, a band of rows at a time: its im2col buffer
    (9 x channels x pixels) would otherwise be the largest allocation of a whole decode."""
    _, c, h, w = a.shape
    rows = max(1, CHUNK_BYTES // (c * 9 * w * a.element_size()))
    if rows >= h:
        return F.conv2d(a, kernel, bias, padding=1)
    padded = F.pad(a, (0, 0, 1, 1))
    return torch.cat([F.conv2d(padded[:, :, r:r + rows + 2], kernel, bias, padding=(0, 1))
                      for r in range(0, h, rows)], dim=2)


def _deconv(a: torch.Tensor, layer: dict) -> torch.Tensor:
    """A stride-2 transposed conv on integer-valued float64, by the faster of two exact routes."""
    b, cin, h, w = a.shape
    if "kernel" in layer:
        return F.pixel_shuffle(_conv3x3(a, layer["kernel"], layer["kernel_bias"]), 2)
    # Few output channels: one GEMM to every kernel tap, then fold (col2im) sums the overlaps.
    k, p = layer["weight"].shape[2], layer["padding"][0]
    cols = layer["matrix"] @ a.reshape(b, cin, h * w)
    full = F.fold(cols, (2 * h + k - 2, 2 * w + k - 2), k, stride=2)
    return full[:, :, p:p + 2 * h, p:p + 2 * w] + layer["bias"].view(1, -1, 1, 1)


def _scale(shift: torch.Tensor) -> torch.Tensor:
    """2**-shift as float64, built with ldexp: exact by definition, on every libm."""
    return torch.tensor([math.ldexp(1.0, -int(s)) for s in shift.flatten()], dtype=torch.float64).view(1, -1, 1, 1)


def _rescale(acc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """acc * scale (a power of two) rounded half up, in place: exact on integer-valued float64."""
    return acc.mul_(scale).add_(0.5).floor_()


UNIT = _scale(torch.tensor([FRAC_BITS]))  # 2**-FRAC_BITS


class IntegerNet:
    """A fixed-point twin of an nn.Sequential of convs, transposed convs, ReLU and inverse GDN."""

    def __init__(self, module: nn.Sequential, tensors: dict[str, torch.Tensor] | None = None,
                 input_frac: int = 0):
        self.input_frac = input_frac
        self.layers: list[dict] = []
        mods = list(module)
        frac = input_frac
        for i, m in enumerate(mods):
            key = str(i)
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                transposed = isinstance(m, nn.ConvTranspose2d)
                if transposed and (m.stride != (2, 2) or m.output_padding != (1, 1)):
                    raise ValueError("only stride-2 transposed convs have an integer form")
                if tensors is None:
                    w = m.weight.detach().double()
                    bits = _bits_for(w, (0, 2, 3) if transposed else (1, 2, 3))
                    shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
                    weight = torch.round(w * 2.0 ** bits.view(shape))
                    bias = torch.round(m.bias.detach().double() * 2.0 ** (bits + frac))
                else:
                    weight = tensors[f"{key}.weight"].double()
                    bits = tensors[f"{key}.bits"].long()
                    bias = tensors[f"{key}.bias"].double()
                layer = {"kind": "deconv" if transposed else "conv", "key": key, "weight": weight, "bias": bias,
                         "bits": bits, "scale": _scale(bits + frac - FRAC_BITS), "stride": m.stride,
                         "padding": m.padding}
                if transposed and weight.shape[1] > 16:
                    layer["kernel"] = subpixel_kernel(weight, m.padding[0])
                    layer["kernel_bias"] = bias.repeat_interleave(4)
                elif transposed:
                    layer["matrix"] = weight.flatten(1).T.contiguous()  # (out * k * k, in)
                self.layers.append(layer)
                frac = FRAC_BITS
            elif isinstance(m, nn.ReLU):
                self.layers.append({"kind": "relu"})
            elif isinstance(m, nn.Upsample) and m.mode == "nearest" and m.scale_factor in (2, 2.0, (2.0, 2.0)):
                self.layers.append({"kind": "upsample"})
            elif isinstance(m, nn.Sigmoid) and i == len(mods) - 1:
                pass  # the output stays a logit; `sigmoid_pixels` turns it into pixels exactly
            elif isinstance(m, GDN) and m.inverse:
                if tensors is None:
                    gamma = m.gamma_sqrt.detach().double().square()
                    beta = m.beta_sqrt.detach().double().square() + 1e-6
                    bits = _bits_for(gamma, (1,))
                    gamma = torch.round(gamma * 2.0 ** bits[:, None])
                    beta = torch.round(beta * 2.0 ** (bits + FRAC_BITS))
                else:
                    gamma, beta = tensors[f"{key}.gamma"].double(), tensors[f"{key}.beta"].double()
                    bits = tensors[f"{key}.bits"].long()
                c = gamma.shape[0]
                self.layers.append({"kind": "igdn", "key": key, "gamma": gamma, "beta": beta, "bits": bits,
                                    "kernel": gamma.view(c, c, 1, 1), "scale": _scale(bits)})
            else:
                raise ValueError(f"no integer form for {type(m).__name__}")

    def to_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for layer in self.layers:
            key = layer.get("key")
            if layer["kind"] in ("conv", "deconv"):
                out[f"{key}.weight"] = layer["weight"].to(torch.int16)
                out[f"{key}.bias"] = layer["bias"].to(torch.int64)
            elif layer["kind"] == "igdn":
                out[f"{key}.gamma"] = layer["gamma"].to(torch.int16)
                out[f"{key}.beta"] = layer["beta"].to(torch.int64)
            if key is not None:
                out[f"{key}.bits"] = layer["bits"].to(torch.int8)
        return out

    @torch.no_grad()
    def dequantize_into(self, module: nn.Sequential) -> None:
        """Give the float layers the integer weights' values (the file stores only those)."""
        frac = self.input_frac
        for layer in self.layers:
            if layer["kind"] in ("conv", "deconv"):
                m = module[int(layer["key"])]
                shape = (1, -1, 1, 1) if layer["kind"] == "deconv" else (-1, 1, 1, 1)
                m.weight.copy_(layer["weight"] / 2.0 ** layer["bits"].view(shape))
                m.bias.copy_(layer["bias"] / 2.0 ** (layer["bits"] + frac))
                frac = FRAC_BITS
            elif layer["kind"] == "igdn":
                m = module[int(layer["key"])]
                m.gamma_sqrt.copy_((layer["gamma"] / 2.0 ** layer["bits"][:, None]).sqrt())
                beta = layer["beta"] / 2.0 ** (layer["bits"] + FRAC_BITS) - 1e-6
                m.beta_sqrt.copy_(beta.clamp_min(0).sqrt())

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Integer input with `input_frac` fractional bits -> output with FRAC_BITS, both as
        integer-valued float64 tensors (exact: see the module docstring)."""
        a = x.double().clamp(-ACT_LIMIT, ACT_LIMIT)
        for layer in self.layers:
            kind = layer["kind"]
            if kind == "relu":
                a = a.clamp_min(0)
                continue
            if kind == "upsample":
                a = a.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
                continue
            if kind == "igdn":
                norm = _rescale(F.conv2d(a.abs(), layer["kernel"], layer["beta"]), layer["scale"])
                a = _rescale(a * norm.clamp_max_(NORM_LIMIT), UNIT)
            elif kind == "deconv":
                a = _rescale(_deconv(a, layer), layer["scale"])
            elif layer["weight"].shape[2:] == (3, 3) and layer["stride"] == (1, 1):
                a = _rescale(_conv3x3(a, layer["weight"], layer["bias"]), layer["scale"])
            else:
                acc = F.conv2d(a, layer["weight"], layer["bias"], stride=layer["stride"], padding=layer["padding"])
                a = _rescale(acc, layer["scale"])
            a = a.clamp_(-ACT_LIMIT, ACT_LIMIT)
        return a


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Fixed-point output in [0, 1] (FRAC_BITS, float64) -> uint8 pixel values, exactly."""
    return _rescale(x * 255, UNIT).clamp(0, 255).to(torch.uint8)


def sigmoid_thresholds() -> torch.Tensor:
    """Fixed-point logits where round(255 * sigmoid(v)) steps up: pixel p needs v >= T[p-1].
    Computed once at export and stored, so decoders compare integers only."""
    p = torch.arange(1, 256, dtype=torch.float64)
    return torch.round(torch.logit((p - 0.5) / 255) * 2**FRAC_BITS).long()


def sigmoid_pixels(x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Fixed-point logits (float64) -> uint8 pixels round(255 * sigmoid), by integer comparison."""
    return torch.searchsorted(thresholds, x.long().contiguous(), right=True).to(torch.uint8)


def coding_nets(model: nn.Module, names: dict[str, int],
                tensors: dict[str, torch.Tensor]) -> dict[str, IntegerNet]:
    """Load the integer twins `names` ({attribute: input_frac}) of a model's decoder networks
    from exported tensors, and copy their values into the float layers."""
    nets = {}
    for name, input_frac in names.items():
        prefix = f"coding.{name}."
        own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        nets[name] = IntegerNet(getattr(model, name), own, input_frac)
        nets[name].dequantize_into(getattr(model, name))
    return nets


def export_nets(model: nn.Module, names: dict[str, int]) -> dict[str, torch.Tensor]:
    """The integer twins of a model's decoder networks, as tensors for the weights file."""
    out = {}
    for name, input_frac in names.items():
        net = IntegerNet(getattr(model, name), None, input_frac)
        out |= {f"coding.{name}.{k}": v for k, v in net.to_tensors().items()}
    return out
