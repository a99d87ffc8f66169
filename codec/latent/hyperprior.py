"""The hyperprior: a hyper-latent z coded with per-channel tables, then y coded with the
means and scale-table indices of the exact integer hyper-decoder run on z.

Sections: z (whole image), then one y section per tile. The hyper-decoder runs on z blocks
with a halo covering its receptive field; being integer arithmetic, any blocking gives the
same parameters as one whole-image run (docs/model-format.md).
"""

from __future__ import annotations

import numpy as np

from .. import intnet, tiles
from ..container import FULL, StreamProfile
from ..errors import AecodecError, CorruptStreamError, ModelError
from ..model import Model
from ..tiles import TileGrid
from .base import LatentCodec, channel_index, gained


class HyperpriorCodec(LatentCodec):
    family = "hyperprior"  # full profile only (LatentCodec.profiles)
    side_sections = 1

    def __init__(self, model: Model):
        super().__init__(model)
        self.z_factor = model.z_factor  # y latents per z latent
        self.z_halo = tiles.intnet_halo(model.net)

    def z_shape(self, grid: TileGrid) -> tuple[int, int, int]:
        f = self.z_factor
        return len(self.model.z_tables), -(-grid.hy // f), -(-grid.wy // f)

    def check_sections(self, sections: list[bytes], grid: TileGrid) -> None:
        if grid.tiled and grid.tile % self.z_factor:
            raise CorruptStreamError("invalid tile size for this model")
        super().check_sections(sections, grid)

    def encode(self, y: np.ndarray, gain: np.ndarray, grid: TileGrid,
               profile: StreamProfile = FULL) -> tuple[list[bytes], float]:
        self.require(profile, decoding=False)
        if not np.all(np.isfinite(y)):
            raise AecodecError("the model produced non-finite latents for this image")
        z_sym = self.hyper_latents(y, gain, grid)
        zt, zc = self.model.z_tables, channel_index(z_sym.shape)
        sections = [zt.encode(z_sym.ravel(), zc)]
        bits = zt.estimate_bits(z_sym.ravel(), zc)
        for r0, r1, c0, c1 in grid.boxes:
            data, b = self.encode_tile(gained(y[:, r0:r1, c0:c1], gain), z_sym, r0, c0)
            sections.append(data)
            bits += b
        return sections, bits

    def hyper_latents(self, y: np.ndarray, gain: np.ndarray, grid: TileGrid) -> np.ndarray:
        """z symbols: the hyper-analysis of the gained y, rounded. Large grids run by squares
        aligned to the z grid with a halo covering its receptive field (same z, less memory)."""
        f, halo = self.z_factor, self.model.hyper_analysis_halo
        if halo % f:
            raise ModelError("latent.hyper_analysis_halo must be a multiple of the z stride")
        zs = self.z_shape(grid)
        z_sym = np.empty(zs, np.float64)
        side = tiles.run_side(grid.hy, grid.wy, self.model.stride, f)
        for box in tiles.tiles(grid.hy, grid.wy, side):
            r0, r1, c0, c1 = box
            R0, R1, C0, C1 = tiles.with_halo(box, halo, grid.hy, grid.wy)
            part = (y[:, R0:R1, C0:C1].astype(np.float64) * gain[:, None, None]).astype(np.float32)
            z = self.model.run(self.model.hyper_analysis, "z", {"y": part[None]})[0]
            top, left = (r0 - R0) // f, (c0 - C0) // f
            zh, zw = -(-(r1 - r0) // f), -(-(c1 - c0) // f)
            if z.shape[0] != zs[0] or z.shape[1] < top + zh or z.shape[2] < left + zw:
                raise ModelError(f"hyper-analysis produced {z.shape}, too small for its input")
            z_sym[:, r0 // f : r0 // f + zh, c0 // f : c0 // f + zw] = np.rint(
                z[:, top : top + zh, left : left + zw].astype(np.float64))
        if not np.all(np.isfinite(z_sym)):
            raise AecodecError("the model produced non-finite hyper-latents for this image")
        return z_sym

    def decode(self, sections: list[bytes], grid: TileGrid, inv_gain: np.ndarray,
               keep: bool = False, profile: StreamProfile = FULL
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self.require(profile, decoding=True)
        self.check_sections(sections, grid)
        m, hy, wy = self.channels, grid.hy, grid.wy
        zs = self.z_shape(grid)
        z_sym = self.model.z_tables.decode(sections[0], channel_index(zs)).reshape(zs)
        extra: dict[str, np.ndarray] = {}
        if keep:
            extra = {"z_sym": z_sym, "y_sym": np.empty((m, hy, wy), np.int64),
                     "mean": np.empty((m, hy, wy), np.float64),
                     "index": np.empty((m, hy, wy), np.int64)}
        y_hat = np.empty((m, hy, wy), np.float32)
        boxes, secs = grid.boxes, sections[1:]
        if len(secs) != len(boxes):
            raise CorruptStreamError("stream has the wrong number of sections for its model")
        pending: list[tuple[int, tuple]] = []

        def flush() -> None:
            if not pending:
                return
            for i, (sym, mu, idx) in zip([i for i, _ in pending],
                                         self.decode_group([p for _, p in pending]),
                                         strict=True):
                r0, r1, c0, c1 = boxes[i]
                shape = (m, r1 - r0, c1 - c0)
                if keep:
                    extra["y_sym"][:, r0:r1, c0:c1] = sym
                    extra["mean"][:, r0:r1, c0:c1] = mu
                    extra["index"][:, r0:r1, c0:c1] = idx.reshape(shape)
                y_hat[:, r0:r1, c0:c1] = (sym + mu) * inv_gain[:, None, None]
            pending.clear()

        area = 0
        yt, have, need = self.model.y_tables, 0.0, 0.0
        for group in strips(boxes):
            # one hyper-decoder run per strip of small tiles, and the tiles of several strips
            # decoded together (a context model runs each step network once for all of
            # them): the cost of many tiny tiles is that of their area, not of their number
            r0, r1, g0, g1 = boxes[group[0]][0], boxes[group[0]][1], boxes[group[0]][2], \
                boxes[group[-1]][3]
            mu_s, idx_s = self.entropy_params(z_sym, (m, r1 - r0, g1 - g0), r0, g0)
            idx_s = idx_s.reshape(m, r1 - r0, g1 - g0)
            for i in group:
                a, b = boxes[i][2] - g0, boxes[i][3] - g0
                pending.append((i, (secs[i], mu_s[:, :, a:b], idx_s[:, :, a:b], boxes[i][0],
                                    boxes[i][2])))
                # the sections so far must carry what their symbols need, the coder's slack
                # counted once for the stream (not once per section): checked before decoding
                have += 8 * len(secs[i])
                need += yt.least_bits(np.bincount(idx_s[:, :, a:b].ravel(), minlength=len(yt)))
            if have + 128 < 0.99 * need:
                raise CorruptStreamError(
                    "sections are too short for the image size the header declares")
            area += (r1 - r0) * (g1 - g0)
            if area >= STRIP_AREA:
                flush()
                area = 0
        flush()
        return y_hat, extra

    def decode_group(self, parts: list[tuple[bytes, np.ndarray, np.ndarray, int, int]]
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Tiles' (section, means, table indices [M, th, tw], r0, c0) -> their (symbols,
        means, indices), as `decode_tile` gives them."""
        return [(self.model.y_tables.decode(sec, np.ascontiguousarray(idx).ravel())
                 .reshape(mu.shape), mu, idx) for sec, mu, idx, _, _ in parts]

    def encode_tile(self, y_g: np.ndarray, z_sym: np.ndarray, r0: int, c0: int
                    ) -> tuple[bytes, float]:
        """One tile's y section (gained y [M, th, tw] at latent (r0, c0)) and its bits: the
        mean-removed symbols under the hyper-decoder's scale tables."""
        mu, idx = self.entropy_params(z_sym, y_g.shape, r0, c0)
        sym = np.rint(y_g - mu).ravel()
        yt = self.model.y_tables
        return yt.encode(sym, idx), yt.estimate_bits(sym, idx)

    def decode_tile(self, section: bytes, z_sym: np.ndarray, shape: tuple, r0: int, c0: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverse of `encode_tile`: the tile's symbols, means and table indices."""
        mu, idx = self.entropy_params(z_sym, shape, r0, c0)
        return self.model.y_tables.decode(section, idx).reshape(shape), mu, idx

    def entropy_params(self, z_sym: np.ndarray, y_shape: tuple, r0: int = 0, c0: int = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Means and table indices for the y box of `y_shape` at latent (r0, c0), from the
        integer hyper-decoder run on the z box plus a halo covering its receptive field."""
        m, th, tw = y_shape
        f = self.z_factor
        block = tiles.INTNET_BLOCK * f
        if self.z_halo and (th > block or tw > block):  # big regions by blocks: less memory
            mu = np.empty((m, th, tw), np.float64)
            idx = np.empty((m, th, tw), np.int16)
            for b0, b1, d0, d1 in tiles.tiles(th, tw, block):
                mb, ib = self.entropy_params(z_sym, (m, b1 - b0, d1 - d0), r0 + b0, c0 + d0)
                mu[:, b0:b1, d0:d1] = mb
                idx[:, b0:b1, d0:d1] = ib.reshape(m, b1 - b0, d1 - d0)
            return mu, idx.ravel()
        hz, wz = z_sym.shape[1:]
        box = (r0 // f, -(-(r0 + th) // f), c0 // f, -(-(c0 + tw) // f))
        Z0, Z1, X0, X1 = tiles.with_halo(box, self.z_halo, hz, wz)
        out = intnet.run(self.model.net, z_sym[:, Z0:Z1, X0:X1])
        expect = (2 * m, (Z1 - Z0) * f, (X1 - X0) * f)
        if out.shape != expect:
            raise ModelError(f"hyper-decoder produced {out.shape}, expected {expect}")
        top, left = r0 - Z0 * f, c0 - X0 * f
        out = out[:, top : top + th, left : left + tw]
        if out.shape[1:] != (th, tw):
            raise ModelError("hyper-decoder output does not cover the latent grid")
        mu = out[:m].astype(np.float64) / 2.0**self.model.mean_bits
        idx = out[m:]
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.model.y_tables)):
            raise ModelError("hyper-decoder produced a scale index outside the tables")
        return mu, idx.astype(np.int16).ravel()  # compact: the tables number < 2**15


STRIP_AREA = 4096  # latent positions: tiles are decoded in row strips of at least this area


def strips(boxes: list[tuple[int, int, int, int]]) -> list[list[int]]:
    """Consecutive tiles of one tile row, grouped until a group covers STRIP_AREA latent
    positions (tiles that large stay alone, as they always were)."""
    out: list[list[int]] = []
    area = 0
    for i, (r0, r1, c0, c1) in enumerate(boxes):
        prev = boxes[out[-1][-1]] if out else None
        if prev is None or area >= STRIP_AREA or prev[0] != r0 or prev[1] != r1 \
                or prev[3] != c0:
            out.append([i])
            area = 0
        else:
            out[-1].append(i)
        area += (r1 - r0) * (c1 - c0)
    return out
