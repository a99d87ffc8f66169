"""Fixed-point arithmetic carried in float64, so that every machine decodes the same numbers.

Every value here is an integer multiple of a power of two (latents: of 1; weights: of 2**-e;
activations: of 2**-frac_bits) and bounded (`Arch.check`), so every product and every partial
sum is exactly representable in float64 (under 2**53 units). Sums of exact terms are then the
same whatever order a BLAS adds them in, with or without FMA, on any number of threads: a
matrix product is as exact as an integer one, at BLAS speed. Rounding to the fixed point is
`floor(x * 2**f + 0.5) * 2**-f`: scaling by a power of two and floor are exact.
"""

from __future__ import annotations

import numpy as np

from .arch import UP_EVEN, UP_ODD, UP_SHIFT


def rnd(x: np.ndarray, frac_bits: int) -> np.ndarray:
    """Round to a multiple of 2**-frac_bits, ties up (in place when x is a float64 temporary)."""
    s = float(1 << frac_bits)
    x *= s
    x += 0.5
    np.floor(x, out=x)
    x /= s
    return x


def act(x: np.ndarray, frac_bits: int, limit: float, relu: bool) -> np.ndarray:
    """An activation: rounded, then clipped to [0 or -limit, limit]."""
    x = rnd(x, frac_bits)
    return np.clip(x, 0.0 if relu else -limit, limit, out=x)


def up2(u: np.ndarray, frac_bits: int) -> np.ndarray:
    """x2 upsampling of [C, h, w] (edges replicated), rows then columns, each pass rounded."""
    e = np.array(UP_EVEN, np.float64) / 2**UP_SHIFT
    o = np.array(UP_ODD, np.float64) / 2**UP_SHIFT

    def along(a: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        p = np.pad(a, [(2, 2) if i == axis else (0, 0) for i in range(a.ndim)], mode="edge")

        def tap(j: int) -> np.ndarray:
            return np.take(p, np.arange(j, j + n), axis=axis)

        ev = e[0] * tap(0) + e[1] * tap(1) + e[2] * tap(2) + e[3] * tap(3)
        od = o[0] * tap(1) + o[1] * tap(2) + o[2] * tap(3) + o[3] * tap(4)
        out = np.stack([ev, od], axis=axis + 1)
        shape = list(a.shape)
        shape[axis] = 2 * n
        return rnd(out.reshape(shape), frac_bits)

    return along(along(u, 1), 2)


def conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[C, h, w] -> [O, h, w], edges replicated: nine shifted products, summed in a fixed order
    (each term exact, so any order would give the same)."""
    c, h, wd = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    out = np.broadcast_to(b[:, None, None], (w.shape[0], h, wd)).copy()
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("oc,chw->ohw", w[:, :, dy, dx], p[:, dy:dy + h, dx:dx + wd])
    return out
