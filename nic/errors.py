"""The project's own exceptions: anything raised as one of these is a user-facing message."""


class NicError(Exception):
    """A problem with the user's input or environment, reported as one line, exit code 1."""


class FormatError(NicError):
    """A .nic file that is damaged, truncated, of another version, or otherwise unreadable."""
