"""A decoder of .nic files that needs no PyTorch: the standard library, numpy and constriction.

`decode(data)` gives the pixels that `nic decompress --exact` gives, bit for bit, for the
hyperprior and checkerboard models (the default); `decode(data, exact=False)` runs g_s in
float32 with onnxruntime, as `nic decompress` does, within its tolerance. `nic-decode IN.nic
OUT.png [--exact]` (`python -m nic_decode`) writes them as PNG, fast unless `--exact`.
"""

from nic_decode.decoder import decode
from nic_decode.errors import FormatError, NicError

__all__ = ["FormatError", "NicError", "decode"]
