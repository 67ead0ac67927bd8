"""`nic-decode IN.nic OUT.png [--exact]` (or `python -m nic_decode`): decode a .nic file to PNG
without PyTorch.

As `nic decompress`: fast by default (g_s in float32 with onnxruntime, within nic's fast-vs-exact
tolerance), pixels bit-identical to `nic decompress --exact` with `--exact` (numpy and
constriction only). Errors are one line on stderr with exit status 1, and leave no output file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nic_decode import container, png
from nic_decode.decoder import decode
from nic_decode.errors import NicError
from nic_decode.output import check_writable, write_new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nic-decode", description="Decode a .nic file to PNG (no PyTorch).")
    parser.add_argument("input", type=Path, help="the .nic file")
    parser.add_argument("output", type=Path, help="the PNG to write (must not exist)")
    parser.add_argument("--exact", action="store_true",
                        help="pixels bit-identical to `nic decompress --exact` (integer g_s, slower)")
    args = parser.parse_args(argv)
    try:
        check_writable(args.output)
        pixels = decode(container.read(args.input, container.max_pixels()), exact=args.exact)
        write_new(args.output, png.encode(pixels))
    except NicError as e:
        print(f"nic_decode: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
