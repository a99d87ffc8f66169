"""Writing the overfit family's model folder: its architecture and its Laplace tables.

The folder holds no weights (each stream carries its own): `arch.json`, the shapes and
fixed-point rules, and `tables.npz`, one discrete Laplace per (log-scale bin, mean-fraction
bin), computed here once so that decoders evaluate no exponential (docs/model-format.md).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from aecodec.manifest import dump
from aecodec.model import folder_sha256

ARCH = {
    "grids": 7, "arm_width": 16, "synth_width": 40, "frac_bits": 12, "act_max": 2048.0,
    "latent_max": 1023, "weight_max": 32767, "log_scale_min": -4.5, "log_scale_max": 3.5,
    "log_scale_steps": 4, "mu_steps": 8,
}
# the other models' RD trade-offs (hyperprior-fast's 10 levels, the same loss scale) and two
# more at the same ratio: the other models saturate at 0.18, this family does not, so its
# quality 100 reaches further (docs/overfit.md, "Quality")
LAMBDAS = [0.0004760816326530611, 0.0009257142857142856, 0.0018, 0.0035, 0.0067, 0.013, 0.025,
           0.0483, 0.0932, 0.18, 0.35, 0.68]
MIX = 2.0**-10  # share of a wide Laplace (scale 1) mixed in: no symbol is ever near-certain,
# so every latent costs > 0.0008 bits and a short stream cannot declare a huge image


def laplace_mass(s: np.ndarray, mu: float, b: float) -> np.ndarray:
    """P(round-to-s) of a Laplace(mu, b): CDF(s + .5) - CDF(s - .5)."""
    def cdf(x):
        z = (x - mu) / b
        return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))
    return cdf(s + 0.5) - cdf(s - 0.5)


def tables(arch: dict) -> dict[str, np.ndarray]:
    """One row per (log-scale bin r, mean-fraction bin c), table r * mu_steps + c, each centred
    on its bin's middle: symbols are offsets from the rounded mean."""
    rows = round((arch["log_scale_max"] - arch["log_scale_min"]) * arch["log_scale_steps"])
    cols = arch["mu_steps"]
    halves = [max(3, math.ceil(12 * math.exp(arch["log_scale_min"] + (r + 0.5)
                                             / arch["log_scale_steps"]))) for r in range(rows)]
    width = 2 * max(halves) + 1
    pmf = np.zeros((rows * cols, width))
    lens, offs = np.zeros(rows * cols, np.int64), np.zeros(rows * cols, np.int64)
    for r in range(rows):
        b = math.exp(arch["log_scale_min"] + (r + 0.5) / arch["log_scale_steps"])
        k = halves[r]
        s = np.arange(-k, k + 1, dtype=np.float64)
        for c in range(cols):
            mu = (c + 0.5) / cols - 0.5
            p = (1 - MIX) * laplace_mass(s, mu, b) + MIX * laplace_mass(s, mu, 1.0)
            t = r * cols + c
            pmf[t, : s.size] = p
            lens[t], offs[t] = s.size, -k
    return {"lat_pmf": pmf, "lat_len": lens, "lat_offset": offs}


def write(out: str | Path, name: str = "overfit", version: str = "1.1.0") -> dict:
    """Write the model folder; returns its manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "arch.json").write_text(json.dumps(ARCH, indent=1, sort_keys=True) + "\n")
    np.savez_compressed(out / "tables.npz", **tables(ARCH))
    files = {f: hashlib.sha256((out / f).read_bytes()).hexdigest()
             for f in ("arch.json", "tables.npz")}
    digest = folder_sha256(files)
    manifest = {
        "format": 1, "name": name, "version": version, "family": "overfit",
        "description": "per-image (overfitted) codec: each stream trains and carries its own "
                       "latent grids, autoregressive entropy model and synthesis (~1.2 k MAC "
                       "per pixel); slow to encode, exact and small to decode",
        "image": {"channels": 3, "pad_multiple": 1, "fixed_size": None},
        "latent": {"stride": 1},
        "rate": {"levels": len(LAMBDAS), "lambdas": LAMBDAS, "bpp_range": None},
        "files": files, "sha256": digest, "id": digest[:8],
    }
    (out / "manifest.json").write_text(dump(manifest))
    return manifest
