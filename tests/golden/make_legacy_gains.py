"""Write codec/data/legacy_inv_gains.npz (run once, with --write): for every shipped
variable-rate model, the inverse gains of the release before exact gains (numpy's `**`) minus
the exact ones (aecodec.rate), in ULPs, at each recordable quality. Run on the machine the
earlier releases' goldens were made on; the file never changes after (codec/legacy_gains.py).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HASHES = Path(__file__).resolve().parent / "legacy-gains.json"
SAMPLE = range(0, 991, 9)  # quality codes whose inverse gains the test checks (and 990)


def digest(rows: list[np.ndarray]) -> str:
    """SHA-256 of float64 inverse-gain rows."""
    return hashlib.sha256(b"".join(np.asarray(r, "<f8").tobytes() for r in rows)).hexdigest()


def legacy_at(levels: np.ndarray, quality: float) -> np.ndarray:
    """The gain interpolation as it was: numpy's power."""
    k = len(levels)
    t = (float(quality) - 1.0) / 99.0 * (k - 1)
    i = min(int(np.floor(t)), k - 2)
    a = t - i
    return levels[i] ** (1 - a) * levels[i + 1] ** a


def build() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    import aecodec
    from aecodec import legacy_gains, rate

    out: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    for info in aecodec.models():
        model = aecodec.Codec(info.name).model
        inv = model.inv_gain
        if len(inv) < 2:
            continue
        codes = [*SAMPLE, legacy_gains.CODES - 1]
        hashes[info.name] = digest([legacy_at(inv, (c + 10) / 10) for c in codes])
        key = legacy_gains.table_key(inv)
        if key in out:
            continue
        d = np.zeros((legacy_gains.CODES, inv.shape[1]), np.int64)
        for c in range(legacy_gains.CODES):
            q = (c + 10) / 10
            old, new = legacy_at(inv, q), rate.at_quality(inv, q)
            d[c] = old.view(np.int64) - new.view(np.int64)
        assert np.abs(d).max() < 100, (info.name, np.abs(d).max())
        out[key] = d.astype(np.int8)
        print(f"{info.name}: {key}, {np.count_nonzero(d)} of {d.size} differ, "
              f"at most {np.abs(d).max()} ULP")
    return out, hashes


if __name__ == "__main__":
    from aecodec import legacy_gains

    tables, hashes = build()
    if "--write" in sys.argv:
        HASHES.write_text(json.dumps(hashes, indent=1) + "\n")
        legacy_gains.DATA.parent.mkdir(exist_ok=True)
        np.savez_compressed(legacy_gains.DATA, **tables)
        print("wrote", legacy_gains.DATA, legacy_gains.DATA.stat().st_size, "bytes")
