"""Latent codecs, one per model family: the seam where entropy models plug in."""

from __future__ import annotations

from ..model import Model
from .base import LatentCodec
from .factorized import FactorizedCodec
from .hyperprior import HyperpriorCodec

LATENT_CODECS: dict[str, type[LatentCodec]] = {
    "factorized": FactorizedCodec,
    "hyperprior": HyperpriorCodec,
}


def for_model(model: Model) -> LatentCodec:
    """The latent codec of a loaded model's family."""
    return LATENT_CODECS[model.family](model)


__all__ = ["LATENT_CODECS", "FactorizedCodec", "HyperpriorCodec", "LatentCodec", "for_model"]

