"""The fast float paths: g_s for decoding and g_a for encoding, in the CPU's fastest precision.

Only the prior path (h_s, the tables, the symbols) must be exact: one ulp there picks another
table and garbles the rest of a file. The synthesis g_s only turns an already decoded latent
into pixels, so a float g_s is safe: it may differ from the exact integer one by a level here
and there (measured by `benchmarks/tolerance.py`), as JPEG decoders differ from one another.
Likewise the encoder's g_a may vary between machines; the file stays valid because every
symbol's table comes from the exact h_s.

A float network runs its body in bfloat16 or float32, whichever ran it faster on this CPU
(`runtime/precision.py`: native bf16 dot products, AVX512-BF16 or AMX through oneDNN with
channels_last, are not always faster), and its last conv always in float32: a bf16 output has 8
significant bits, which would cost up to half a pixel level (and, in g_a, a quarter of a
quantization step). In g_s every GDN sums its channels in the body's precision but scales (x
times beta + sum) in float32, and the last GDN joins the float32 head: rounding both the norm
and the product to bf16 cost some weights 0.06 dB at high rates. (In g_a the same costs no
measurable rate and makes encoding 30% slower.) When that last layer is a stride-2 transposed
conv making RGB, it runs as a 3x3 conv making the four output phases, then pixel_shuffle (2 to
3x faster than oneDNN's transposed conv with 3 outputs), a band of rows at a time so that its
float32 input stays in cache.

`float_twin` is the plain float32 copy of a loaded model's network (for g_s and h_s, the
integer weights dequantized), for code that needs gradients through them.
"""

from __future__ import annotations

import copy
import ctypes
import math
from collections.abc import Callable
from functools import lru_cache
from weakref import WeakKeyDictionary

import torch
from torch import nn
from torch.nn import functional as F

from nic.runtime import precision as measured
from nic.runtime.integer import FRAC_BITS, subpixel_kernel
from nic.runtime.layers import GDN

HEAD_BAND_BYTES = 4 << 20  # float32 input of the synthesis head per band: fits in cache
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def float_twin(model: nn.Module, name: str) -> nn.Sequential:
    """A float32 copy of a loaded model's network `name` ("g_s", "h_s", "g_a", "h_a"), in eval
    mode, its parameters frozen. Weights files store g_s and h_s only as integer networks;
    loading gives the float layers those integer weights' values, so a twin tracks the exact
    network closely. The twins of g_s and h_s take the real-valued latent (the exact networks
    take fixed point: divide by 2**FRAC_BITS)."""
    return copy.deepcopy(getattr(model, name)).float().eval().requires_grad_(False)


@lru_cache(maxsize=1)
def reuse_freed_memory() -> None:
    """Let glibc keep freed blocks of up to 32 MB for reuse rather than return them to the OS.

    Every pass of a network allocates its activations afresh; by default glibc unmaps large
    blocks when they are freed, so each decode faulted in ~50 MB of new pages again (~20 ms
    of a 768x512 decode). The cost: a process keeps up to 128 MB of freed memory. Linux with
    glibc only; elsewhere nothing changes."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 128 << 20)
    except (OSError, AttributeError):
        pass


class _SubpixelConv(nn.Module):
    """A stride-2 transposed conv as a 3x3 conv making its four output phases + pixel_shuffle."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        w = deconv.weight.detach().double()
        self.kernel = subpixel_kernel(w, deconv.padding[0]).float().contiguous(memory_format=torch.channels_last)
        self.bias = deconv.bias.detach().float().repeat_interleave(4)
        self.padding = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.kernel, self.bias, padding=self.padding), 2)


class _SplitGDN(nn.Module):
    """A GDN whose channel sum runs in `precision` and whose scaling runs in float32, returning `out`."""

    def __init__(self, gdn: GDN, precision: torch.dtype, out: torch.dtype):
        super().__init__()
        beta, gamma = gdn.coefficients(torch.float64)
        self.gamma = gamma.to(precision).view(*gamma.shape, 1, 1).contiguous(memory_format=torch.channels_last)
        self.beta = beta.float().view(1, -1, 1, 1)
        self.inverse, self.out = gdn.inverse, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = F.conv2d(x.abs().to(self.gamma.dtype), self.gamma).float().add_(self.beta)
        return (x.float() * norm if self.inverse else x.float() / norm).to(self.out)


