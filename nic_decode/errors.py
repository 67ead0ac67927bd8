"""The exceptions of nic and nic_decode (nic/errors.py re-exports them, so both raise the same
types): anything raised as one of these is a one-line message for the user."""

from __future__ import annotations


class NicError(Exception):
    """A problem with the input or the environment (missing weights, a bad limit), reported as one
    line, exit code 1."""


class FormatError(NicError):
    """A .nic file that is damaged, truncated, of another version, or otherwise unreadable."""
