"""Quantising a trained image's networks: a power-of-two step per group of tensors, chosen by
the whole RD cost (the parameters' own bits, the latents' bits and the distortion)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .arch import Arch
from .params import MAX_EXP, best_order, golomb_bits

EXPONENTS = range(3, min(13, MAX_EXP) + 1)  # steps 2**-3 .. 2**-13 (searched)

# tensors sharing one step search: the ARM's and the synthesis's weights and biases
GROUPS = {
    "arm.w": ("arm.w1", "arm.w2", "arm.w3", "arm.ws"),
    "arm.b": ("arm.b1", "arm.b2", "arm.b3"),
    "syn.w": ("syn.w1", "syn.w2", "syn.w3", "syn.w4"),
    "syn.b": ("syn.b1", "syn.b2", "syn.b3", "syn.b4"),
}


def quantized(values: np.ndarray, e: int, limit: int) -> np.ndarray:
    return np.clip(np.floor(values * 2.0**e + 0.5), -limit, limit).astype(np.int64)


def search(arch: Arch, params: dict[str, np.ndarray],
           cost: Callable[[dict[str, np.ndarray]], float]
           ) -> dict[str, tuple[np.ndarray, int]]:
    """Exponents per group, each picked with the others fixed (groups in order, the not yet
    searched ones still in float), minimising `cost(float params) + parameter bits`."""
    exps = {g: None for g in GROUPS}

    def build(ex: dict[str, int | None]) -> tuple[dict[str, np.ndarray], int]:
        vals, bits = {}, 16 * len(arch.layers())
        for g, names in GROUPS.items():
            for n in names:
                if ex[g] is None:
                    vals[n] = params[n]
                    continue
                q = quantized(params[n], ex[g], arch.weight_max)
                vals[n] = q * 2.0 ** -ex[g]
                bits += golomb_bits(q, best_order(q))
        return vals, bits

    for g in GROUPS:
        best = None
        for e in EXPONENTS:
            vals, bits = build({**exps, g: e})
            c = cost(vals) + bits
            if best is None or c < best[0]:
                best = (c, e)
        exps[g] = best[1]
    out = {}
    for g, names in GROUPS.items():
        for n in names:
            out[n] = (quantized(params[n], exps[g], arch.weight_max), exps[g])
    return out
