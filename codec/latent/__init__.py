"""Latent codecs, one per model family: the seam where entropy models plug in.

A family's codec declares the files it reads (`LatentCodec.files`) and loads its parts: the
factorized family a `ChannelCodec` for y; the hyperprior a `ChannelCodec` for z, the integer
`HyperDecoder` and a y-codec (`GaussianCodec`; the context family plugs in `ContextYCodec`).
"""

from __future__ import annotations

from .base import LatentCodec, LoadedModel
from .channel import ChannelCodec
from .context import ContextCodec, ContextYCodec
from .factorized import FactorizedCodec
from .gaussian import GaussianCodec, YCodec
from .hyperdecoder import HyperDecoder
from .hyperprior import HyperpriorCodec

LATENT_CODECS: dict[str, type[LatentCodec]] = {
    "factorized": FactorizedCodec,
    "hyperprior": HyperpriorCodec,
    "context": ContextCodec,
}


def for_model(model: LoadedModel) -> LatentCodec:
    """The latent codec of a loaded model's family: the one the model loaded (its tables and
    networks are loaded once per model, shared by every Codec of it)."""
    return model.latent


__all__ = ["LATENT_CODECS", "ChannelCodec", "ContextCodec", "ContextYCodec", "FactorizedCodec",
           "GaussianCodec", "HyperDecoder", "HyperpriorCodec", "LatentCodec", "LoadedModel",
           "YCodec", "for_model"]

