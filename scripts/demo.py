"""`make demo`: compress a real photo with the shipped default model, compare with JPEG.

Prints the .nic file's size, bpp and PSNR, and the PSNR that JPEG (Pillow, 4:2:0) reaches
at the same file size or just under it; writes both decoded images next to the files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nic import codec
from nic.errors import NicError
from nic.eval import classic
from nic.eval.metrics import psnr
from nic.io import Picture, encode_image, read_image
from nic.quality import DEFAULT_QUALITY
from nic.writes import atomic_write


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("image", nargs="?", default="assets/kodim23.png")
    p.add_argument("--out", default="demo")
    p.add_argument("-q", "--quality", type=int, default=DEFAULT_QUALITY)
    args = p.parse_args()
    src, out = Path(args.image), Path(args.out)
    out.mkdir(exist_ok=True)
    try:
        pic = read_image(src)
        data = codec.encode(pic, args.quality)
        back = codec.decode(data)
    except NicError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    pixels = pic.width * pic.height
    atomic_write(out / f"{src.stem}.nic", data, force=True)
    atomic_write(out / f"{src.stem}-nic.png", encode_image(back), force=True)
    found = classic.largest_under("jpeg", pic.rgb, len(data))
    print(f"{src} ({pic.width}x{pic.height}), nic quality {args.quality}:")
    print(f"  nic:  {len(data):7d} bytes  {len(data) * 8 / pixels:.3f} bpp  PSNR {psnr(pic.rgb, back.rgb):.2f} dB")
    if found is None:
        print("  JPEG: no JPEG quality fits in that size")
    else:
        q, jpg = found
        decoded = classic.decode(jpg)
        atomic_write(out / f"{src.stem}.jpg", jpg, force=True)
        atomic_write(out / f"{src.stem}-jpeg.png", encode_image(Picture(decoded)), force=True)
        print(f"  JPEG: {len(jpg):7d} bytes  {len(jpg) * 8 / pixels:.3f} bpp  PSNR {psnr(pic.rgb, decoded):.2f} dB"
              f"  (quality {q}, 4:2:0, the largest JPEG not above the .nic size)")
    print(f"decoded images: {out}/{src.stem}-nic.png and {out}/{src.stem}-jpeg.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
