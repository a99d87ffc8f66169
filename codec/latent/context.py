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
from ..errors import ModelError
from ..model import Model
from .hyperprior import HyperpriorCodec


class ContextCodec(HyperpriorCodec):
    family = "context"

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

    def encode_tile(self, y_g: np.ndarray, z_sym: np.ndarray, r0: int, c0: int
                    ) -> tuple[bytes, float]:
        """The tile's y, step by step (slices x checkerboard phases), each step's means and
        scales refined by the exact context networks from what is already coded."""
        mean16, idx = self._params16(z_sym, y_g.shape, r0, c0)
        return ctxnet.encode_region(self.ctx, self.model.y_tables, y_g, mean16, idx, r0, c0)

    def decode_group(self, parts: list[tuple[bytes, np.ndarray, np.ndarray, int, int]]
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every step network runs once for all the group's tiles (ctxnet.decode_regions)."""
        regions = [(sec, np.rint(mu * 16).astype(np.int64), idx.astype(np.int64), r0, c0)
                   for sec, mu, idx, r0, c0 in parts]
        return [(sym, mean16 / 16.0, idx) for sym, mean16, idx in
                ctxnet.decode_regions(self.ctx, self.model.y_tables, regions)]

    def decode_tile(self, section: bytes, z_sym: np.ndarray, shape: tuple, r0: int, c0: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean16, idx = self._params16(z_sym, shape, r0, c0)
        sym, mean16, idx = ctxnet.decode_region(self.ctx, self.model.y_tables, section,
                                                mean16, idx, r0, c0)
        return sym, mean16 / 16.0, idx
