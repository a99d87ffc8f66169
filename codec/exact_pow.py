"""x ** a for the gain interpolation, in integer arithmetic only: the same float64 on every
machine, whatever its maths library (docs/format.md, *Quality*).

`pow` is not exactly rounded in any libm: numpy's, Python's `math.pow` and JavaScript's
`Math.pow` disagree in the last bits of thousands of the gains a quality selects. Here the
logarithm and the exponential are fixed-point series over Python integers (120 fraction bits,
truncating shifts and floor divisions only), and the one float rounding is `float(int)`,
exactly rounded by the language. The browser decoder (web/src/gains.js) runs the same steps
over BigInt, so both give the same bits.
"""

from __future__ import annotations

import math
from functools import lru_cache

P = 120  # fraction bits of the fixed-point values
ONE = 1 << P


def _atanh2(u: int) -> int:
    """2 atanh(u) for a fixed-point 0 <= u <= 1/3: 2 (u + u^3/3 + u^5/5 + ...)."""
    u2 = (u * u) >> P
    total, term, k = u, u, 1
    while term:
        term = (term * u2) >> P
        k += 2
        total += term // k
    return 2 * total


LN2 = _atanh2(ONE // 3)  # ln 2 = 2 atanh(1/3)


@lru_cache(maxsize=8192)
def ln_fixed(x: float) -> int:
    """floor-ish ln(x) * 2^P for a positive finite float x (deterministic, about 2^-115 off)."""
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"ln of {x!r}")
    num, den = x.as_integer_ratio()  # den is a power of two
    e = num.bit_length() - den.bit_length()  # f = x / 2^e in [1, 2)
    shift = P - e - (den.bit_length() - 1)  # f = x / 2^e in [1, 2), exactly f * 2^P
    f = num << shift if shift >= 0 else num >> -shift
    u = ((f - ONE) << P) // (f + ONE)  # (f - 1) / (f + 1) in [0, 1/3)
    return _atanh2(u) + e * LN2


def exp_fixed(y: int) -> float:
    """exp(y / 2^P) rounded once to float64: y = k ln2 + r, exp(r) by its Taylor series."""
    k = y // LN2  # floor
    r = y - k * LN2  # [0, ln 2)
    total, term, n = ONE, ONE, 0
    while term:
        n += 1
        term = ((term * r) >> P) // n
        total += term
    return math.ldexp(float(total), k - P)  # float(int) is exactly rounded; ldexp is exact


def pow_exact(x: float, a: float) -> float:
    """x ** a for x >= 0 and a in [0, 1], the same bits everywhere (1.0 at a = 0)."""
    if a == 0:
        return 1.0
    if x == 0:
        return 0.0
    num, den = float(a).as_integer_ratio()
    return exp_fixed((num * ln_fixed(float(x))) >> (den.bit_length() - 1))
