"""The integer context networks of a context model, evaluated exactly in float64.

Same principle as `intnet.py`: every input, weight, bias and accumulator is an integer below
2**53 (the exporter checks the bound), so the sums are exact in any order and the refined means
and scale indices are identical on every machine.

Format (one npz, written by `aecodec.export.context.ContextModel.to_numpy`): `slices`,
`phases`, `ctx_limit`, `d_mean_limit`, and per step "s_p" (all but "0_0") three layers
"s_p.i" with `w` (int8 [O, Cctx, k, k], layer 0 only), `wh` (int8 [O, 2M, 1, 1], layer 0
only; for layers 1 and 2 `w` is [O, H, 1, 1]), `b` (int64 [O]), `m` (int64 [O]), `shift`,
`lo`, `hi`. Layer i computes acc = conv(input) + b, then clip(floor((acc * m + 2**(shift-1))
/ 2**shift), lo, hi). Layer 2's output is (d_mean in 1/16, d_index) for the step's slice.

The decoding order (`order`) and the inputs (`ctx`, `hyp`) are described in
export/context.py; `Stepper` walks it for the encoder and the decoder alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .entropy import TableSet, finish, new_coder, open_coder
from .errors import CorruptStreamError

SCALE_LEVELS = 64
SMALL_ROWS = 96  # fewer positions than this: numpy's own loop, not BLAS (`_matmul`)


def order(net: Mapping[str, np.ndarray]) -> list[tuple[int, int]]:
    """The steps (slice, phase) in decoding order."""
    return [(s, p) for s in range(int(net["slices"])) for p in range(int(net["phases"]))]


def phase_mask(h: int, w: int, phases: int, p: int, r0: int = 0, c0: int = 0) -> np.ndarray:
    """Positions of phase p of an h x w region whose top left is at latent (r0, c0)."""
    if phases == 1:
        return np.ones((h, w), bool)
    ij = (np.arange(h)[:, None] + r0) + (np.arange(w)[None, :] + c0)
    return (ij % 2) == p


def _layer(net: Mapping[str, np.ndarray], key: str, acc: np.ndarray) -> np.ndarray:
    """Bias, integer rescale and clip of accumulators [n, O] (positions x channels)."""
    acc = acc + net[f"{key}.b"].astype(np.float64)
    shift = int(net[f"{key}.shift"])
    m = net[f"{key}.m"].astype(np.float64)
    a = np.floor((acc * m + 2.0 ** (shift - 1)) / 2.0**shift)
    return np.clip(a, np.asarray(net[f"{key}.lo"], np.float64),
                   np.asarray(net[f"{key}.hi"], np.float64))


def _matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """a [n, C] times w [O, C, k, k] (integers) as [n, O] in float64; exact, the sums being
    integers below 2**53. Positions-major operands: the layout OpenBLAS runs fastest here."""
    wt = w.reshape(w.shape[0], -1).T.astype(np.float64)
    if len(a) < SMALL_ROWS:  # BLAS threads on a few rows cost 10-100x the work on busy cores
        return np.einsum("ij,jk->ik", a, wt)
    return a @ wt


def _patches(a: np.ndarray, k: int, mask: np.ndarray) -> np.ndarray:
    """im2col of a [C, h, w] ('same' padding) at the positions of mask [h, w]: [n, C*k*k].
    Only those positions' windows are gathered, so a checkerboard phase costs half a full
    convolution."""
    p = k // 2
    padded = np.pad(a, ((0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))  # C,h,w,k,k
    rows, cols = np.nonzero(mask)
    return win[:, rows, cols].transpose(1, 0, 2, 3).reshape(len(rows), -1)


def run_step(net: Mapping[str, np.ndarray], step: tuple[int, int], ctx: np.ndarray,
             hyp: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step network on ctx [Cctx, h, w] and hyp [2M, h, w] (integers in 1/16, clipped)
    at the positions of mask [h, w]; returns (d_mean in 1/16, d_index), int64 [M/slices, n]
    in row-major order of the positions."""
    return run_step_rows(net, step, *_step_rows(net, step, ctx, hyp, mask))


