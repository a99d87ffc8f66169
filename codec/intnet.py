"""The integer hyper-decoder, evaluated exactly in float64 (see docs/model-format.md).

Why float64: every value in the network is an integer below 2**53, so each product and sum is
exact whatever order BLAS adds them in. The entropy parameters (means, scale indices) are then
bit-identical on every machine, which is what lets a stream written on one CPU decode on another.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Z_CLIP = 2**15


def _conv_same(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Stride-1 'same' convolution of a [C,H,W] float64 tensor with w [O,C,k,k], via im2col."""
    c, h, wd = a.shape
    o, _, k, _ = w.shape
    p = k // 2
    padded = np.pad(a, ((0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))  # C,H,W,k,k
    cols = win.transpose(1, 2, 0, 3, 4).reshape(h * wd, c * k * k)
    out = cols @ w.reshape(o, c * k * k).T.astype(np.float64)
    return out.T.reshape(o, h, wd)


def _depth_to_space(a: np.ndarray, r: int) -> np.ndarray:
    """PyTorch PixelShuffle order: channel c*r*r + i*r + j goes to (c, y*r+i, x*r+j)."""
    if r == 1:
        return a
    c, h, w = a.shape
    oc = c // (r * r)
    return a.reshape(oc, r, r, h, w).transpose(0, 3, 1, 4, 2).reshape(oc, h * r, w * r)


def layer_count(net: Mapping[str, np.ndarray]) -> int:
    n = 0
    while f"w{n}" in net:
        n += 1
    return n


def run(net: Mapping[str, np.ndarray], z_sym: np.ndarray) -> np.ndarray:
    """Evaluate the integer network on z symbols [Nz,h,w]; returns the int64 output [2M,H,W]."""
    a = np.clip(z_sym.astype(np.float64), -Z_CLIP, Z_CLIP - 1)
    for i in range(layer_count(net)):
        w = net[f"w{i}"]
        acc = _conv_same(a, w) + net[f"b{i}"].astype(np.float64)[:, None, None]
        shift = int(net[f"shift{i}"])
        m = net[f"m{i}"].astype(np.float64)[:, None, None]
        a = np.floor((acc * m + 2.0 ** (shift - 1)) / 2.0**shift)
        lo = np.broadcast_to(np.asarray(net[f"lo{i}"], np.float64).reshape(-1), (a.shape[0],))
        hi = np.broadcast_to(np.asarray(net[f"hi{i}"], np.float64).reshape(-1), (a.shape[0],))
        a = np.clip(a, lo[:, None, None], hi[:, None, None])
        a = _depth_to_space(a, int(net[f"ps{i}"]))
    return a.astype(np.int64)
