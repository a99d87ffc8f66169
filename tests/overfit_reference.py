"""A slow reference of the overfit family's decoder arithmetic in exact rationals (Fraction).

Independent of float64 and BLAS: the test checks that the fast decoder's fixed-point-in-float64
arithmetic (aecodec/overfit/fixed.py) gives exactly these numbers.
"""

from __future__ import annotations

import math
from fractions import Fraction as Q

from aecodec.overfit.arch import CONTEXT, UP_EVEN, UP_ODD, UP_SHIFT


def rnd(x: Q, f: int) -> Q:
    return Q(math.floor(x * 2**f + Q(1, 2)), 2**f)


def act(x: Q, f: int, lim: float, relu: bool) -> Q:
    x = rnd(x, f)
    lo = Q(0) if relu else -Q(lim)
    return min(max(x, lo), Q(lim))


def params(tensors):
    """{name: nested lists of Fractions} from {name: (int array, exponent)}."""
    out = {}
    for n, (q, e) in tensors.items():
        out[n] = [Q(int(v), 2**e) for v in q.reshape(-1)], q.shape
    return out


def _mat(p, name):
    vals, shape = p[name]
    if len(shape) == 1:
        return vals
    return [vals[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])]


def arm_at(p, grid, y, x, arch):
    """(rounded mean, table index) of latent (y, x) of a grid (list of lists of ints)."""
    h, w = len(grid), len(grid[0])
    ctx = [Q(grid[y + dy][x + dx]) if 0 <= y + dy < h and 0 <= x + dx < w else Q(0)
           for dy, dx in CONTEXT]
    f, lim = arch.frac_bits, arch.act_max
    w1, b1, w2, b2 = _mat(p, "arm.w1"), _mat(p, "arm.b1"), _mat(p, "arm.w2"), _mat(p, "arm.b2")
    w3, b3, ws = _mat(p, "arm.w3"), _mat(p, "arm.b3"), _mat(p, "arm.ws")
    h1 = [act(sum(a * c for a, c in zip(w1[o], ctx, strict=True)) + b1[o], f, lim, True)
          for o in range(len(w1))]
    h2 = [act(sum(a * c for a, c in zip(w2[o], h1, strict=True)) + b2[o] + h1[o], f, lim, True)
          for o in range(len(w2))]
    out = [act(sum(a * c for a, c in zip(w3[o], h2, strict=True)) + b3[o]
               + sum(a * c for a, c in zip(ws[o], ctx, strict=True)), f, lim, False)
           for o in range(2)]
    mu, ls = out
    row = min(max(math.floor((ls - Q(arch.log_scale_min)) * arch.log_scale_steps), 0),
              arch.rows - 1)
    m0 = math.floor(mu + Q(1, 2))
    col = min(max(math.floor((mu - m0 + Q(1, 2)) * arch.mu_steps), 0), arch.mu_steps - 1)
    return m0, row * arch.mu_steps + col


def _up_line(v: list[Q], f: int) -> list[Q]:
    n = len(v)
    at = lambda i: v[min(max(i, 0), n - 1)]  # noqa: E731
    out = []
    for i in range(n):
        out.append(sum(Q(t, 2**UP_SHIFT) * at(i - 2 + j) for j, t in enumerate(UP_EVEN)))
        out.append(sum(Q(t, 2**UP_SHIFT) * at(i - 1 + j) for j, t in enumerate(UP_ODD)))
    return [rnd(x, f) for x in out]


def _up2(ch: list[list[Q]], f: int) -> list[list[Q]]:
    rows = [[None] * len(ch[0]) for _ in range(2 * len(ch))]
    for c in range(len(ch[0])):
        col = _up_line([r[c] for r in ch], f)
        for r, val in enumerate(col):
            rows[r][c] = val
    return [_up_line(r, f) for r in rows]


def synthesize(p, grids, arch):
    """H x W x 3 lists of ints."""
    f, lim = arch.frac_bits, arch.act_max
    u = [[[Q(v) for v in row] for row in grids[-1]]]
    for g in reversed(grids[:-1]):
        u = [[r[: len(g[0])] for r in _up2(ch, f)[: len(g)]] for ch in u]
        u = [[[Q(v) for v in row] for row in g]] + u
    h, w = len(u[0]), len(u[0][0])
    w1, b1, w2, b2 = _mat(p, "syn.w1"), _mat(p, "syn.b1"), _mat(p, "syn.w2"), _mat(p, "syn.b2")
    s2 = [[[None] * w for _ in range(h)] for _ in range(3)]
    for y in range(h):
        for x in range(w):
            s1 = [act(sum(w1[o][c] * u[c][y][x] for c in range(len(u))) + b1[o], f, lim, True)
                  for o in range(len(w1))]
            for o in range(3):
                s2[o][y][x] = act(sum(a * b for a, b in zip(w2[o], s1, strict=True)) + b2[o],
                                  f, lim, False)

    def conv(xs, name_w, name_b):
        vals, shape = p[name_w]
        b = _mat(p, name_b)
        k = lambda o, c, dy, dx: vals[((o * 3 + c) * 3 + dy) * 3 + dx]  # noqa: E731
        at = lambda c, y, x: xs[c][min(max(y, 0), h - 1)][min(max(x, 0), w - 1)]  # noqa: E731
        return [[[sum(k(o, c, dy, dx) * at(c, y + dy - 1, x + dx - 1) for c in range(3)
                      for dy in range(3) for dx in range(3)) + b[o] for x in range(w)]
                 for y in range(h)] for o in range(3)]

    c3 = conv(s2, "syn.w3", "syn.b3")
    s3 = [[[min(max(act(c3[o][y][x], f, lim, True) + s2[o][y][x], -Q(lim)), Q(lim))
            for x in range(w)] for y in range(h)] for o in range(3)]
    c4 = conv(s3, "syn.w4", "syn.b4")
    return [[[math.floor(min(max(act(c4[o][y][x] + s3[o][y][x], f, lim, False), Q(0)), Q(1))
                         * 255 + Q(1, 2)) for o in range(3)] for x in range(w)] for y in range(h)]
