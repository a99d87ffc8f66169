"""The integer hyper-decoder, evaluated exactly in float64 (see docs/model-format.md).

Why float64: every value in the network is an integer below 2**53, so each product and sum is
exact whatever order BLAS adds them in. The entropy parameters (means, scale indices) are then
bit-identical on every machine, which is what lets a stream written on one CPU decode on another.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .onnx_wire import Graph, Node, write_model

Z_CLIP = 2**15
INT32_SAFE = 2**31 - 1


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


class IntNet(dict):
    """The network's arrays (a dict, as `run` takes them) plus 8-bit convolutions to run it.

    Why: the float64 im2col convolutions take ~30 ms of a 768x512 decode. Where a layer's
    input fits in 8 bits (with a zero point) and its weights in int8, ONNX Runtime's
    MatMulInteger on the im2col matrix gives the same integer sums (int32, bounded below
    2**31, checked here) in a fraction of the time; everything after the sums stays the
    float64 arithmetic of `run`. A layer or an input that does not fit runs the float64
    convolution."""

    def __init__(self, arrays: Mapping[str, np.ndarray], threads: int | None = None,
                 spinning: bool = False):
        super().__init__(arrays)
        self.threads, self.spinning = threads, spinning
        self._sessions: dict[int, object | None] = {}
        self._row_sums: dict[int, float | None] = {}

    def conv(self, i: int, a: np.ndarray, lo: float, hi: float) -> np.ndarray | None:
        """Layer i's integer sums for input `a` (integers in [lo, hi]) by MatMulInteger, or
        None where 8 bits do not hold them exactly."""
        w = self[f"w{i}"]
        if lo >= 0 and hi <= 255:
            zp = 0
        elif lo >= -128 and hi <= 127:
            zp = 128
        else:
            return None
        if i not in self._row_sums:  # the largest sum of |w| over one output's inputs
            fits = w.min() >= -128 and w.max() <= 127
            self._row_sums[i] = float(np.abs(w).reshape(len(w), -1).sum(1).max()) if fits else None
        if self._row_sums[i] is None or self._row_sums[i] * max(abs(lo), abs(hi)) > INT32_SAFE:
            return None
        key = i * 2 + (zp == 128)
        if key not in self._sessions:
            try:
                self._sessions[key] = _matmul_session(w, zp, self.threads, self.spinning)
            except Exception:  # an ONNX Runtime without MatMulInteger: float64 it is
                self._sessions[key] = None
        if self._sessions[key] is None:
            return None
        c, h, wd = a.shape
        k = w.shape[-1]
        p = k // 2
        q = np.pad((a + zp).astype(np.uint8), ((0, 0), (p, p), (p, p)), constant_values=zp)
        win = np.lib.stride_tricks.sliding_window_view(q, (k, k), axis=(1, 2))  # C,H,W,k,k
        cols = np.ascontiguousarray(win.transpose(1, 2, 0, 3, 4).reshape(h * wd, c * k * k))
        acc = self._sessions[key].run(None, {"x": cols})[0]  # [H*W, out] int32
        return acc.T.reshape(len(w), h, wd).astype(np.float64)


def _matmul_session(w: np.ndarray, zp: int, threads: int | None, spinning: bool):
    """An ONNX Runtime session of x [rows, C*k*k] uint8 (zero point zp) times the layer's
    weights: the convolution's im2col product, exact int32 sums.

    The weights travel as uint8 with zero point 128: ONNX Runtime's uint8 x int8 kernels on
    x86 CPUs without AVX-512 VNNI add pairs of products in saturating 16 bits, its uint8 x
    uint8 kernels do not."""
    import onnxruntime as ort

    ort.disable_telemetry_events()
    wt = np.ascontiguousarray((w.reshape(len(w), -1).T.astype(np.int16) + 128).astype(np.uint8))
    g = Graph([Node("MatMulInteger", ["x", "w", "zp", "w_zp"], ["y"])],
              {"w": wt, "zp": np.uint8(zp), "w_zp": np.uint8(128)}, ["x"], ["y"])
    data = write_model(g, {"x": (np.uint8, 2)}, {"y": (np.int32, 2)})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or 0
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def run(net: Mapping[str, np.ndarray], z_sym: np.ndarray) -> np.ndarray:
    """Evaluate the integer network on z symbols [Nz,h,w]; returns the int64 output [2M,H,W]."""
    a = np.clip(z_sym.astype(np.float64), -Z_CLIP, Z_CLIP - 1)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    for i in range(layer_count(net)):
        w = net[f"w{i}"]
        acc = net.conv(i, a, lo, hi) if isinstance(net, IntNet) and a.size else None
        if acc is None:
            acc = _conv_same(a, w)
        acc = acc + net[f"b{i}"].astype(np.float64)[:, None, None]
        shift = int(net[f"shift{i}"])
        m = net[f"m{i}"].astype(np.float64)[:, None, None]
        a = np.floor((acc * m + 2.0 ** (shift - 1)) / 2.0**shift)
        lo = np.broadcast_to(np.asarray(net[f"lo{i}"], np.float64).reshape(-1), (a.shape[0],))
        hi = np.broadcast_to(np.asarray(net[f"hi{i}"], np.float64).reshape(-1), (a.shape[0],))
        a = np.clip(a, lo[:, None, None], hi[:, None, None])
        a = _depth_to_space(a, int(net[f"ps{i}"]))
        lo, hi = float(lo.min()), float(hi.max())
    return a.astype(np.int64)
