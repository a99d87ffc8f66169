"""The factorized prior: every latent coded with its channel's table, one section per tile."""

from __future__ import annotations

import numpy as np

from ..container import FULL, StreamProfile
from ..tiles import TileGrid
from .base import LatentCodec, Refine, channel_index, gained


class FactorizedCodec(LatentCodec):
    """Sections: one y section per tile (one for an untiled image), in either profile."""

    family = "factorized"
    profiles = ("full", "compact")
    refines = True

    def encode(self, y: np.ndarray, gain: np.ndarray, grid: TileGrid,
               profile: StreamProfile = FULL, refine: Refine | None = None
               ) -> tuple[list[bytes], float]:
        """`refine` maps the rounded symbols to better ones (codec/refine.py)."""
        self.require(profile, decoding=False)
        yt = self.model.y_tables
        sections, bits = [], 0.0
        for r0, r1, c0, c1 in grid.boxes:
            y_g = gained(y[:, r0:r1, c0:c1], gain)
            sym, idx = np.rint(y_g).ravel(), channel_index(y_g.shape)
            if refine is not None:
                sym = refine(sym).astype(np.float64)
            sections.append(profile.encode(yt, sym, idx))
            bits += yt.estimate_bits(sym, idx)
        return sections, bits

    def decode(self, sections: list[bytes], grid: TileGrid, inv_gain: np.ndarray,
               keep: bool = False, profile: StreamProfile = FULL
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self.require(profile, decoding=True)
        self.check_sections(sections, grid)
        yt, m = self.model.y_tables, self.channels
        # the tables are the channels: each codes hy * wy symbols
        profile.check_room(yt, sections, np.bincount(
            channel_index((m, 1, 1)), minlength=len(yt)) * grid.hy * grid.wy)
        y_hat = np.empty((m, grid.hy, grid.wy), np.float32)
        extra = {"y_sym": np.empty((m, grid.hy, grid.wy), np.int64)} if keep else {}
        for (r0, r1, c0, c1), section in zip(grid.boxes, sections, strict=True):
            shape = (m, r1 - r0, c1 - c0)
            sym = profile.decode(yt, section, channel_index(shape)).reshape(shape)
            if keep:
                extra["y_sym"][:, r0:r1, c0:c1] = sym
            y_hat[:, r0:r1, c0:c1] = sym.astype(np.float64) * inv_gain[:, None, None]
        return y_hat, extra
