"""The context family: the hyperprior with the context y-codec plugged in. y is coded in
decoding steps (channel slices x checkerboard phases) whose means and scale indices the exact
integer context networks (`aecodec.ctxnet`, context.npz) refine from the symbols already
decoded.

Sections: z (whole image), then one y section per tile holding every step of that tile in one
ANS stream, first step on top. The context networks see only their own tile (zeros outside it,
as in training at the crop border), so tiles decode independently; the checkerboard phase
follows the whole-image position (row + col even: anchors).
"""

from __future__ import annotations

import numpy as np

from .. import ctxnet
from ..errors import ModelError
from .base import LoadedModel
from .gaussian import Part, YCodec
from .hyperprior import HyperpriorCodec


class ContextYCodec(YCodec):
    """A y-codec: each tile's steps coded with the hyper-decoder's parameters refined by the
    context networks (on the 1/16 grid of means)."""

    files = ("tables.npz", "context.npz")

    def __init__(self, model: LoadedModel):
        super().__init__(model)
        if model.mean_bits != 4:
            raise ModelError(f"{model.path}: the context networks need means on a 1/16 grid")
        self.net: dict[str, np.ndarray] = model.arrays("context.npz")
        slices = int(self.net["slices"])
        if slices < 1 or int(model.gain.shape[1]) % slices:
            raise ModelError(f"{model.path}: context.npz slices do not divide the channels")

    def encode(self, y_g: np.ndarray, mu: np.ndarray, idx: np.ndarray, r0: int, c0: int
               ) -> tuple[bytes, float]:
        """The tile's y, step by step (slices x checkerboard phases), each step's means and
        scales refined by the exact context networks from what is already coded."""
        mean16 = np.rint(mu * 16).astype(np.int64)
        index = idx.astype(np.int64).reshape(y_g.shape)
        return ctxnet.encode_region(self.net, self.tables, y_g, mean16, index, r0, c0)

    def decode_group(self, parts: list[Part]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every step network runs once for all the group's tiles (ctxnet.decode_regions)."""
        regions = [(sec, np.rint(mu * 16).astype(np.int64), idx.astype(np.int64), r0, c0)
                   for sec, mu, idx, r0, c0 in parts]
        return [(sym, mean16 / 16.0, idx) for sym, mean16, idx in
                ctxnet.decode_regions(self.net, self.tables, regions)]


class ContextCodec(HyperpriorCodec):
    """The hyperprior with the context y-codec: nothing of the hyperprior overridden."""

    family = "context"
    y_codec = ContextYCodec
