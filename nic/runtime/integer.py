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

nic_decode.integer runs the same networks in numpy, without torch; the constants and the
transposed-conv tap layout are its, the torch evaluation (and the export) are here.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from nic.runtime.layers import GDN
from nic_decode.integer import ACT_LIMIT, FRAC_BITS, NORM_LIMIT, PHASES, WEIGHT_LIMIT, deconv_runs


def round_shift(x: torch.Tensor, shift: int | torch.Tensor) -> torch.Tensor:
    """x * 2**-shift, rounded half up, on int64 tensors; shift is a scalar or broadcasts."""
    shift = torch.as_tensor(shift, dtype=torch.int64)
    right, left = shift.clamp_min(0), (-shift).clamp_min(0)
    half = torch.where(right > 0, torch.ones_like(right) << (right - 1).clamp_min(0), 0)
    out = x + half  # the one full-size temporary: the shifts work in place
    out >>= right
    if left.any():
        out <<= left
    return out


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


Tap = tuple[int, int, int, int, torch.Tensor]  # (ty, tx, first column, end column, (in, columns) matrix)


def conv_taps(weight: torch.Tensor) -> list[Tap]:
    """Conv2d weight (out, in, 3, 3) -> one (in, out) matrix per tap."""
    cout = weight.shape[0]
    return [(ty, tx, 0, cout, weight[:, :, ty, tx].T.contiguous()) for ty in range(3) for tx in range(3)]


def deconv_taps(weight: torch.Tensor, padding: int) -> list[Tap]:
    """ConvTranspose2d(k, stride 2) weight (in, out, k, k) -> the taps of the 3x3 conv that makes
    its four output phases as column blocks (in PHASES order), each tap over just the run of
    phases it feeds (`deconv_runs`)."""
    cin, cout, k, _ = weight.shape
    return [(ty, tx, lo * cout, hi * cout,
             torch.cat([weight.new_zeros(cin, cout) if e is None else weight[:, :, e[0], e[1]] for e in run],
                       dim=1).contiguous())
            for ty, tx, lo, hi, run in deconv_runs(k, padding)]


def _tap_gemms(a: torch.Tensor, taps: list[Tap], bias: torch.Tensor) -> torch.Tensor:
    """A 3x3, stride-1, zero-padded conv of an (h, w, c) tensor -> (h, w + 2, columns).

    One GEMM per tap, over a shifted slice of a single padded buffer: no im2col copy, and each
    GEMM is large enough for every thread (torch's own conv of one image ran on one thread).
    Rows are w + 2 wide, so each tap's slice is contiguous; the last two columns of every
    output row wrap around and are junk, for the caller to drop."""
    h, w, c = a.shape
    row, n = w + 2, h * (w + 2)
    padded = F.pad(a, (0, 0, 1, 1, 1, 2)).view(-1, c)  # one extra bottom row: the last tap's slice
    full = next(i for i, t in enumerate(taps) if t[2] == 0 and t[3] == bias.shape[0])  # a tap on every column
    ty, tx, _, _, matrix = taps[full]
    acc = torch.addmm(bias, padded[ty * row + tx:ty * row + tx + n], matrix)
    for ty, tx, lo, hi, matrix in taps[:full] + taps[full + 1:]:
        offset = ty * row + tx
        acc[:, lo:hi].addmm_(padded[offset:offset + n], matrix)
    return acc.view(h, row, -1)


