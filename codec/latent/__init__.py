"""Latent codecs, one per model family: the seam where entropy models plug in."""

from __future__ import annotations

from ..model import Model
from .base import LatentCodec
from .context import ContextCodec
from .factorized import FactorizedCodec
from .hyperprior import HyperpriorCodec

LATENT_CODECS: dict[str, type[LatentCodec]] = {
    "factorized": FactorizedCodec,
    "hyperprior": HyperpriorCodec,
    "context": ContextCodec,
}


def for_model(model: Model) -> LatentCodec:
    """The latent codec of a loaded model's family."""
    return LATENT_CODECS[model.family](model)


__all__ = ["LATENT_CODECS", "ContextCodec", "FactorizedCodec", "HyperpriorCodec", "LatentCodec",
           "for_model"]

