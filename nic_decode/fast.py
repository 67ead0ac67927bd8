"""The fast synthesis: g_s as nic's fast path runs it in float32 (`nic export-onnx`'s g_s.onnx),
run by onnxruntime. Only g_s is float: the latent comes from the exact prior path either way, so
the pixels stay within nic's fast-vs-exact tolerance (docs/EXACTNESS.md), never garbled.

Tiled as nic's synthesis, so memory stays bounded for any image size: the whole image up to
768x768, else tiles of one shape (512 pixels a side plus 2 latent pixels of context, only their
centres kept). Smaller tiles than nic's fast path (1024, bf16, layer by layer trimmed margins):
onnxruntime keeps every layer's float32 activations of a tile in its arena.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nic_decode.integer import FRAC_BITS
from nic_decode.synthesis import STRIDE
from nic_decode.tiles import ONE_PASS, SYNTHESIS_MARGIN, even_spans
from nic_decode.tiles import SYNTHESIS_TILE as TILE


def threads() -> int:
    """$OMP_NUM_THREADS, as torch's decoder honours it, else every core this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxGraph:
    """A bundled float32 graph in onnxruntime, with $OMP_NUM_THREADS threads. `external`: the
    coding tensors it takes as initializers (g_s's int16 weights, which the bundle stores once,
    packed), handed over in memory and kept alive with the session."""

    def __init__(self, graph: Path, external: dict[str, np.ndarray]):
        import onnxruntime as ort  # a dependency of the wheel; nic's install has it with the onnx extra

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads()
        options.inter_op_num_threads = 1
        self.values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in external.values()]
        if external:
            options.add_external_initializers(list(external), self.values)
        self.session = ort.InferenceSession(graph.read_bytes(), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]


class FastSynthesis:
    """g_s from its float32 ONNX graph file (the bundle's g_s.onnx) and the coding tensors it takes."""

    def __init__(self, graph: Path, external: dict[str, np.ndarray]):
        self.graph = OnnxGraph(graph, external)

    def _pixels(self, latent: np.ndarray) -> np.ndarray:
        """Fixed-point ŷ (M, h, w) -> (16 h, 16 w, 3) uint8, as nic: clip(round(x_hat * 255))."""
        x_hat = self.graph((latent * 2.0**-FRAC_BITS).astype(np.float32)[None])
        return np.clip(np.round(x_hat[0] * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)

    def __call__(self, y_hat: np.ndarray) -> np.ndarray:
        """Fixed-point ŷ (M, h, w) -> (16 h, 16 w, 3) uint8 pixels."""
        _, h, w = y_hat.shape
        tile = max(h, w) if h * w * STRIDE**2 <= ONE_PASS else TILE // STRIDE
        out = np.empty((h * STRIDE, w * STRIDE, 3), dtype=np.uint8)
        for y0, y1, iy0, iy1 in even_spans(h, tile, SYNTHESIS_MARGIN):
            for x0, x1, ix0, ix1 in even_spans(w, tile, SYNTHESIS_MARGIN):
                px = self._pixels(y_hat[:, iy0:iy1, ix0:ix1])
                top, left = (y0 - iy0) * STRIDE, (x0 - ix0) * STRIDE
                out[y0 * STRIDE:y1 * STRIDE, x0 * STRIDE:x1 * STRIDE] = \
                    px[top:top + (y1 - y0) * STRIDE, left:left + (x1 - x0) * STRIDE]
        return out
