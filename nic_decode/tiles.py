"""How decoders cut a latent into tiles, so memory stays bounded for any image size: nic's
decoders and nic_decode's take the same tiles.

Tiles overlap by more than g_s reaches and only their centres are kept, so the exact pixels do
not depend on the tiling, and the float ones only by float rounding.
"""

from __future__ import annotations

SYNTHESIS_TILE = 512  # image pixels per synthesis tile side
SYNTHESIS_MARGIN = 2  # latent pixels of context: every g_s here reaches under 2 (tiles are tested exact)
ONE_PASS = 768 * 768  # images up to this many pixels are synthesised in one pass
REC_TILE = 512  # comcnn: image pixels per RecCNN tile side
REC_MARGIN = 24  # comcnn: pixels of context for RecCNN tiles: its 20 3x3 layers see +-20


def spans(size: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(start, stop) of each tile's kept centre and (start, stop) of its input with margins."""
    out = []
    for a in range(0, size, tile):
        b = min(a + tile, size)
        out.append((a, b, max(0, a - margin), min(size, b + margin)))
    return out


def even_spans(size: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """As `spans`, but every tile has the same shape (so a float network reuses its compiled
    kernels): centres of equal length, the last one moved back over its neighbour, and
    inputs of equal length, border tiles taking all their context from the inside."""
    if size <= tile:
        return [(0, size, 0, size)]
    n = -(-size // tile)
    centre = -(-size // n)
    width = min(size, centre + 2 * margin)
    out = []
    for i in range(n):
        a = min(i * centre, size - centre)
        start = min(max(0, a - margin), size - width)
        out.append((a, a + centre, start, start + width))
    return out
