"""`tiles.halo_tiles`: the one tile-with-halo loop of the networks (analysis, synthesis,
hyper-analysis, effort's blocks); its crops are those each loop computed for itself before."""

from __future__ import annotations

import numpy as np
import pytest

import aecodec
from aecodec import tiles


@pytest.mark.parametrize("h, w, side, halo", [(7, 5, 4, 2), (32, 48, 16, 4), (9, 9, 9, 8),
                                              (1, 1, 1, 4), (40, 24, 8, 8)])
def test_crops_match_the_old_loops(h, w, side, halo):
    got = list(tiles.halo_tiles(h, w, side, halo))
    assert [t.box for t in got] == list(tiles.tiles(h, w, side))
    for t in got:
        (r0, r1, c0, c1), (R0, _, C0, _) = t.box, t.outer
        assert t.outer == tiles.with_halo(t.box, halo, h, w)
        # the analysis and effort: one output per latent
        assert t.crop() == ((slice(r0 - R0, r1 - R0), slice(c0 - C0, c1 - C0)),
                            (slice(r0, r1), slice(c0, c1)))
        # the synthesis: `s` pixels per latent, cropped to the image
        s, ih, iw = 4, h * 4 - 3, w * 4 - 1
        top, left = (r0 - R0) * s, (c0 - C0) * s
        th, tw = min(r1 * s, ih) - r0 * s, min(c1 * s, iw) - c0 * s
        assert t.crop(scale=s, limit=(ih, iw)) == (
            (slice(top, top + th), slice(left, left + tw)),
            (slice(r0 * s, r0 * s + th), slice(c0 * s, c0 * s + tw)))


def test_shrink_crops_match_the_hyper_analysis():
    f = 4
    for t in tiles.halo_tiles(30, 22, 8, 8):
        (r0, r1, c0, c1), (R0, _, C0, _) = t.box, t.outer
        top, left = (r0 - R0) // f, (c0 - C0) // f
        zh, zw = -(-(r1 - r0) // f), -(-(c1 - c0) // f)
        assert t.crop(shrink=f) == ((slice(top, top + zh), slice(left, left + zw)),
                                    (slice(r0 // f, r0 // f + zh), slice(c0 // f, c0 // f + zw)))


def test_tiled_runs_equal_one_pass(synth, photo, monkeypatch):
    """Analysis, hyper-analysis and synthesis by small squares give the one-pass numbers."""
    codec = aecodec.Codec(str(synth["hyperprior"]))
    a, _ = codec.prepare(photo)
    y = codec.analyse(a)
    lat = codec.latent
    gain, _ = codec.model.gains(None)
    grid = tiles.TileGrid(*y.shape[1:])
    z = lat.hyper_latents(y, gain, grid)
    h, w = a.shape[:2]
    pixels = codec.synthesize(y, h, w)
    monkeypatch.setattr(tiles, "RUN_TILE_ABOVE", 0)
    monkeypatch.setattr(tiles, "RUN_TILE", 4 * codec.stride)
    assert tiles.run_side(*y.shape[1:], codec.stride) < max(y.shape[1:])
    assert np.array_equal(codec.analyse(a), y)
    assert np.array_equal(lat.hyper_latents(y, gain, grid), z)
    assert np.array_equal(codec.synthesize(y, h, w, tile=3), pixels)
