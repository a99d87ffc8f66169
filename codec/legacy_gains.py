"""The inverse gains the shipped models' streams were decoded with before the gains became
exact (codec/exact_pow.py): those releases took `**` from numpy, whose last bits differ from
the exact power in about one value in eleven. To keep every stream written by then decoding
to the same pixels, `codec/data/legacy_inv_gains.npz` holds, per shipped table of inverse
gains (keyed by its content), the difference in units in the last place at each recordable
quality and channel; adding it back is integer arithmetic, so it is exact everywhere too
(docs/format.md, *Quality*). Tables not in the file (models exported since) use the exact
power alone. `tests/golden/make_legacy_gains.py` wrote the file once; it never changes.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "legacy_inv_gains.npz"
CODES = 991  # recordable qualities 1.0 .. 100.0 in steps of 0.1


def table_key(inv_gain: np.ndarray) -> str:
    """The key of a [K, M] inverse-gain table: its float64 bytes' SHA-256, 16 hex digits."""
    table = np.ascontiguousarray(np.asarray(inv_gain, np.float64))
    return hashlib.sha256(table.tobytes() + str(table.shape).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _all() -> dict[str, np.ndarray]:
    if not DATA.exists():
        return {}
    with np.load(DATA) as f:
        return {k: f[k] for k in f.files}


def deltas(inv_gain: np.ndarray) -> np.ndarray | None:
    """int8 [991, M]: legacy minus exact inverse gain in ULPs, or None if not a shipped table."""
    d = _all().get(table_key(inv_gain))
    if d is None or d.shape != (CODES, np.asarray(inv_gain).shape[1]):
        return None
    return d


def apply(values: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Positive float64 `values` moved by `delta` units in the last place (integer steps on
    the bit pattern, exact)."""
    bits = np.asarray(values, np.float64).view(np.int64) + delta.astype(np.int64)
    return bits.view(np.float64)