class FastNet:
    """A float copy of a network: body in `precision`, channels_last; its last conv (and what
    follows, e.g. a sigmoid) in float32. With `split_gdn`, every GDN scales in float32 and the
    one just before that conv joins it. Called on float32 NCHW input, returns float32."""

    def __init__(self, net: nn.Sequential, precision: torch.dtype, split_gdn: bool = False):
        layers = list(copy.deepcopy(net).float())
        last = max(i for i, m in enumerate(layers) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
        head = layers[last:]
        if isinstance(head[0], nn.ConvTranspose2d) and head[0].stride == (2, 2) and head[0].out_channels <= 16:
            head[0] = _SubpixelConv(head[0])
        if split_gdn and last and isinstance(layers[last - 1], GDN):
            last -= 1
            head.insert(0, _SplitGDN(layers[last], precision, torch.float32))
        self.precision = precision
        body = [_SplitGDN(m, precision, precision) if split_gdn and isinstance(m, GDN) else m.to(precision)
                for m in layers[:last]]
        self.body = nn.Sequential(*body).eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.head = nn.Sequential(*head).eval().requires_grad_(False).to(memory_format=torch.channels_last)

    def run_body(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.to(self.precision).contiguous(memory_format=torch.channels_last))

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.run_body(x).float())


def _reach(m: nn.Module) -> tuple[int, int]:
    """(how many input pixels an output pixel reaches on each side, upsampling factor) of a
    synthesis layer; 0 reach for pointwise layers (GDN, activations)."""
    if isinstance(m, _SubpixelConv):
        return 1, 2  # a 3x3 conv at the input's resolution
    if isinstance(m, nn.ConvTranspose2d):
        s, k, p = m.stride[0], m.kernel_size[0], m.padding[0]
        # output s*i + a reads inputs i + ceil((a + p - k + 1) / s) ... i + floor((a + p) / s)
        return max(max(-((a + p - k + 1) // s), (a + p) // s) for a in range(s)), s
    if isinstance(m, nn.Conv2d):
        return max(m.padding[0], m.kernel_size[0] - 1 - m.padding[0]), 1
    if isinstance(m, nn.Upsample):
        return 0, int(m.scale_factor if isinstance(m.scale_factor, (int, float)) else m.scale_factor[0])
    return 0, 1


class FastSynthesis:
    """g_s in float: a fixed-point latent tile (FRAC_BITS) and its margins -> the (1, 3, h, w)
    uint8 pixels of the tile's centre (`tiling.synthesise` protocol).

    Each layer only computes what the layers after it still need: the margins shrink with the
    remaining receptive field as the resolution grows, so tiles cost ~5% extra, not ~17%. The
    float32 head runs a band of rows at a time (a row of context above and below) when its conv
    is a 3x3 stride-1 one, as in every g_s here."""

    tile = 1024  # image pixels per tile side, for images larger than one_pass: bf16 activations < 32 MB
    one_pass = 1024 * 1024

    def __init__(self, g_s: nn.Sequential, precision: torch.dtype):
        self.net = FastNet(g_s, precision, split_gdn=True)
        layers = [*self.net.body, *self.net.head]
        reach, factor = zip(*map(_reach, layers), strict=True)
        scale = [1]  # pixels per latent pixel at each layer's input, then at the output
        for f in factor:
            scale.append(scale[-1] * f)
        # margin (in its own pixels) the output of body layer i must keep for the layers after it
        self.keep = [math.ceil(sum(reach[j] / scale[j] for j in range(i + 1, len(layers))) * scale[i + 1])
                     for i in range(len(self.net.body))]
        self.scale = scale
        first = next(m for m in self.net.head if not isinstance(m, _SplitGDN))
        self.banded = (isinstance(first, _SubpixelConv) or
                       (isinstance(first, nn.Conv2d) and first.kernel_size == (3, 3) and first.stride == (1, 1)
                        and first.padding == (1, 1)))
        if self.banded:
            first.padding = (0, 1)  # rows of context come from the band

    def _pixels(self, a: torch.Tensor) -> torch.Tensor:
        """Head input (1, C, h, w) -> (1, h', w', 3) uint8."""
        x = self.net.head(a.float().contiguous(memory_format=torch.channels_last))
        return x.mul_(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)

    def _head(self, a: torch.Tensor) -> torch.Tensor:
        if not self.banded:
            return self._pixels(a)
        _, c, h, w = a.shape
        rows = max(1, HEAD_BAND_BYTES // (4 * c * w))
        bands = []
        for r in range(0, h, rows):
            band = a[:, :, max(r - 1, 0):min(r + rows + 1, h)]
            bands.append(self._pixels(F.pad(band, (0, 0, int(r == 0), int(r + rows >= h)))))
        return torch.cat(bands, dim=1)

    @torch.inference_mode()
    def __call__(self, y_hat: torch.Tensor, margins: tuple[int, int, int, int] = (0, 0, 0, 0)) -> torch.Tensor:
        a = y_hat.float().mul_(2.0**-FRAC_BITS).to(self.net.precision).contiguous(memory_format=torch.channels_last)
        have = list(margins)  # top, left, bottom, right, in pixels of the current resolution
        for i, layer in enumerate(self.net.body):
            a = layer(a)
            grown = [m * self.scale[i + 1] // self.scale[i] for m in have]
            # Keep keep[i] pixels of context on each side, or none on an image border and twice
            # as many on the other side: every tile then has the same shape at every layer.
            keep, have = self.keep[i], list(grown)
            for lo, hi in ((0, 2), (1, 3)):
                have[lo] = min(grown[lo], max(keep, 2 * keep - grown[hi]))
                have[hi] = min(grown[hi], max(keep, 2 * keep - have[lo]))
            cut = [g - k for g, k in zip(grown, have, strict=True)]
            if any(cut):
                a = a[:, :, cut[0]:a.shape[2] - cut[2], cut[1]:a.shape[3] - cut[3]]
        px = self._head(a)
        top, left, bottom, right = (m * self.scale[-1] // self.scale[len(self.net.body)] for m in have)
        return px[:, top:px.shape[1] - bottom, left:px.shape[2] - right].permute(0, 3, 1, 2)


_built: WeakKeyDictionary[nn.Module, dict] = WeakKeyDictionary()


def _signature(net: nn.Module, probe: torch.Tensor) -> str:
    """What a network's speed depends on: its layers' kinds and shapes, and the probe's."""
    return repr([(type(m).__name__, [tuple(t.shape) for t in m.parameters(recurse=False)]) for m in net.modules()]
                + [tuple(probe.shape)])


def _once(model: nn.Module, name: str, precision: torch.dtype | None, build: Callable[[torch.dtype], object],
          probe: Callable[[], torch.Tensor]) -> object:
    """Build a fast network once per model, network and precision; with no precision given,
    in the one that runs it fastest here, timed on `probe` (`runtime/precision.py`)."""
    reuse_freed_memory()
    cache = _built.setdefault(model, {})
    if precision is None:
        if name not in cache:
            x = probe()
            trials: dict[torch.dtype, object] = {}  # the nets timed; only the faster one is kept

            def trial(p: torch.dtype) -> Callable[[], object]:
                trials[p] = cache.get((name, p)) or build(p)
                return lambda: trials[p](x)
            chosen = cache[name] = measured.fastest(name, _signature(getattr(model, name), x), trial)
            if chosen in trials:
                cache[name, chosen] = trials[chosen]
        precision = cache[name]
    if (name, precision) not in cache:
        cache[name, precision] = build(precision)
    return cache[name, precision]


def _latent_probe(model: nn.Module) -> torch.Tensor:
    """A fixed-point latent for 256x192 pixels (an eighth of 768x512: big enough for the
    layers to run as on photos, small enough to time both precisions in about a second)."""
    channels = next(m for m in model.g_s.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))).in_channels
    stride = model.latent_stride
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, channels, 192 // stride, 256 // stride, generator=gen).mul_(2.0**FRAC_BITS).round_()


def fast_synthesis(model: nn.Module, precision: torch.dtype | None = None) -> FastSynthesis:
    """The model's fast g_s, in `precision` (default: the faster here)."""
    return _once(model, "g_s", precision, lambda p: FastSynthesis(model.g_s, p), lambda: _latent_probe(model))


def fast_analysis(model: nn.Module, precision: torch.dtype | None = None) -> FastNet:
    """The model's fast g_a, in `precision` (default: the faster here): image in [0, 1] -> latent y."""
    return _once(model, "g_a", precision, lambda p: FastNet(model.g_a, p),
                 lambda: torch.rand(1, 3, 192, 256, generator=torch.Generator().manual_seed(0)))


def precision(model: nn.Module, name: str) -> torch.dtype:
    """The precision `fast_synthesis` ("g_s") or `fast_analysis` ("g_a") runs this model's
    network in by default."""
    (fast_synthesis if name == "g_s" else fast_analysis)(model)  # chooses it, once per model
    return _built[model][name]
