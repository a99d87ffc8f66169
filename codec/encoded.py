"""What an encode returns: the stream and what the encoder knows about it."""

from __future__ import annotations

from dataclasses import dataclass

from . import container


@dataclass(frozen=True, repr=False)
class Encoded:
    """A compressed image with what the encoder knows about it."""

    data: bytes
    width: int
    height: int
    quality: float | None  # as recorded in the stream; None for single-rate models
    estimated_bits: float  # payload information content under the model's tables

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)

    @property
    def header_bytes(self) -> int:
        return container.header_size(self.data)

    def __repr__(self) -> str:
        """One short line: the stream's bytes themselves would print tens of kilobytes."""
        q = "" if self.quality is None else f", quality {self.quality:g}"
        return (f"<Encoded {len(self.data):,} bytes, {self.width}x{self.height}{q}, "
                f"{self.bpp:.3f} bpp>")
