"""The hyperprior: a hyper-latent z coded with per-channel tables (a `ChannelCodec`), then y
coded by a y-codec (`gaussian.GaussianCodec`; the context family plugs in
`context.ContextYCodec`) with the means and scale-table indices of the exact integer
hyper-decoder (`hyperdecoder.HyperDecoder`) run on z, as CompressAI's HyperpriorLatentCodec
composes an EntropyBottleneck and a GaussianConditional.

Sections: z (whole image), then one y section per tile. The hyper-decoder runs on z blocks
with a halo covering its receptive field; being integer arithmetic, any blocking gives the
same parameters as one whole-image run (docs/model-format.md).
"""

from __future__ import annotations

import numpy as np

from .. import tiles
from ..container import FULL, StreamProfile
from ..entropy import TableSet
from ..errors import AecodecError, CorruptStreamError, ModelError
from ..tiles import TileGrid
from .base import LatentCodec, LoadedModel, gained
from .channel import ChannelCodec
from .gaussian import GaussianCodec, Part, YCodec
from .hyperdecoder import HyperDecoder


class HyperpriorCodec(LatentCodec):
    """z by a ChannelCodec, the hyper-decoder's parameters, y by the plugged-in y-codec."""

    family = "hyperprior"  # full profile only (LatentCodec.profiles)
    side_sections = 1
    graphs = ("hyper_analysis.onnx",)
    y_codec: type[YCodec] = GaussianCodec  # the y-codec a family plugs in

    @classmethod
    def files(cls) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*super().files(), *cls.graphs, *ChannelCodec.files,
                                    *HyperDecoder.files, *cls.y_codec.files)))

    def __init__(self, model: LoadedModel, y_codec: YCodec | None = None):
        super().__init__(model)
        self.z = ChannelCodec(model, "z")
        self.hyper = HyperDecoder(model)
        self.y = y_codec if y_codec is not None else self.y_codec(model)
        self.z_factor = self.hyper.z_factor  # y latents per z latent
        self.z_halo = self.hyper.halo

    @property
    def y_tables(self) -> TableSet:
        return self.y.tables

    @property
    def z_tables(self) -> TableSet:
        return self.z.tables

    def z_shape(self, grid: TileGrid) -> tuple[int, int, int]:
        f = self.z_factor
        return len(self.z.tables), -(-grid.hy // f), -(-grid.wy // f)

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
        z_data, bits = self.z.encode(z_sym)
        sections = [z_data]
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
        session = self.model.session("hyper_analysis.onnx")
        side = tiles.run_side(grid.hy, grid.wy, self.model.stride, f)
        for t in tiles.halo_tiles(grid.hy, grid.wy, side, halo):
            R0, R1, C0, C1 = t.outer
            part = (y[:, R0:R1, C0:C1].astype(np.float64) * gain[:, None, None]).astype(np.float32)
            z = self.model.run(session, "z", {"y": part[None]})[0]
            src, dst = t.crop(shrink=f)
            if z.shape[0] != zs[0] or z.shape[1] < src[0].stop or z.shape[2] < src[1].stop:
                raise ModelError(f"hyper-analysis produced {z.shape}, too small for its input")
            z_sym[(slice(None), *dst)] = np.rint(z[(slice(None), *src)].astype(np.float64))
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
        z_sym = self.z.decode(sections[0], zs)
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
        yt, have, need = self.y.tables, 0.0, 0.0
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

    def decode_group(self, parts: list[Part]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Tiles' (section, means, table indices [M, th, tw], r0, c0) -> their (symbols,
        means, indices), by the y-codec (a context model runs each step network once for all
        of them)."""
        return self.y.decode_group(parts)

    def encode_tile(self, y_g: np.ndarray, z_sym: np.ndarray, r0: int, c0: int
                    ) -> tuple[bytes, float]:
        """One tile's y section (gained y [M, th, tw] at latent (r0, c0)) and its bits, by the
        y-codec under the hyper-decoder's parameters."""
        mu, idx = self.entropy_params(z_sym, y_g.shape, r0, c0)
        return self.y.encode(y_g, mu, idx, r0, c0)

    def decode_tile(self, section: bytes, z_sym: np.ndarray, shape: tuple, r0: int, c0: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverse of `encode_tile`: the tile's symbols, means and table indices."""
        mu, idx = self.entropy_params(z_sym, shape, r0, c0)
        return self.y.decode_group([(section, mu, idx.reshape(shape), r0, c0)])[0]

    def entropy_params(self, z_sym: np.ndarray, y_shape: tuple, r0: int = 0, c0: int = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Means and table indices for the y box of `y_shape` at latent (r0, c0), from the
        integer hyper-decoder run on the z box plus a halo covering its receptive field."""
        return self.hyper.params(z_sym, y_shape, r0, c0, len(self.y.tables))


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
