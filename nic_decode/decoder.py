"""`decode`: .nic bytes -> pixels, in nic's order of checks (nic/codec.py `decode`).

The container is checked whole first; then the weights the header names are found by hash;
then the fine layer is entropy-decoded, the latent decoded and synthesised (exactly, or by the
fast float g_s), the fine layer added, the padding and folding undone, grey averaged and alpha
attached.
"""

from __future__ import annotations

import functools

import numpy as np

from nic_decode import container, fine, geometry, png, weights
from nic_decode.container import ALPHA_SECTION, FINE_SECTION, LATENT_SECTION
from nic_decode.errors import NicError
from nic_decode.fast import FastSynthesis
from nic_decode.latent import DOWNSAMPLING, LatentDecoder
from nic_decode.synthesis import Synthesis

DECODE_COST = {"hyperprior": 1.0, "checkerboard": 1.2}  # work per pixel, as nic's models declare


@functools.lru_cache(maxsize=8)
def load_model(name: str, whash: bytes) -> tuple[str, LatentDecoder, Synthesis]:
    """The decoder of the weights a header names, built once per process."""
    w = weights.find(name, whash)
    if w.architecture not in DECODE_COST:
        raise NicError(f"model {name!r} has architecture {w.architecture!r}, which nic_decode does not "
                          f"decode yet (only {', '.join(DECODE_COST)}); use nic")
    try:
        return w.architecture, LatentDecoder(w.architecture, w.coding), Synthesis(w.coding)
    except (KeyError, ValueError, IndexError) as e:
        raise NicError(f"weights of model {name!r}: coding tensors missing or malformed "
                          f"({type(e).__name__}: {e})") from None


@functools.lru_cache(maxsize=8)
def fast_synthesis(name: str, whash: bytes) -> FastSynthesis | None:
    """The float g_s of the weights a header names, from the bundle's graph; None where there is
    none (nic's own install: `nic decompress` is its fast decoder) or no onnxruntime, and then
    decoding is exact."""
    graph = weights.find(name, whash).g_s_onnx
    if graph is None:
        return None
    try:
        return FastSynthesis(graph)
    except ImportError:
        return None


def decode(data: bytes, exact: bool = True) -> np.ndarray:
    """A .nic file's bytes -> its pixels (H, W, C) uint8, C its channels (1 grey, 2 grey + alpha,
    3 RGB, 4 RGBA): bit-identical to `nic decompress --exact`; with `exact=False`, g_s runs in
    float32 (onnxruntime) as `nic decompress` does in float32, within a level or so of those.
    Exact by default: a library's pixels should not depend on the machine unless asked."""
    limit = container.max_pixels()
    header, sections = container.unpack(data, limit)
    architecture, latent, synthesis = load_model(header.model, header.weights_hash)
    if not exact:
        synthesis = fast_synthesis(header.model, header.weights_hash) or synthesis
    latents = [s for kind, s in sections if kind == LATENT_SECTION]
    fines = [s for kind, s in sections if kind == FINE_SECTION]
    layout = geometry.from_header(header.width, header.height, header.fold, DOWNSAMPLING)
    geometry.check_work(layout, limit, DECODE_COST[architecture])
    height, width = layout.padded
    layer = fine.parse(fines, height, width) if fines else None
    coded_at = layer.base if layer else header.quality
    y_hat = latent.decode(latents, height, width, coded_at, header.version >= container.TERMINATED_FROM)
    padded = synthesis(y_hat)
    rgb = geometry.restore(fine.apply(layer, padded) if layer else padded, layout)
    if header.grey:
        rgb = np.rint(rgb.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    if header.channels in (2, 4):
        alpha = png.decode_alpha(next(s for kind, s in sections if kind == ALPHA_SECTION), header.height,
                                 header.width)
        rgb = np.concatenate([rgb, alpha[..., None]], axis=2)
    return rgb
