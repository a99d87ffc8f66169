"""Quality and rate: what a quality means to a model, in one place.

A stream records quality in [1, 100] in steps of 0.1. A variable-rate model holds K gain
vectors; a quality picks a point between two of them, interpolated geometrically
(docs/format.md) with `exact_pow`'s integer-arithmetic power, so every machine (and the
browser decoder) gets the same bits, whatever its maths library. `encode_to_bpp` searches the
grid of recordable qualities.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .exact_pow import pow_exact

QUALITY_MIN, QUALITY_MAX = 1.0, 100.0
STEPS = 10  # recordable qualities per unit: steps of 0.1


def quantize_quality(quality: float) -> float:
    """The quality a stream can record: [1, 100] in steps of 0.1."""
    q = float(quality)
    if not QUALITY_MIN <= q <= QUALITY_MAX:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    return round(q * STEPS) / STEPS


def quality_code(quality: float) -> int:
    """0..990: tenths above quality 1 of a recordable quality (ValueError if off the grid)."""
    code = round(float(quality) * STEPS)
    if not QUALITY_MIN <= quality <= QUALITY_MAX or abs(code - quality * STEPS) > 1e-6:
        raise ValueError(f"{quality} is not a recordable quality (1..100 in steps of 0.1)")
    return code - round(QUALITY_MIN * STEPS)


def at_quality(levels: np.ndarray, quality: float | None) -> np.ndarray:
    """A per-level quantity (gains, lambdas: [K, ...], positive) at a quality: geometric
    interpolation between levels floor(t) and floor(t) + 1, t = (q - 1) / 99 (K - 1),
    `lo ** (1 - a) * hi ** a` with the exactly reproducible `pow_exact` (docs/format.md)."""
    levels = np.asarray(levels, np.float64)
    k = len(levels)
    if k == 1 or quality is None:
        return levels[0]
    i, a = position(k, quality)
    lo, hi = levels[i].ravel().tolist(), levels[i + 1].ravel().tolist()
    out = [pow_exact(x, 1 - a) * pow_exact(y, a) for x, y in zip(lo, hi, strict=True)]
    return np.asarray(out, np.float64).reshape(levels.shape[1:])


def position(k: int, quality: float) -> tuple[int, float]:
    """(i, a): a quality's place between levels i and i + 1 of K, in IEEE basic operations."""
    t = (float(quality) - QUALITY_MIN) / (QUALITY_MAX - QUALITY_MIN) * (k - 1)
    i = min(int(np.floor(t)), k - 2)
    return i, t - i


def gains_at(gain: np.ndarray, inv_gain: np.ndarray, quality: float | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(gain, inv_gain) [M] for a quality from the [K, M] tables, as the format doc says."""
    return at_quality(gain, quality), at_quality(inv_gain, quality)


def search_highest(fits: Callable[[float], bool]) -> float:
    """The highest recordable quality for which `fits` holds, by bisection on the 0.1 grid,
    assuming `fits` is monotone (true at low qualities); QUALITY_MIN if none fits."""
    lo, hi = round(QUALITY_MIN * STEPS), round(QUALITY_MAX * STEPS)
    if not fits(lo / STEPS):
        return QUALITY_MIN
    if fits(hi / STEPS):
        return QUALITY_MAX
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid / STEPS):
            lo = mid
        else:
            hi = mid
    return lo / STEPS