def _interleave_phases(acc: torch.Tensor) -> torch.Tensor:
    """(h, w, 4 * c) output phases in PHASES order -> (2h, 2w, c)."""
    h, w, cols = acc.shape
    phases = acc.view(h, w, 4, cols // 4)
    out = acc.new_empty(h, 2, w, 2, cols // 4)
    for i, (ay, ax) in enumerate(PHASES):
        out[:, ay, :, ax] = phases[:, :, i]
    return out.view(2 * h, 2 * w, -1)


def _fold_deconv(a: torch.Tensor, layer: dict) -> torch.Tensor:
    """A stride-2 transposed conv with few output channels, (h, w, in) -> (2h, 2w, out): one GEMM
    to every kernel tap, then fold (col2im) sums the overlaps."""
    h, w, c = a.shape
    k, p = layer["weight"].shape[2], layer["padding"][0]
    cols = layer["matrix"] @ a.reshape(-1, c).T
    full = F.fold(cols[None], (2 * h + k - 2, 2 * w + k - 2), k, stride=2)[0]
    return (full[:, p:p + 2 * h, p:p + 2 * w] + layer["bias"].view(-1, 1, 1)).permute(1, 2, 0)


def _scale(shift: torch.Tensor) -> torch.Tensor:
    """2**-shift (one per channel) as float64, built with ldexp: exact by definition, on every libm."""
    return torch.tensor([math.ldexp(1.0, -int(s)) for s in shift.flatten()], dtype=torch.float64)


def _rescale(acc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """acc * scale (a power of two per channel, the last dimension) rounded half up, in place:
    exact on integer-valued float64."""
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
                    layer["taps"] = deconv_taps(weight, m.padding[0])
                    layer["tap_bias"], layer["tap_scale"] = bias.repeat(4), layer["scale"].repeat(4)
                elif transposed:
                    layer["matrix"] = weight.flatten(1).T.contiguous()  # (out * k * k, in)
                elif m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1):
                    layer["taps"], layer["tap_bias"], layer["tap_scale"] = conv_taps(weight), bias, layer["scale"]
                elif m.kernel_size == (1, 1) and m.stride == (1, 1):
                    layer["pointwise"] = weight[:, :, 0, 0].T.contiguous()  # (in, out): one GEMM
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
                    beta, gamma = m.coefficients(torch.float64)
                    bits = _bits_for(gamma, (1,))
                    gamma = torch.round(gamma * 2.0 ** bits[:, None])
                    beta = torch.round(beta * 2.0 ** (bits + FRAC_BITS))
                else:
                    gamma, beta = tensors[f"{key}.gamma"].double(), tensors[f"{key}.beta"].double()
                    bits = tensors[f"{key}.bits"].long()
                self.layers.append({"kind": "igdn", "key": key, "gamma": gamma, "beta": beta, "bits": bits,
                                    "gamma_t": gamma.T.contiguous(), "scale": _scale(bits)})
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
                beta = layer["beta"] / 2.0 ** (layer["bits"] + FRAC_BITS) - m.BETA_FLOOR
                m.beta_sqrt.copy_(beta.clamp_min(0).sqrt())

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Integer input with `input_frac` fractional bits -> output with FRAC_BITS, both as
        integer-valued float64 tensors (exact: see the module docstring). Inside, activations
        are (h, w, channels), so that every conv is a few large GEMMs."""
        a = x[0].permute(1, 2, 0).double().clamp(-ACT_LIMIT, ACT_LIMIT)
        for layer in self.layers:
            kind = layer["kind"]
            if kind == "relu":
                a = a.clamp_min(0)
                continue
            if kind == "upsample":
                a = a.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)
                continue
            h, w, c = a.shape
            if kind == "igdn":
                norm = torch.addmm(layer["beta"], a.abs().reshape(-1, c), layer["gamma_t"])
                a = _rescale(a * _rescale(norm, layer["scale"]).clamp_max_(NORM_LIMIT).view(h, w, c), UNIT)
            elif "taps" in layer:
                acc = _rescale(_tap_gemms(a, layer["taps"], layer["tap_bias"]), layer["tap_scale"])[:, :w]
                a = _interleave_phases(acc) if kind == "deconv" else acc
            elif kind == "deconv":
                a = _rescale(_fold_deconv(a, layer), layer["scale"])
            elif "pointwise" in layer:
                acc = torch.addmm(layer["bias"], a.reshape(-1, c), layer["pointwise"])
                a = _rescale(acc, layer["scale"]).view(h, w, -1)
            else:
                acc = F.conv2d(a.permute(2, 0, 1)[None], layer["weight"], layer["bias"], stride=layer["stride"],
                               padding=layer["padding"])
                a = _rescale(acc[0].permute(1, 2, 0), layer["scale"])
            a = a.clamp_(-ACT_LIMIT, ACT_LIMIT)
        return a.permute(2, 0, 1)[None]


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
