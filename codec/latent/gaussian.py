"""y-codecs of the hyperprior: y coded given the means and scale-table indices that the
hyper-decoder gives (CompressAI's GaussianConditional). `HyperpriorCodec` composes one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property

import numpy as np

from ..entropy import TableSet
from .base import LoadedModel

# one tile's (section, means [M, th, tw], table indices [M, th, tw], r0, c0)
Part = tuple[bytes, np.ndarray, np.ndarray, int, int]


class YCodec(ABC):
    """Codes one tile of gained y given the hyper-decoder's means and table indices; reads the
    scale tables (`y` of tables.npz) and whatever networks it lists in `files`."""

    files: tuple[str, ...] = ("tables.npz",)

    def __init__(self, model: LoadedModel):
        self.model = model

    @cached_property
    def tables(self) -> TableSet:
        """The scale tables, built on first use."""
        return TableSet.from_npz(self.model.arrays("tables.npz"), "y")

    @abstractmethod
    def encode(self, y_g: np.ndarray, mu: np.ndarray, idx: np.ndarray, r0: int, c0: int
               ) -> tuple[bytes, float]:
        """One tile's section (gained y [M, th, tw] at latent (r0, c0), means [M, th, tw],
        table indices in C order) and its bits."""

    @abstractmethod
    def decode_group(self, parts: list[Part]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Tiles' parts -> their (symbols, means, indices); symbols + means is y gained."""


class GaussianCodec(YCodec):
    """The mean-removed, rounded y under the scale table of each position: one ANS stream."""

    def encode(self, y_g: np.ndarray, mu: np.ndarray, idx: np.ndarray, r0: int, c0: int
               ) -> tuple[bytes, float]:
        sym = np.rint(y_g - mu).ravel()
        return self.tables.encode(sym, idx), self.tables.estimate_bits(sym, idx)

    def decode_group(self, parts: list[Part]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return [(self.tables.decode(sec, np.ascontiguousarray(idx).ravel()).reshape(mu.shape),
                 mu, idx) for sec, mu, idx, _, _ in parts]
