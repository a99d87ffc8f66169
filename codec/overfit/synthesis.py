"""The exact synthesis: latent grids -> pixels, in fixed point (fixed.py), by bands of rows."""

from __future__ import annotations

import numpy as np

from .arch import Arch
from .fixed import act, conv3x3, up2

BAND = 128  # output rows per band: the per-pixel layers' memory stays ~BAND * width * 400 B
HALO = 2  # two 3x3 convolutions


def upsampled(grids: list[np.ndarray], arch: Arch) -> np.ndarray:
    """[grids, h, w] float64: each grid brought to the finest size by x2 steps (coarsest first,
    the finer grids joining as they are reached), rounded to the fixed point after each step."""
    u = grids[-1][None].astype(np.float64)
    for g in reversed(grids[:-1]):
        u = up2(u, arch.frac_bits)[:, : g.shape[0], : g.shape[1]]
        u = np.concatenate([g[None].astype(np.float64), u])
    return u


def synthesize(p: dict[str, np.ndarray], grids: list[np.ndarray], arch: Arch) -> np.ndarray:
    """H x W x 3 uint8 pixels."""
    u = upsampled(grids, arch)
    c, h, w = u.shape
    f, lim = arch.frac_bits, arch.act_max
    out = np.empty((h, w, 3), np.uint8)
    for r0 in range(0, h, BAND):
        r1 = min(r0 + BAND, h)
        e0, e1 = max(r0 - HALO, 0), min(r1 + HALO, h)
        x = u[:, e0:e1].reshape(c, -1)
        s1 = act(p["syn.w1"] @ x + p["syn.b1"][:, None], f, lim, True)
        s2 = act(p["syn.w2"] @ s1 + p["syn.b2"][:, None], f, lim, False).reshape(3, e1 - e0, w)
        s3 = act(conv3x3(s2, p["syn.w3"], p["syn.b3"]), f, lim, True) + s2
        np.clip(s3, -lim, lim, out=s3)
        s4 = act(conv3x3(s3, p["syn.w4"], p["syn.b4"]) + s3, f, lim, False)
        x4 = s4[:, r0 - e0: r0 - e0 + (r1 - r0)]
        px = np.floor(np.clip(x4, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        out[r0:r1] = px.transpose(1, 2, 0)
    return out
