"""The project's own exceptions: anything raised as one of these is a user-facing message.

They are nic_decode's (the torch-free decoder that nic's container and decoding checks come
from), so a check raises the same type whichever package runs it.
"""

from nic_decode.errors import FormatError, NicError

__all__ = ["FormatError", "NicError"]
