"""Tensors coded with one table per channel (CompressAI's EntropyBottleneck): the factorized
family's y and the hyperprior's z."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..container import FULL, StreamProfile
from ..entropy import TableSet
from .base import LoadedModel, channel_index


class ChannelCodec:
    """A [C, h, w] tensor of integer symbols, channel c coded with table c of the table set
    `name` of tables.npz."""

    files = ("tables.npz",)  # the model files it reads

    def __init__(self, model: LoadedModel, name: str):
        self.model = model
        self.name = name

    @cached_property
    def tables(self) -> TableSet:
        """Built on first use (a model that never codes does not pay for them)."""
        return TableSet.from_npz(self.model.arrays("tables.npz"), self.name)

    def encode(self, sym: np.ndarray, profile: StreamProfile = FULL) -> tuple[bytes, float]:
        """One section of the symbols [C, h, w], and their information content in bits."""
        flat, idx = sym.ravel(), channel_index(sym.shape)
        return profile.encode(self.tables, flat, idx), self.tables.estimate_bits(flat, idx)

    def decode(self, data: bytes, shape: tuple[int, int, int],
               profile: StreamProfile = FULL) -> np.ndarray:
        """The symbols [C, h, w] of one section."""
        return profile.decode(self.tables, data, channel_index(shape)).reshape(shape)

    def check_room(self, sections: list[bytes], positions: int,
                   profile: StreamProfile = FULL) -> None:
        """Refuse sections too short for `positions` latents of every channel (the stream's
        bound, docs/format.md Tiles), before decoding any."""
        channels = int(self.model.gain.shape[1])
        counts = np.bincount(channel_index((channels, 1, 1)), minlength=len(self.tables))
        profile.check_room(self.tables, sections, counts * positions)
