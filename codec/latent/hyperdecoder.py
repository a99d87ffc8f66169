"""The hyperprior's integer hyper-decoder (hyper_synthesis.npz): z symbols -> the means and
scale-table indices of y, exact on every machine (codec/intnet.py)."""

from __future__ import annotations

import numpy as np

from .. import intnet, tiles
from ..errors import ModelError
from .base import LoadedModel


class HyperDecoder:
    """Runs on z blocks with a halo covering its receptive field; being integer arithmetic,
    any blocking gives the same parameters as one whole-image run (docs/model-format.md)."""

    files = ("hyper_synthesis.npz",)

    def __init__(self, model: LoadedModel):
        arrays = model.arrays("hyper_synthesis.npz")
        # 8-bit convolutions where exact (intnet.IntNet); `rewrite=False`: float64 only
        self.net: dict[str, np.ndarray] = (intnet.IntNet(arrays, model.threads, model.spinning)
                                           if arrays and model.rewrite else arrays)
        self.z_factor = model.z_factor  # y latents per z latent
        self.halo = tiles.intnet_halo(self.net)  # z latents
        self.mean_bits = model.mean_bits

    def params(self, z_sym: np.ndarray, y_shape: tuple, r0: int, c0: int, levels: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Means and table indices (C order, int16) for the y box of `y_shape` at latent
        (r0, c0); indices outside the `levels` tables are a ModelError."""
        m, th, tw = y_shape
        f = self.z_factor
        block = tiles.INTNET_BLOCK * f
        if self.halo and (th > block or tw > block):  # big regions by blocks: less memory
            mu = np.empty((m, th, tw), np.float64)
            idx = np.empty((m, th, tw), np.int16)
            for b0, b1, d0, d1 in tiles.tiles(th, tw, block):
                mb, ib = self.params(z_sym, (m, b1 - b0, d1 - d0), r0 + b0, c0 + d0, levels)
                mu[:, b0:b1, d0:d1] = mb
                idx[:, b0:b1, d0:d1] = ib.reshape(m, b1 - b0, d1 - d0)
            return mu, idx.ravel()
        hz, wz = z_sym.shape[1:]
        box = (r0 // f, -(-(r0 + th) // f), c0 // f, -(-(c0 + tw) // f))
        Z0, Z1, X0, X1 = tiles.with_halo(box, self.halo, hz, wz)
        out = intnet.run(self.net, z_sym[:, Z0:Z1, X0:X1])
        expect = (2 * m, (Z1 - Z0) * f, (X1 - X0) * f)
        if out.shape != expect:
            raise ModelError(f"hyper-decoder produced {out.shape}, expected {expect}")
        top, left = r0 - Z0 * f, c0 - X0 * f
        out = out[:, top : top + th, left : left + tw]
        if out.shape[1:] != (th, tw):
            raise ModelError("hyper-decoder output does not cover the latent grid")
        mu = out[:m].astype(np.float64) / 2.0**self.mean_bits
        idx = out[m:]
        if idx.size and (idx.min() < 0 or idx.max() >= levels):
            raise ModelError("hyper-decoder produced a scale index outside the tables")
        return mu, idx.astype(np.int16).ravel()  # compact: the tables number < 2**15
