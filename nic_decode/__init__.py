"""A decoder of .nic files that needs no PyTorch: the standard library, numpy and constriction.

`decode(data)` gives the pixels that `nic decompress --exact` gives, bit for bit, for every
latent model (checkerboard, the default; hyperprior; conv-ae; the retired factorized);
`decode(data, exact=False)` runs g_s in float32 with onnxruntime where the wheel carries its
graph (checkerboard, hyperprior), as `nic decompress` does, within its tolerance. comcnn decodes
in float only, as in nic (`exact=False`; its JPEG needs Pillow: `nic-decode[comcnn]`).
`nic-decode IN.nic OUT.png [--exact]` (`python -m nic_decode`) writes PNG, fast unless `--exact`.
"""

from nic_decode.decoder import decode
from nic_decode.errors import FormatError, NicError

__all__ = ["FormatError", "NicError", "decode"]
