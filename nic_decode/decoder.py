"""`decode`: .nic bytes -> pixels, in nic's order of checks (nic/codec.py `decode`).

The container is checked whole first; then the weights the header names are found by hash;
then the fine layer is entropy-decoded, the latent decoded and synthesised (exactly, or by the
fast float g_s) or, for comcnn, the JPEG decoded and restored by RecCNN, the fine layer added,
the padding and folding undone, grey averaged and alpha attached.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from nic_decode import comcnn, container, fine, geometry, png, weights
from nic_decode.container import ALPHA_SECTION, FINE_SECTION, LATENT_SECTION
from nic_decode.errors import NicError
from nic_decode.fast import FastSynthesis
from nic_decode.latent import DOWNSAMPLING, FactorizedLatent, LatentDecoder
from nic_decode.synthesis import STRIDE, Synthesis, conv_ae_g_s

# Work per pixel, as nic's models declare: the pixel limit bounds padded pixels times this.
DECODE_COST = {"hyperprior": 1.0, "checkerboard": 1.2, "factorized": 1.0, "conv-ae": 1.2, "comcnn": 9.0}


class Model(NamedTuple):
    """What decoding needs of one weights file."""

    architecture: str
    downsampling: int  # padded image sides are multiples of this
    latent: LatentDecoder | FactorizedLatent | None = None  # None: comcnn, whose payload is a JPEG
    synthesis: Synthesis | None = None


def _build(architecture: str, config: dict, coding: dict[str, np.ndarray]) -> Model:
    if architecture in ("hyperprior", "checkerboard"):
        return Model(architecture, DOWNSAMPLING, LatentDecoder(architecture, coding), Synthesis(coding))
    if architecture == "factorized":
        return Model(architecture, STRIDE, FactorizedLatent(coding, STRIDE), Synthesis(coding))
    if architecture == "comcnn":
        return Model(architecture, comcnn.DOWNSAMPLING)
    spec, stride = conv_ae_g_s(config)
    return Model(architecture, stride, FactorizedLatent(coding, stride),
                 Synthesis(coding, spec, stride, coding["thresholds"]))


@functools.lru_cache(maxsize=8)
def load_model(name: str, whash: bytes) -> Model:
    """The decoder of the weights a header names, built once per process."""
    w = weights.find(name, whash)
    if w.architecture not in DECODE_COST:
        raise NicError(f"model {name!r} has architecture {w.architecture!r}, which nic_decode does not "
                       f"decode yet (only {', '.join(DECODE_COST)}); use nic")
    try:
        return _build(w.architecture, w.config, w.coding)
    except (KeyError, ValueError, IndexError, TypeError) as e:
        raise NicError(f"weights of model {name!r}: coding tensors missing or malformed "
                          f"({type(e).__name__}: {e})") from None


@functools.lru_cache(maxsize=8)
def fast_synthesis(name: str, whash: bytes) -> FastSynthesis | None:
    """The float g_s of the weights a header names, from the bundle's graph; None where there is
    none (nic's own install: `nic decompress` is its fast decoder; the factorized and conv-ae
    bundles) or no onnxruntime, and then decoding is exact."""
    w = weights.find(name, whash)
    if w.graph is None:
        return None
    try:
        return FastSynthesis(w.graph, {k: w.coding[k] for k in w.external})
    except ImportError:
        return None


@functools.lru_cache(maxsize=4)
def rec_cnn(name: str, whash: bytes) -> comcnn.RecCNN:
    """comcnn's RecCNN of the weights a header names, from the bundle's graph."""
    w = weights.find(name, whash)
    if w.graph is None:
        raise NicError(f"model {name!r}: its RecCNN runs from the graph that the nic-decode wheel carries, "
                       "and this install has none; use nic")
    return comcnn.RecCNN(w.graph, bool(w.config.get("quality_input", False)))


def _comcnn(streams: list[bytes], height: int, width: int, quality: int, exact: bool, name: str,
            whash: bytes) -> np.ndarray:
    """The padded image of a comcnn file, float only, checked in nic's order."""
    if exact:
        raise NicError(comcnn.EXACT_REFUSED)
    compact = comcnn.compact_image(streams, height, width)
    return rec_cnn(name, whash)(compact, quality)


def decode(data: bytes, exact: bool = True) -> np.ndarray:
    """A .nic file's bytes -> its pixels (H, W, C) uint8, C its channels (1 grey, 2 grey + alpha,
    3 RGB, 4 RGBA): bit-identical to `nic decompress --exact`; with `exact=False`, g_s runs in
    float32 (onnxruntime) as `nic decompress` does in float32, within a level or so of those.
    Exact by default: a library's pixels should not depend on the machine unless asked."""
    limit = container.max_pixels()
    header, sections = container.unpack(data, limit)
    model = load_model(header.model, header.weights_hash)
    latents = [s for kind, s in sections if kind == LATENT_SECTION]
    fines = [s for kind, s in sections if kind == FINE_SECTION]
    layout = geometry.from_header(header.width, header.height, header.fold, model.downsampling)
    geometry.check_work(layout, limit, DECODE_COST[model.architecture])
    height, width = layout.padded
    layer = fine.parse(fines, height, width) if fines else None
    coded_at = layer.base if layer else header.quality
    if model.latent is None:
        padded = _comcnn(latents, height, width, coded_at, exact, header.model, header.weights_hash)
    else:
        y_hat = model.latent.decode(latents, height, width, coded_at, header.version >= container.TERMINATED_FROM)
        fast = None if exact else fast_synthesis(header.model, header.weights_hash)
        padded = (fast or model.synthesis)(y_hat)
    rgb = geometry.restore(fine.apply(layer, padded) if layer else padded, layout)
    if header.grey:
        rgb = np.rint(rgb.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    if header.channels in (2, 4):
        alpha = png.decode_alpha(next(s for kind, s in sections if kind == ALPHA_SECTION), header.height,
                                 header.width)
        rgb = np.concatenate([rgb, alpha[..., None]], axis=2)
    return rgb
