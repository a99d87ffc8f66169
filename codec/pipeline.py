"""The seam where a model family turns a prepared image into stream sections and back.

`Codec` validates, converts and wraps (extras, container, alpha) for every family; what lies
between the pixels and the sections is the family's pipeline, which its latent codec names
(`LatentCodec.pipeline`):
- `TransformPipeline` (factorized, hyperprior, context): a fixed analysis, the latent codec,
  a fixed synthesis, all from the model folder;
- `aecodec.overfit.family.OverfitPipeline`: no analysis; latents and networks trained per
  image, the synthesis carried in the stream.
The CLI, Pillow, folder jobs and Ray all call `Codec`, so they serve every family alike.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from . import container, extras
from .encoded import Encoded

Codec = Any  # aecodec.codec.Codec (not imported: it imports the latent codecs, which name us)


class Pipeline(Protocol):
    def encode(self, a: np.ndarray, gray: bool, quality: float, extra: dict[str, bytes],
               effort: int) -> Encoded:
        """A prepared image (H x W x C uint8) at a quality -> the whole stream."""

    def encode_to_bpp(self, a: np.ndarray, gray: bool, bpp: float, extra: dict[str, bytes],
                      effort: int) -> Encoded:
        """The highest quality whose stream fits `bpp` (RateWarning when none does)."""

    def decode(self, stream: container.Stream) -> np.ndarray:
        """A parsed stream of this model -> pixels (H x W x C, or H x W), alpha not attached."""


class TransformPipeline:
    """Analysis -> latent codec -> synthesis, the model folder's fixed transforms."""

    def __init__(self, codec: Codec):
        self.codec = codec

    def encode(self, a, gray, quality, extra, effort):
        c = self.codec
        return c.code(c.analyse(a), a.shape[0], a.shape[1], gray, quality, extra, a, effort)

    def encode_to_bpp(self, a, gray, bpp, extra, effort):
        c = self.codec
        y = c.analyse(a)
        h, w = a.shape[:2]
        if not c.model.variable_rate:
            return c.code(y, h, w, gray, None, extra, a, effort)
        return c.search_bpp(lambda q: c.code(y, h, w, gray, q, extra, a, effort), bpp)

    def decode(self, stream):
        c = self.codec
        header, h, w, y_hat, _ = c._decode_latents(stream)
        return c._synthesize(y_hat, h, w, header.gray)


def attach_alpha(pixels: np.ndarray, stream: container.Stream) -> np.ndarray:
    return extras.attach_alpha(pixels, stream) if stream.header.extras else pixels
