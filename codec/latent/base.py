"""The latent-codec interface: how one model family turns a latent y into stream sections.

`Codec` runs the transforms and the container; a latent codec owns everything between them
for its family: table sets, side networks (e.g. the integer hyper-decoder), gains applied to y,
and the order and meaning of the sections (docs/format.md). It declares the model files it
reads (`files`, checked by codec/model.py against the manifest) and loads its tables and
networks itself, from the model's checked bytes (`LoadedModel.arrays`, `.session`). A new
entropy model is a new subclass registered in `aecodec.latent.LATENT_CODECS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..container import FULL, StreamProfile
from ..errors import AecodecError, CorruptStreamError, ModelError
from ..tiles import TileGrid

if TYPE_CHECKING:
    from ..entropy import TableSet

Refine = Callable[[np.ndarray], np.ndarray]  # rounded symbols -> better symbols, same shape


class LoadedModel(Protocol):
    """What a latent codec reads from its model (`aecodec.model.Model`, which builds the
    codec: the latent codecs never import it): the checked files and manifest fields."""

    path: Path
    gain: np.ndarray  # [K, M]: M is the latent channels
    stride: int
    z_factor: int  # y latents per z latent
    hyper_analysis_halo: int
    mean_bits: int
    threads: int | None
    rewrite: bool
    spinning: bool
    latent: LatentCodec

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """An npz file's arrays, from the hash-checked bytes."""

    def session(self, filename: str) -> Any:
        """An ONNX graph's session, from the hash-checked bytes."""

    def run(self, session: Any, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One output of a session (failures are ModelErrors)."""


class LatentCodec(ABC):
    """Codes one image's latent y [M, hy, wy] into sections and back."""

    family = ""  # the manifest's family
    # the stream profiles (container.PROFILES) this family codes: the one place a family says
    # it has no compact form
    profiles: tuple[str, ...] = ("full",)
    # whether `encode` takes `refine=` (the encoder-side search of fixed-size models)
    refines = False

    # every model's files: the transforms Codec runs and tables.npz (its gains)
    transforms: tuple[str, ...] = ("analysis.onnx", "synthesis.onnx", "tables.npz")

    @classmethod
    def files(cls) -> tuple[str, ...]:
        """The model folder's files this family reads (its manifest must list them): the
        transforms and those of its parts (tables, networks, graphs)."""
        return cls.transforms

    def __init__(self, model: LoadedModel):
        """Loads the family's tables (on first use) and networks from the checked model."""
        self.model = model
        self.channels = int(model.gain.shape[1])

    def pipeline(self, codec: Any) -> Any:
        """What turns a prepared image into sections and back (codec/pipeline.py): for the
        transform families, the model's analysis, this latent codec and its synthesis."""
        from ..pipeline import TransformPipeline

        return TransformPipeline(codec)

    @property
    def y_tables(self) -> TableSet:
        """The table set y is coded with (`Model.y_tables`)."""
        raise AttributeError(f"the {self.family} family has no y tables")

    def section_count(self, grid: TileGrid) -> int:
        """Sections in a stream of this grid: the side sections, then one per tile."""
        return self.side_sections + len(grid.boxes)

    side_sections = 0  # sections before the per-tile y sections (e.g. the hyper-latent z)

    def require(self, profile: StreamProfile, decoding: bool) -> None:
        """Refuse a profile this family does not code: a corrupt stream when decoding, a
        model that cannot write it when encoding."""
        if profile.name in self.profiles:
            return
        if decoding:
            raise CorruptStreamError(f"the {profile.name} profile has no {self.family} streams")
        raise ModelError(f"the {profile.name} profile does not code {self.family} models")

    @abstractmethod
    def encode(self, y: np.ndarray, gain: np.ndarray, grid: TileGrid,
               profile: StreamProfile = FULL) -> tuple[list[bytes], float]:
        """Quantize y float32 [M, hy, wy] (before gain) and code it; returns the sections and
        the information content in bits under the model's tables. `profile` says which coder
        codes the sections (`container.StreamProfile.encode`)."""

    @abstractmethod
    def decode(self, sections: list[bytes], grid: TileGrid, inv_gain: np.ndarray,
               keep: bool = False, profile: StreamProfile = FULL
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """y_hat float32 [M, hy, wy] (inverse gain applied) from the sections. With `keep`,
        whole-image symbol and parameter arrays come back too, for cross-runtime checks."""

    def check_sections(self, sections: list[bytes], grid: TileGrid) -> None:
        if len(sections) != self.section_count(grid):
            raise CorruptStreamError("stream has the wrong number of sections for its model")


def gained(y: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """y times the per-channel gain in float64; refuses non-finite latents."""
    y_g = y.astype(np.float64) * gain[:, None, None]
    if not np.all(np.isfinite(y_g)):
        raise AecodecError("the model produced non-finite latents for this image")
    return y_g


def channel_index(shape: tuple[int, ...]) -> np.ndarray:
    """Table index of each element of a [C, h, w] tensor in C order: its channel."""
    c, rest = shape[0], int(np.prod(shape[1:]))
    return np.repeat(np.arange(c, dtype=np.int16 if c < 2**15 else np.int64), rest)