def _step_rows(net: Mapping[str, np.ndarray], step: tuple[int, int], ctx: np.ndarray,
               hyp: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The step network's input rows at the positions of mask: hyp [n, 2M], ctx patches."""
    key = f"{step[0]}_{step[1]}"
    rows = np.ascontiguousarray(hyp[:, mask].T)
    w = net.get(f"{key}.0.w")
    return rows, (None if w is None else _patches(ctx, w.shape[-1], mask))


def run_step_rows(net: Mapping[str, np.ndarray], step: tuple[int, int], hyp_rows: np.ndarray,
                  patches: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """`run_step` on gathered rows (positions of one region or of several stacked: each row
    is computed on its own, exactly, so stacking changes nothing but the cost)."""
    key = f"{step[0]}_{step[1]}"
    acc = _matmul(hyp_rows, net[f"{key}.0.wh"])
    if patches is not None:
        acc = acc + _matmul(patches, net[f"{key}.0.w"])
    a = _layer(net, f"{key}.0", acc)
    a = _layer(net, f"{key}.1", _matmul(a, net[f"{key}.1.w"]))
    out = _layer(net, f"{key}.2", _matmul(a, net[f"{key}.2.w"])).astype(np.int64).T
    ms = out.shape[0] // 2
    return out[:ms], out[ms:]


Code = Callable[[tuple[int, int], np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def code_region(net: Mapping[str, np.ndarray], mean_h: np.ndarray, idx_h: np.ndarray,
                code: Code, r0: int = 0, c0: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk the decoding order over one region of the latent grid.

    mean_h (int64, 1/16 units) and idx_h (int64) [M, h, w]: the hyper-decoder's parameters.
    `code(step, mask, mean16, idx)` is called once per step with the step's [M/slices, h, w]
    parameters (mean in 1/16) and the bool mask of its positions; it returns the step's
    symbols there (the encoder computes and writes them, the decoder reads them). Returns
    (symbols, mean16, idx), all int64 [M, h, w]; y_hat * gain = symbols + mean16 / 16."""
    return code_regions(net, [(mean_h, idx_h, code, r0, c0)])[0]


def code_regions(net: Mapping[str, np.ndarray],
                 regions: list[tuple[np.ndarray, np.ndarray, Code, int, int]]
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`code_region` for several independent regions at once, step by step: each step's
    network runs once on the positions of all of them, so many small tiles cost what one
    region of their total size costs (a step reads all its weights once per call)."""
    if not regions:
        return []
    slices, phases = int(net["slices"]), int(net["phases"])
    lim = int(net["ctx_limit"])
    state = []
    for mean_h, idx_h, code, r0, c0 in regions:
        m, h, w = mean_h.shape
        hyp = np.clip(np.concatenate([mean_h, 16 * idx_h]).astype(np.float64), -lim, lim)
        state.append((mean_h, idx_h, code, r0, c0, hyp, mean_h.astype(np.int64).copy(),
                      idx_h.astype(np.int64).copy(), np.zeros((m, h, w), np.int64),
                      np.zeros((m, h, w), np.float64)))
    for s, p in order(net):
        masks = [phase_mask(*st[0].shape[1:], phases, p, st[3], st[4]) for st in state]
        if (s, p) != (0, 0):
            rows, patches, counts = [], [], []
            for st, mask in zip(state, masks, strict=True):
                ms = st[0].shape[0] // slices
                cctx = ms * (s + (1 if p > 0 else 0))
                r, pt = _step_rows(net, (s, p), st[9][:cctx], st[5], mask)
                rows.append(r)
                patches.append(pt)
                counts.append(len(r))
            dm_all, di_all = run_step_rows(
                net, (s, p), np.concatenate(rows),
                None if patches[0] is None else np.concatenate(patches))
            ends = np.cumsum(counts)
        for k, (st, mask) in enumerate(zip(state, masks, strict=True)):
            mean_h, idx_h, code, _, _, _, mean16, idx, sym, ctx = st
            ms = mean_h.shape[0] // slices
            cs = slice(s * ms, (s + 1) * ms)
            if (s, p) != (0, 0):
                part = slice(ends[k] - counts[k], ends[k])
                mean16[cs][:, mask] = mean_h[cs][:, mask] + dm_all[:, part]
                idx[cs][:, mask] = np.clip(idx_h[cs][:, mask] + di_all[:, part], 0,
                                           SCALE_LEVELS - 1)
            got = code((s, p), mask, mean16[cs], idx[cs])
            sym[cs] = np.where(mask, got, sym[cs])
            val = np.clip(16 * sym[cs] + mean16[cs] - mean_h[cs], -lim, lim)
            ctx[cs] = np.where(mask, val, ctx[cs])
    return [(st[8], st[6], st[7]) for st in state]


def encode_region(net: Mapping[str, np.ndarray], tables: TableSet, y_g: np.ndarray,
                  mean_h: np.ndarray, idx_h: np.ndarray, r0: int = 0,
                  c0: int = 0) -> tuple[bytes, float]:
    """One section for a region of gain-scaled latents y_g [M, h, w] (float64): every step's
    symbols in one ANS stream, the first step on top. Returns (bytes, estimated bits)."""
    ms = y_g.shape[0] // int(net["slices"])
    steps: list[tuple[np.ndarray, np.ndarray]] = []

    def code(step, mask, mu16, ix):
        sym = np.rint(y_g[step[0] * ms : (step[0] + 1) * ms] - mu16 / 16)
        steps.append((sym[:, mask].ravel(), ix[:, mask].ravel()))
        return sym.astype(np.int64)

    code_region(net, mean_h, idx_h, code, r0, c0)
    coder = new_coder()
    for sym, ix in reversed(steps):
        tables.encode_into(coder, sym, ix)
    return finish(coder), sum(tables.estimate_bits(s, i) for s, i in steps)


def decode_region(net: Mapping[str, np.ndarray], tables: TableSet, data: bytes,
                  mean_h: np.ndarray, idx_h: np.ndarray, r0: int = 0,
                  c0: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of `encode_region`: (symbols, mean16, idx) as `code_region` returns them.

    Data too short for even the first step's symbols (whose tables are known before any
    decoding) is refused before the networks run."""
    return decode_regions(net, tables, [(data, mean_h, idx_h, r0, c0)])[0]


def decode_regions(net: Mapping[str, np.ndarray], tables: TableSet,
                   regions: list[tuple[bytes, np.ndarray, np.ndarray, int, int]]
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`decode_region` of several regions (one section each) with the step networks run
    once per step for all of them (`code_regions`); every section is checked for room
    before any network runs, and must be consumed exactly."""
    walks = []
    for data, mean_h, idx_h, r0, c0 in regions:
        ms = mean_h.shape[0] // int(net["slices"])
        first = idx_h[:ms][:, phase_mask(*mean_h.shape[1:], int(net["phases"]), 0, r0, c0)]
        tables.check_room(data, np.bincount(first.ravel(), minlength=len(tables)))
        walks.append((open_coder(data), mean_h, idx_h, r0, c0))

    def reader(coder):
        def code(step, mask, mu16, ix):
            out = np.zeros(mu16.shape, np.int64)
            out[:, mask] = tables.decode_from(coder, ix[:, mask].ravel()).reshape(len(mu16), -1)
            return out
        return code

    res = code_regions(net, [(mean_h, idx_h, reader(coder), r0, c0)
                             for coder, mean_h, idx_h, r0, c0 in walks])
    for coder, *_ in walks:
        if not coder.is_empty():
            raise CorruptStreamError("section has data left over after decoding")
    return res
