"""Decoding cost follows a stream's area, not its tile count (issue 20): strips of small
tiles share one hyper-decoder run, and a context model runs each step network once for
all the tiles of a group (codec/latent/hyperprior.py, codec/ctxnet.py), bit for bit as
tile by tile."""

from __future__ import annotations

import numpy as np
import pytest

import aecodec
from aecodec.latent import hyperprior


def _photo(h, w):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], axis=2)
    img = img + rng.normal(0, 9, (h, w, 3))
    return img.clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["hyperprior", "hyperprior-ctx"])
def test_small_tiles_decode_in_groups_exactly_as_one_by_one(name, monkeypatch):
    info = next(i for i in aecodec.models() if i.name == name)
    codec = aecodec.Codec(info, threads=1, tile=64, tile_above=0)  # 4-latent tiles
    data = codec.compress(_photo(160, 208), 50)
    grouped = codec.decompress(data)
    monkeypatch.setattr(hyperprior, "STRIP_AREA", 0)  # every tile alone
    assert np.array_equal(grouped, codec.decompress(data))


def test_strips_group_consecutive_tiles_of_one_row():
    boxes = [(0, 4, c, c + 4) for c in range(0, 12, 4)] + [(4, 8, 0, 4)]
    assert hyperprior.strips(boxes) == [[0, 1, 2], [3]]
    big = [(0, 64, 0, 64), (0, 64, 64, 128)]
    assert hyperprior.strips(big) == [[0], [1]]
