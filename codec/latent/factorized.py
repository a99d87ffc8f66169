"""The factorized prior: every latent coded with its channel's table, one section per tile."""

from __future__ import annotations

import numpy as np

from ..container import FULL, StreamProfile
from ..entropy import TableSet
from ..tiles import TileGrid
from .base import LatentCodec, LoadedModel, Refine, gained
from .channel import ChannelCodec


class FactorizedCodec(LatentCodec):
    """Sections: one y section per tile (one for an untiled image), in either profile: y by a
    ChannelCodec of the `y` tables."""

    family = "factorized"
    profiles = ("full", "compact")
    refines = True

    @classmethod
    def files(cls) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*super().files(), *ChannelCodec.files)))

    def __init__(self, model: LoadedModel):
        super().__init__(model)
        self.y = ChannelCodec(model, "y")

    @property
    def y_tables(self) -> TableSet:
        return self.y.tables

    def encode(self, y: np.ndarray, gain: np.ndarray, grid: TileGrid,
               profile: StreamProfile = FULL, refine: Refine | None = None
               ) -> tuple[list[bytes], float]:
        """`refine` maps the rounded symbols to better ones (codec/refine.py)."""
        self.require(profile, decoding=False)
        sections, bits = [], 0.0
        for r0, r1, c0, c1 in grid.boxes:
            y_g = gained(y[:, r0:r1, c0:c1], gain)
            sym = np.rint(y_g)
            if refine is not None:
                sym = refine(sym.ravel()).astype(np.float64).reshape(sym.shape)
            data, b = self.y.encode(sym, profile)
            sections.append(data)
            bits += b
        return sections, bits

    def decode(self, sections: list[bytes], grid: TileGrid, inv_gain: np.ndarray,
               keep: bool = False, profile: StreamProfile = FULL
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self.require(profile, decoding=True)
        self.check_sections(sections, grid)
        m = self.channels
        self.y.check_room(sections, grid.hy * grid.wy, profile)  # each channel: hy * wy
        y_hat = np.empty((m, grid.hy, grid.wy), np.float32)
        extra = {"y_sym": np.empty((m, grid.hy, grid.wy), np.int64)} if keep else {}
        for (r0, r1, c0, c1), section in zip(grid.boxes, sections, strict=True):
            shape = (m, r1 - r0, c1 - c0)
            sym = self.y.decode(section, shape, profile)
            if keep:
                extra["y_sym"][:, r0:r1, c0:c1] = sym
            y_hat[:, r0:r1, c0:c1] = sym.astype(np.float64) * inv_gain[:, None, None]
        return y_hat, extra
