"""The latent grids' entropy coding: an autoregressive Laplace model decoded by wavefronts.

Each latent is coded as its offset from the rounded mean the autoregressive module (ARM)
predicts from its causal neighbours (`arch.CONTEXT`), with the table of its (log-scale,
mean-fraction) bin: `tables.npz` holds a discrete Laplace per bin, built once by the export
side, so decoding computes no transcendental function. Latent (y, x) of a grid is decoded at
wavefront t = x + 2y: all its neighbours lie on earlier wavefronts, so every grid's latents of
one wavefront are decoded together, one vectorised ARM pass and one table-grouped ANS pop per
wavefront (about w + 2h of them for an h x w image).
"""

from __future__ import annotations

import numpy as np

from .. import entropy
from ..errors import CorruptStreamError
from .arch import CONTEXT, CTX_LEFT, CTX_RIGHT, CTX_UP, Arch, grid_shapes
from .fixed import act


class Layout:
    """Where each latent of each grid lives in one zero-bordered flat buffer, and the order in
    which latents are coded (wavefront by wavefront)."""

    def __init__(self, h: int, w: int, grids: int):
        self.shapes = grid_shapes(h, w, grids)
        bases, size, offs, pos, wave = [], 0, [], [], []
        for gh, gw in self.shapes:
            stride = gw + CTX_LEFT + CTX_RIGHT
            rows, cols = np.divmod(np.arange(gh * gw, dtype=np.int64), gw)
            pos.append(size + (rows + CTX_UP) * stride + cols + CTX_LEFT)
            wave.append(cols + 2 * rows)
            offs.append([dy * stride + dx for dy, dx in CONTEXT])
            bases.append(size)
            size += (gh + CTX_UP) * stride
        self.size = size
        self.pos = np.concatenate(pos)  # buffer index of each latent, grid-major raster order
        self.grid = np.repeat(np.arange(grids), [gh * gw for gh, gw in self.shapes])
        self.offsets = np.array(offs, np.int64)  # [grids, len(CONTEXT)]
        wave = np.concatenate(wave)
        self.order = np.argsort(wave, kind="stable")  # coding order
        self.starts = np.searchsorted(wave[self.order], np.arange(wave.max() + 2))
        self.count = int(self.pos.size)

    def context(self, buf: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """[n, len(CONTEXT)] neighbours of the latents `idx` (grid-major indices), float64."""
        return buf[self.pos[idx][:, None] + self.offsets[self.grid[idx]]]

    def grids(self, buf: np.ndarray) -> list[np.ndarray]:
        """The grids (int32) out of a filled buffer."""
        out, start = [], 0
        for gh, gw in self.shapes:
            out.append(buf[self.pos[start:start + gh * gw]].reshape(gh, gw).astype(np.int32))
            start += gh * gw
        return out


def arm(p: dict[str, np.ndarray], ctx: np.ndarray, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
    """Rounded means and table indices from contexts [n, C] (exact: fixed.py)."""
    f, lim = arch.frac_bits, arch.act_max
    h1 = act(ctx @ p["arm.w1"].T + p["arm.b1"], f, lim, True)
    h2 = act(h1 @ p["arm.w2"].T + p["arm.b2"] + h1, f, lim, True)
    out = act(h2 @ p["arm.w3"].T + p["arm.b3"] + ctx @ p["arm.ws"].T, f, lim, False)
    mu, ls = out[:, 0], out[:, 1]
    row = np.clip(np.floor((ls - arch.log_scale_min) * arch.log_scale_steps), 0, arch.rows - 1)
    m0 = np.floor(mu + 0.5)
    col = np.clip(np.floor((mu - m0 + 0.5) * arch.mu_steps), 0, arch.mu_steps - 1)
    return m0.astype(np.int64), (row * arch.mu_steps + col).astype(np.int64)


def encode(p: dict[str, np.ndarray], grids: list[np.ndarray], arch: Arch,
           tables: entropy.TableSet) -> tuple[bytes, float]:
    """The latent section of integer grids, and its information content in bits."""
    h, w = grids[0].shape
    lay = Layout(h, w, arch.grids)
    buf = np.zeros(lay.size)
    flat = np.concatenate([g.reshape(-1) for g in grids]).astype(np.int64)
    if np.abs(flat).max(initial=0) > arch.latent_max:
        raise ValueError("a latent is out of the family's range")
    buf[lay.pos] = flat
    m0, table = arm(p, lay.context(buf, np.arange(lay.count)), arch)
    sym = flat - m0
    coder = entropy.new_coder()
    o, s = lay.order, lay.starts
    for t in range(len(s) - 2, -1, -1):  # a stack: the last wavefront first
        sel = o[s[t]:s[t + 1]]
        if sel.size:
            tables.encode_into(coder, sym[sel], table[sel])
    return entropy.finish(coder), tables.estimate_bits(sym, table)


def decode(p: dict[str, np.ndarray], data: bytes, h: int, w: int, arch: Arch,
           tables: entropy.TableSet) -> list[np.ndarray]:
    """The integer grids of an h x w image from the latent section."""
    lay = Layout(h, w, arch.grids)
    # every latent costs at least the cheapest table's floor: a short section cannot declare
    # a large image (the decoding work is bounded by the bytes carried)
    floor = float(tables.min_bits.min()) * lay.count
    if 8 * len(data) + 128 < 0.99 * floor:
        raise CorruptStreamError("latent section is too short for the image size declared")
    coder = entropy.open_coder(data)
    buf = np.zeros(lay.size)
    o, s = lay.order, lay.starts
    for t in range(len(s) - 1):
        sel = o[s[t]:s[t + 1]]
        if not sel.size:
            continue
        m0, table = arm(p, lay.context(buf, sel), arch)
        y = m0 + tables.pop(coder, table)
        if np.abs(y).max() > arch.latent_max:
            raise CorruptStreamError("a decoded latent is out of the family's range")
        buf[lay.pos[sel]] = y
    if not coder.is_empty():
        raise CorruptStreamError("latent section has data left over after decoding")
    return lay.grids(buf)
