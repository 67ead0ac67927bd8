"""Meeting a file size: the largest setting of an encoder whose file fits a byte budget.

One bisection, shared by `nic compress --bpp` (over quality) and the classic codecs that the
evaluation matches to a size (over their own knobs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def largest_within(encode: Callable[[int], bytes], settings: Sequence[int], budget: float) -> tuple[int, bytes]:
    """(setting, file) for the last of `settings` whose file is at most `budget` bytes.

    File size must grow along `settings`, so bisection needs about log2(len) + 1 encodings.
    When even the first setting's file is over the budget, that file is returned: callers
    compare its size with the budget to tell.
    """
    lo, hi = 0, len(settings) - 1
    best = encode(settings[lo])
    while lo < hi:
        mid = (lo + hi + 1) // 2
        data = encode(settings[mid])
        if len(data) <= budget:
            lo, best = mid, data
        else:
            hi = mid - 1
    return settings[lo], best


def largest_near(encode: Callable[[int], bytes], settings: Sequence[int], budget: float,
                 guess: int) -> tuple[int, bytes]:
    """`largest_within` for an encoder too slow to bisect, given a good guess of the answer:
    walk from `settings[guess]` up while files fit, or down until one does (2-3 encodings
    when the guess is off by one)."""
    i = guess
    data = encode(settings[i])
    if len(data) <= budget:
        while i + 1 < len(settings) and len(bigger := encode(settings[i + 1])) <= budget:
            i, data = i + 1, bigger
        return settings[i], data
    while i > 0:
        i -= 1
        data = encode(settings[i])
        if len(data) <= budget:
            break
    return settings[i], data
