"""The context family: the hyperprior's z and hyper-decoder, then y coded in decoding steps
(channel slices x checkerboard phases) whose means and scale indices the exact integer context
networks (`aecodec.ctxnet`) refine from the symbols already decoded.

Sections: z (whole image), then one y section per tile holding every step of that tile in one
ANS stream, first step on top. The context networks see only their own tile (zeros outside it,
as in training at the crop border), so tiles decode independently; the checkerboard phase
follows the whole-image position (row + col even: anchors).
"""

from __future__ import annotations

import numpy as np

from .. import ctxnet
from ..errors import AecodecError, ModelError
from ..model import Model
from ..tiles import TileGrid
from .base import Refine, channel_index, gained, refuse_compact
from .hyperprior import HyperpriorCodec


class ContextCodec(HyperpriorCodec):
    def __init__(self, model: Model):
        super().__init__(model)
        if model.mean_bits != 4:
            raise ModelError(f"{model.path}: the context networks need means on a 1/16 grid")
        self.ctx = model.ctx_net
        slices = int(self.ctx["slices"])
        if slices < 1 or self.channels % slices:
            raise ModelError(f"{model.path}: context.npz slices do not divide the channels")

    def _params16(self, z_sym: np.ndarray, shape: tuple, r0: int, c0: int):
        mu, idx = self.entropy_params(z_sym, shape, r0, c0)
        return np.rint(mu * 16).astype(np.int64), idx.astype(np.int64).reshape(shape)

    def encode(self, y: np.ndarray, gain: np.ndarray, grid: TileGrid, compact: bool = False,
               refine: Refine | None = None) -> tuple[list[bytes], float]:
        if compact:
            raise ModelError("the compact profile codes factorized digit models only")
        if not np.all(np.isfinite(y)):
            raise AecodecError("the model produced non-finite latents for this image")
        z_sym = self.hyper_latents(y, gain, grid)
        zt, zc = self.model.z_tables, channel_index(z_sym.shape)
        sections = [zt.encode(z_sym.ravel(), zc)]
        bits = zt.estimate_bits(z_sym.ravel(), zc)
        for r0, r1, c0, c1 in grid.boxes:
            y_g = gained(y[:, r0:r1, c0:c1], gain)
            mean16, idx = self._params16(z_sym, y_g.shape, r0, c0)
            data, b = ctxnet.encode_region(self.ctx, self.model.y_tables, y_g, mean16, idx,
                                           r0, c0)
            sections.append(data)
            bits += b
        return sections, bits

    def decode(self, sections: list[bytes], grid: TileGrid, inv_gain: np.ndarray,
               keep: bool = False, compact: bool = False
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        refuse_compact(compact, "context")
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
        for (r0, r1, c0, c1), section in zip(grid.boxes, sections[1:], strict=True):
            shape = (m, r1 - r0, c1 - c0)
            mean16, idx = self._params16(z_sym, shape, r0, c0)
            sym, mean16, idx = ctxnet.decode_region(self.ctx, self.model.y_tables, section,
                                                    mean16, idx, r0, c0)
            mu = mean16 / 16.0
            if keep:
                extra["y_sym"][:, r0:r1, c0:c1] = sym
                extra["mean"][:, r0:r1, c0:c1] = mu
                extra["index"][:, r0:r1, c0:c1] = idx
            y_hat[:, r0:r1, c0:c1] = (sym + mu) * inv_gain[:, None, None]
        return y_hat, extra
