"""The networks' parameters in the stream: integers with a power-of-two step per tensor.

Section layout (docs/format.md): for each tensor of `Arch.layers()`, in order, one byte of
exponent e (the step is 2**-e, e <= MAX_EXP) and one byte of exp-Golomb order k (<= MAX_K);
then every tensor's integers in order, zigzag-mapped and exp-Golomb coded (order k), packed
MSB first, the last byte zero-padded. Nothing else: the shapes come from the architecture.
"""

from __future__ import annotations

import numpy as np

from ..errors import CorruptStreamError
from .arch import Arch

MAX_EXP = 16  # the finest step, 2**-16: keeps the decoder's sums exact (fixed.py)
MAX_K = 15


def zigzag(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, np.int64)
    return np.where(q >= 0, 2 * q, -2 * q - 1)


def golomb_bits(q: np.ndarray, k: int) -> int:
    """Length in bits of the exp-Golomb (order k) codes of the integers q."""
    v = zigzag(q).reshape(-1) + (1 << k)
    n = np.floor(np.log2(v.astype(np.float64))).astype(np.int64)
    n += (v >> n) >= 2  # guard float rounding near powers of two
    n -= (v >> n) < 1
    return int((2 * n - k + 1).sum())


def best_order(q: np.ndarray) -> int:
    return min(range(MAX_K + 1), key=lambda k: golomb_bits(q, k))


def pack(arch: Arch, tensors: dict[str, tuple[np.ndarray, int]]) -> bytes:
    """Integers and exponents by tensor name -> the section's bytes."""
    head, bits = bytearray(), []
    for name, shape in arch.layers():
        q, e = tensors[name]
        q = np.asarray(q, np.int64)
        if q.shape != shape or not 0 <= e <= MAX_EXP or np.abs(q).max(initial=0) > arch.weight_max:
            raise ValueError(f"parameter {name}: shape {q.shape}, exponent {e} out of range")
        k = best_order(q)
        head += bytes([e, k])
        for v in zigzag(q).reshape(-1) + (1 << k):
            n = int(v).bit_length() - 1
            bits.append("0" * (n - k) + format(int(v), "b"))
    s = "".join(bits)
    s += "0" * (-len(s) % 8)
    return bytes(head) + int(s, 2).to_bytes(len(s) // 8, "big") if s else bytes(head)


def unpack(arch: Arch, data: bytes) -> dict[str, tuple[np.ndarray, int]]:
    """The inverse of `pack`; CorruptStreamError for anything `pack` cannot have written."""
    layers = arch.layers()
    if len(data) < 2 * len(layers):
        raise CorruptStreamError("parameter section is too short")
    count = sum(int(np.prod(s)) for _, s in layers)
    body = data[2 * len(layers):]
    if len(body) > count * 8 * 2 + 1:  # no code is longer than 2 * 16 + 15 bits
        raise CorruptStreamError("parameter section is longer than its parameters can be")
    bits = np.unpackbits(np.frombuffer(body, np.uint8))
    pos, out = 0, {}
    limit = 2 * arch.weight_max + 1
    for i, (name, shape) in enumerate(layers):
        e, k = data[2 * i], data[2 * i + 1]
        if e > MAX_EXP or k > MAX_K:
            raise CorruptStreamError(f"parameter {name}: exponent or code order out of range")
        vals = np.empty(int(np.prod(shape)), np.int64)
        for j in range(vals.size):
            z = 0
            while pos + z < bits.size and bits[pos + z] == 0:
                z += 1
                if z > 20:
                    raise CorruptStreamError(f"parameter {name}: code too long")
            n = z + k
            if pos + z + n + 1 > bits.size:
                raise CorruptStreamError("parameter section ends inside a code")
            word = bits[pos + z: pos + z + n + 1]
            v = int("".join("1" if b else "0" for b in word), 2) - (1 << k)
            pos += z + n + 1
            if v >= limit:
                raise CorruptStreamError(f"parameter {name}: value out of range")
            vals[j] = v // 2 if v % 2 == 0 else -(v + 1) // 2
        out[name] = (vals.reshape(shape), int(e))
    if (bits.size - pos) >= 8 or bits[pos:].any():
        raise CorruptStreamError("parameter section has data left over")
    return out


def dequantize(tensors: dict[str, tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
    """float64 values q * 2**-e (exact)."""
    return {n: q.astype(np.float64) * 2.0**-e for n, (q, e) in tensors.items()}
