"""Tile and halo geometry on the latent grid: the one home of how images are cut up.

Large images are coded by t x t tiles of latents, row by row (docs/format.md, Tiles). Each
network runs on a tile plus a halo covering its receptive field and keeps only the tile's own
outputs, so tiled and untiled runs give the same numbers in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from . import intnet

DEFAULT_TILE = 1024  # tile side in pixels for images coded by tiles
DEFAULT_TILE_ABOVE = 2 * 1024 * 1024  # images with more pixels are coded by tiles
# Untiled (version 1) streams hold one entropy-coded section for the whole image, which cannot
# be decoded by parts: over this many pixels the encoder always tiles and decoders refuse
# them, so decoding memory stays bounded (docs/format.md, Tiles).
UNTILED_MAX_PIXELS = 16 * 1024 * 1024
# The networks run on images over RUN_TILE_ABOVE pixels by squares of RUN_TILE pixels (plus
# their halo), whatever the stream's tiles, so ONNX Runtime's activations stay bounded (about
# 1.3 GB per megapixel run at once); a Kodak-sized image (768x512) still runs in one pass.
RUN_TILE = 512
RUN_TILE_ABOVE = 1 << 19
INTNET_BLOCK = 32  # z latents a side per hyper-decoder run (exact whatever the blocks)

Box = tuple[int, int, int, int]  # (r0, r1, c0, c1), end-exclusive


def tiles(h: int, w: int, t: int) -> Iterator[Box]:
    """(r0, r1, c0, c1) of the t x t tiles of an h x w grid, row by row (docs/format.md)."""
    for r0 in range(0, h, t):
        for c0 in range(0, w, t):
            yield r0, min(r0 + t, h), c0, min(c0 + t, w)


def with_halo(box: Box, halo: int, h: int, w: int) -> Box:
    """The box grown by `halo` on every side, clipped to the h x w grid."""
    r0, r1, c0, c1 = box
    return max(r0 - halo, 0), min(r1 + halo, h), max(c0 - halo, 0), min(c1 + halo, w)


@dataclass(frozen=True)
class HaloTile:
    """One square of a network run by tiles: its own latents (`box`) and the box the network
    runs on (`outer`: the square plus its halo, clipped to the grid). `crop` says which part of
    the run's output is the square's own, and where that goes in the whole output."""

    box: Box
    outer: Box

    def crop(self, scale: int = 1, shrink: int = 1, limit: tuple[int, int] | None = None
             ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """(rows and columns of the run's output, rows and columns of the whole output) of
        the square's own part, for outputs of `scale` units per latent (pixels: the stride),
        or one unit per `shrink` latents (z: the z stride; a part square counts whole), the
        whole output `limit` = (h, w) units (an image smaller than its padded grid)."""
        (r0, r1, c0, c1), (R0, _, C0, _) = self.box, self.outer

        def axis(a0: int, a1: int, A0: int, end: int | None) -> tuple[slice, slice]:
            start = a0 * scale // shrink
            n = -(-((a1 - a0) * scale) // shrink)
            if end is not None:
                n = min(n, end - start)
            top = (a0 - A0) * scale // shrink
            return slice(top, top + n), slice(start, start + n)

        h, w = limit if limit is not None else (None, None)
        (sr, dr), (sc, dc) = axis(r0, r1, R0, h), axis(c0, c1, C0, w)
        return (sr, sc), (dr, dc)


def halo_tiles(h: int, w: int, side: int, halo: int) -> Iterator[HaloTile]:
    """The side x side squares of an h x w grid, row by row, each with its halo: the one loop
    of every network run by tiles (analysis, synthesis, hyper-analysis, effort's blocks), so
    each output element sees its whole receptive field and the squares leave no seams."""
    for box in tiles(h, w, side):
        yield HaloTile(box, with_halo(box, halo, h, w))


@dataclass(frozen=True)
class TileGrid:
    """The latent grid of one image ([hy, wy] latents) and how its y is cut into sections.

    `tile` is the side in latents recorded in a tiled (version 2) stream, None when untiled:
    an untiled grid is one tile covering everything."""

    hy: int
    wy: int
    tile: int | None = None

    @property
    def tiled(self) -> bool:
        return self.tile is not None

    @property
    def side(self) -> int:
        return self.tile if self.tile is not None else max(self.hy, self.wy, 1)

    @property
    def boxes(self) -> list[Box]:
        return list(tiles(self.hy, self.wy, self.side))


def run_side(hy: int, wy: int, stride: int, multiple: int = 1) -> int:
    """Side in latents (a multiple of `multiple`) of the squares the networks run on for a
    latent grid of hy x wy at `stride` pixels per latent: one square for small images."""
    if hy * wy * stride * stride <= RUN_TILE_ABOVE:
        return max(hy, wy, 1)
    return max(RUN_TILE // stride // multiple, 1) * multiple


def padded(h: int, w: int, multiple: int) -> tuple[int, int]:
    """The image size rounded up to the model's pad multiple."""
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple


def latent_hw(h: int, w: int, multiple: int, stride: int) -> tuple[int, int]:
    """Latent grid size of an h x w image for a transform of `stride` pixels per latent."""
    ph, pw = padded(h, w, multiple)
    return -(-ph // stride), -(-pw // stride)


def intnet_halo(net: Mapping[str, np.ndarray]) -> int:
    """z latents of margin covering the integer hyper-decoder's receptive field."""
    halo, scale = 0, 1
    for i in range(intnet.layer_count(net)):
        k = int(np.shape(net[f"w{i}"])[-1])
        halo += -(-(k // 2) // scale)
        scale *= int(net[f"ps{i}"])
    return halo
