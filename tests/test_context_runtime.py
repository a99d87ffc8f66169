"""The `context` family in the runtime (shipped `hyperprior-ctx`): streams round-trip, every
byte is consumed, corrupt sections are refused, tiles decode, and decoding is identical under
every ONNX Runtime configuration (the context networks are exact integer arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest

import aecodec
from aecodec import container
from aecodec.errors import CorruptStreamError
from aecodec.imageio import read_image

INFO = next((i for i in aecodec.models() if i.name == "hyperprior-ctx"), None)
needs_model = pytest.mark.skipif(INFO is None, reason="hyperprior-ctx is not installed")


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    from aecodec.demo import SAMPLE

    return read_image(SAMPLE)[:128, :192]


@needs_model
def test_round_trip_and_estimate(sample):
    codec = aecodec.Codec(INFO, threads=1)
    base = aecodec.Codec("hyperprior", threads=1)
    for q in (5, 60):
        enc = codec.encode(sample, q)
        payload = len(enc.data) - enc.header_bytes
        assert abs(payload * 8 - enc.estimated_bits) <= 0.01 * enc.estimated_bits + 64 * 2
        lat = codec.decode_latents(enc.data)
        ref = base.decode_latents(base.compress(sample, q))
        assert np.array_equal(lat["z_sym"], ref["z_sym"])  # same transforms and z
        changed = np.mean(lat["index"] != ref["index"])
        assert 0.01 < changed < 0.9  # the context refines part of the hyperprior's scales
        pixels = codec.decompress(enc.data)
        assert pixels.shape == sample.shape
        assert codec.compress(sample, q) == enc.data  # deterministic


@needs_model
def test_cut_or_altered_sections_are_refused(sample):
    codec = aecodec.Codec(INFO, threads=1)
    data = codec.compress(sample, 40)
    header, sections = container.unpack(data)
    for bad in ([sections[0], sections[1] + b"\x01\x02\x03\x04"],  # data left over
                [sections[0], sections[1][:-1] + b"\x00"],  # ends in a zero byte
                sections[:1]):  # a section missing
        with pytest.raises(CorruptStreamError):
            codec.decompress(container.pack(header, bad))


@needs_model
def test_tiled_stream_decodes(sample):
    """Tiles see only their own context, so a tiled stream is its own stream (not the untiled
    one's bytes); it still decodes, to an image as close to the original."""
    tiled = aecodec.Codec(INFO, threads=1, tile=64, tile_above=0)
    data = tiled.compress(sample, 50)
    header, sections = container.unpack(data)
    assert header.tile == 4 and len(sections) == 1 + 6
    pixels = tiled.decompress(data)
    untiled = aecodec.Codec(INFO, threads=1)
    ref = untiled.decompress(untiled.compress(sample, 50))
    err = [np.mean((p.astype(float) - sample) ** 2) for p in (pixels, ref)]
    assert err[0] < 1.1 * err[1]


@needs_model
@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 11, 22])
def test_kodak_decodes_identically_across_runtimes(kodak, index):
    image = read_image(kodak[index])
    h, w = image.shape[:2]
    enc = aecodec.Codec(INFO, threads=1, graph_optimization="none")
    decoders = {
        "2 threads": aecodec.Codec(INFO, threads=2),
        "1 thread": aecodec.Codec(INFO, threads=1),
        "basic": aecodec.Codec(INFO, threads=1, graph_optimization="basic"),
        "extended": aecodec.Codec(INFO, threads=2, graph_optimization="extended"),
    }
    for quality in (10, 50, 90):
        data = enc.compress(image, quality)
        ref = enc.decode_latents(data)
        pixels = enc.synthesize(ref["y_hat"], h, w)
        for name, dec in decoders.items():
            lat = dec.decode_latents(data)
            for key in ("y_sym", "mean", "index", "y_hat"):
                assert np.array_equal(ref[key], lat[key]), (name, key)
            assert np.array_equal(dec.synthesize(lat["y_hat"], h, w), pixels), name


def test_shared_files_are_checked_like_own_ones(tmp_path):
    """hyperprior-ctx ships only its context networks and takes the rest from hyperprior's
    folder (`shares_files_with`), under its own manifest's hashes: a changed shared file is
    refused, a missing one named."""
    import shutil

    from aecodec.errors import ModelError
    from aecodec.model import MODELS_DIR, Model

    for name in ("hyperprior", "hyperprior-ctx"):
        shutil.copytree(MODELS_DIR / name, tmp_path / name)
    model = Model(tmp_path / "hyperprior-ctx")
    assert model.file("tables.npz") == tmp_path / "hyperprior-ctx" / "../hyperprior/tables.npz"
    assert model.file("context.npz").parent == tmp_path / "hyperprior-ctx"
    with open(tmp_path / "hyperprior" / "tables.npz", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="tables.npz does not match"):
        Model(tmp_path / "hyperprior-ctx")
    (tmp_path / "hyperprior" / "tables.npz").unlink()
    with pytest.raises(ModelError, match="tables.npz is missing"):
        Model(tmp_path / "hyperprior-ctx")
