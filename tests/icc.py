"""A minimal ICC v2 RGB display profile (matrix + gamma curves), built from numbers, so the
tests can carry a non-sRGB profile without shipping a third-party file."""

from __future__ import annotations

import struct

import numpy as np


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _xyz(xyz) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0)
            + struct.pack(">HB", 0, 0) + b"\0" * 67)


def _srgb_curve() -> bytes:
    """sRGB's transfer curve (IEC 61966-2-1), sampled: ICC v2 has no parametric curves."""
    v = np.linspace(0, 1, 1024)
    y = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return b"curv\0\0\0\0" + struct.pack(">I", len(y)) + np.rint(y * 65535).astype(">u2").tobytes()


def rgb_profile(primaries: list[tuple[float, float]], gamma: float | None, name: str) -> bytes:
    """An RGB profile with the given xy primaries (R, G, B), white D50 (as ICC's PCS), and one
    gamma for all three curves (None: sRGB's curve); the colorants are chosen so that R=G=B=1
    is white."""
    white = np.array([0.9642, 1.0, 0.8249])
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T  # columns: R, G, B
    scale = np.linalg.solve(xyz, white)
    columns = (xyz * scale).T
    curve = _srgb_curve() if gamma is None else b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags = [(b"desc", _desc(name)), (b"wtpt", _xyz(white)), (b"cprt", b"text\0\0\0\0public domain\0"),
            (b"rXYZ", _xyz(columns[0])), (b"gXYZ", _xyz(columns[1])), (b"bXYZ", _xyz(columns[2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"none" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
              + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


# Wide primaries (about those of ProPhoto RGB) and a linear response: far from sRGB.
WIDE_LINEAR = rgb_profile([(0.7347, 0.2653), (0.1596, 0.8404), (0.0366, 0.0001)], 1.0, "wide linear test")
# Display P3 (what phones take): P3's primaries with sRGB's curve; its reds and greens lie outside sRGB.
DISPLAY_P3 = rgb_profile([(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)], None, "Display P3 test")
