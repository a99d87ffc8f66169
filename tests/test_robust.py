"""Decoding that never goes wrong: hostile streams (hypothesis), tiles, atomic outputs."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aecodec import container
from aecodec.bench import fuzz
from aecodec.codec import Codec
from aecodec.errors import (
    AecodecError,
    CorruptStreamError,
    ImageTooLargeError,
    UnknownModelError,
)

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    return list(fuzz.seeds_cache())


# ---- the container parser and the decoder on hostile bytes ----------------------------------


@FUZZ
@given(st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(lambda b: container.MAGIC + bytes([0x1F]) + b),
    st.binary(max_size=64).map(lambda b: container.MAGIC + bytes([0x26]) + b),
    st.binary(max_size=64).map(lambda b: container.MAGIC + bytes([0x36]) + b),
    st.binary(max_size=64).map(lambda b: container.MAGIC + bytes([0x3E]) + b),
    st.binary(max_size=64).map(lambda b: bytes([0x43]) + b),  # compact, mnist-conv, quality
    st.binary(max_size=64).map(lambda b: fuzz.refresh_crc(bytes([0x43]) + b)),
))
def test_unpack_random_bytes(data):
    try:
        header, sections = container.unpack(data, max_pixels=1 << 22)
    except (CorruptStreamError, ImageTooLargeError, UnknownModelError):
        return
    assert b"".join(sections) == data[len(data) - sum(map(len, sections)):]
    assert header.width is None or header.width * header.height <= 1 << 22


@FUZZ
@given(st.integers(0, 2**32), st.randoms(use_true_random=False))
def test_decompress_mutated_streams(seeds, index, rng):
    """Every mutated stream (bit flips, truncations, insertions, header edits with fresh
    CRCs) decodes to an image or raises an AecodecError: nothing else escapes."""
    data = fuzz.mutate(seeds[index % len(seeds)], rng, seeds)
    try:
        header, _ = container.unpack(data, fuzz.FUZZ_MAX_PIXELS)
        codec = fuzz.codec_for(header.model_id)
    except AecodecError:
        return
    try:
        pixels = codec.decompress(data)
    except AecodecError:
        return
    assert pixels.dtype == np.uint8 and pixels.ndim in (2, 3)


@FUZZ
@given(st.integers(0, 2**32), st.randoms(use_true_random=False))
def test_decompress_mutated_compact_streams(index, rng):
    """The same for compact-profile seeds: mutations with a fresh CRC-8 reach the byte coder."""
    pool = fuzz.compact_seeds_cache()
    data = fuzz.mutate(pool[index % len(pool)], rng, list(pool))
    assert fuzz.decode(data) not in fuzz.FAILURES


def test_compact_seeds_and_crc_refresh():
    pool = fuzz.compact_seeds_cache()
    assert pool and all(container.is_compact(d) for d in pool)
    for d in pool:
        assert fuzz.decode(d) == "ok"
        damaged = d[:3] + bytes([d[3] ^ 0x10]) + d[4:]
        assert fuzz.decode(damaged) == "CorruptStreamError"
        container.unpack(fuzz.refresh_crc(damaged))  # a fresh CRC-8 passes the header check


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.randoms(use_true_random=False))
def test_damaged_extra_sections_raise_corrupt_stream(seeds, index, rng):
    """Version 3 seeds (alpha, ICC, EXIF) with one extra section damaged and a fresh CRC:
    the decoder and the metadata reader give pixels and alpha, or CorruptStreamError."""
    from aecodec.extras import stream_metadata

    v3 = [s for s in seeds if container.unpack(s)[0].extras]
    assert v3, "the fuzz seeds lack version 3 streams"
    header, sections = container.unpack(v3[index % len(v3)])
    latent, extra = container.split_extras(header, sections)
    kind = rng.choice(header.extras)
    bad = bytearray(extra[kind])
    op = rng.randrange(4)
    if op == 0 and bad:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(min(len(bad), 48))  # the checked fields are near the start
            bad[i] ^= 1 << rng.randrange(8)
    elif op == 1:
        del bad[rng.randint(0, len(bad)) :]
    elif op == 2:
        bad += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    else:
        bad = bytearray(rng.choice(sections))  # another section's bytes
    extra[kind] = bytes(bad)
    data = container.pack(header, latent + [extra[k] for k in header.extras])
    codec = fuzz.codec_for(header.model_id)
    try:
        pixels = codec.decompress(data)
        info = stream_metadata(data)
    except CorruptStreamError:
        return
    assert pixels.shape == (header.height, header.width, 4)
    assert set(info) == {"icc_profile", "exif"}


@pytest.mark.slow
def test_fuzz_run_counts_outcomes():
    res = fuzz.run(40, workers=2, timeout=60)
    assert sum(res["outcomes"].values()) == 40
    assert not set(res["outcomes"]) & set(fuzz.FAILURES), res


def test_size_guard_comes_before_any_allocation(seeds):
    header, sections = container.unpack(seeds[0])
    codec = fuzz.codec_for(header.model_id)
    for w, h, tile in ((20000, 20000, None), (3000, 2000, 64)):
        fields = container.Header(header.model_id, w, h, False, header.quality, tile=tile)
        data = container.write_stream(fields, sections)
        tracemalloc.start()
        with pytest.raises(ImageTooLargeError):
            codec.decompress(data)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1 << 20


def test_tiled_stream_refuses_bad_tile_fields(seeds):
    tiled = seeds[3]  # the tiled hyperprior seed
    header, sections = container.unpack(tiled)
    assert header.tile == 4
    codec = fuzz.codec_for(header.model_id)
    assert codec.decompress(tiled).shape == (128, 192, 3)
    for tile, secs in ((3, sections), (8, sections), (4, sections[:-1]), (4, sections + [b""])):
        fields = container.Header(header.model_id, 192, 128, False, header.quality, tile=tile)
        data = container.write_stream(fields, secs)
        with pytest.raises(CorruptStreamError):
            codec.decompress(data)


# ---- tiles ----------------------------------------------------------------------------------


def test_tiled_synthetic_models_are_exact(synth, photo):
    for family in ("factorized", "hyperprior"):
        whole = Codec(synth[family], tile_above=None)
        tiled = Codec(synth[family], tile=16, tile_above=0)
        a, b = whole.compress(photo, 60), tiled.compress(photo, 60)
        assert container.unpack(b)[0].tile == 4 and container.unpack(a)[0].tile is None
        assert np.array_equal(whole.decompress(a), tiled.decompress(b))
        assert np.array_equal(whole.decompress(b), tiled.decompress(a))


@pytest.mark.slow
def test_tiles_leave_no_seams(kodak):
    """A Kodak photo coded by 256-pixel tiles: the same latents and pixels as one pass."""
    a = np.asarray(Image.open(kodak[4]).convert("RGB"))
    whole = Codec(tile_above=None)
    tiled = Codec(tile=256, tile_above=0)
    da, db = whole.compress(a, 40), tiled.compress(a, 40)
    assert container.unpack(db)[0].tile == 16 and len(container.unpack(db)[1]) == 1 + 6
    la, lb = whole.decode_latents(da), tiled.decode_latents(db)
    for key in ("z_sym", "y_sym", "mean", "index"):
        assert np.array_equal(la[key], lb[key]), key
    xa, xb = whole.decompress(da), tiled.decompress(db)
    assert np.array_equal(xa, whole.synthesize(la["y_hat"], *a.shape[:2]))
    err_b = np.abs(xb.astype(int) - a).mean(axis=2)
    # no seam: the error on the tile boundaries' rows/columns is no larger than elsewhere
    rows = [r for k in range(256, a.shape[0], 256) for r in (k - 1, k)]
    cols = [c for k in range(256, a.shape[1], 256) for c in (k - 1, k)]
    edge = np.concatenate([err_b[rows].ravel(), err_b[:, cols].ravel()]).mean()
    assert edge <= 1.25 * err_b.mean()
    mse = [np.mean((x.astype(float) - a) ** 2) for x in (xa, xb)]
    assert abs(10 * np.log10(mse[0] / mse[1])) < 0.05
    assert np.array_equal(xa, xb)


@pytest.mark.slow
def test_tiled_coding_bounds_memory(tmp_path):
    """A 1536x1024 photo coded by 256-pixel tiles, its networks run by 256-pixel squares, stays
    far below the one-pass peak."""
    code = textwrap.dedent("""
        from aecodec import tiles
        from aecodec.bench.large import mosaic, peak_rss_mb
        from aecodec.codec import Codec
        tiles.RUN_TILE, tiles.RUN_TILE_ABOVE = 256, 0
        c = Codec(threads=1, tile=256, tile_above=0)
        a = mosaic(1536, 1024, None)
        assert c.decompress(c.compress(a, 50)).shape == a.shape
        print(peak_rss_mb())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 800  # MiB; one pass takes ~1.8 GiB


# ---- atomic outputs -------------------------------------------------------------------------


def _start(code: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"writing", p.stderr.read()
    return p


@pytest.mark.parametrize("unnamed", [True, False])
def test_killed_write_leaves_nothing(tmp_path, unnamed):
    """Killed between two chunks of the write: SIGKILL with the unnamed temporary file
    (Linux), SIGTERM with the portable named one (the CLI's handler removes it)."""
    if unnamed and fuzz_unnamed_unavailable(tmp_path):
        pytest.skip("no O_TMPFILE here")
    target = tmp_path / "out" / "x.aec"
    p = _start(f"""
        import sys, time
        import aecodec.imageio as io
        from aecodec.batch import exit_on_sigterm
        if not {unnamed}:
            io._unnamed_file = lambda folder: None
        exit_on_sigterm()
        def chunks():
            yield b"x" * 100000
            print("writing", flush=True)
            time.sleep(60)
            yield b"y"
        io.write_atomic({str(target)!r}, chunks())
    """)
    p.send_signal(signal.SIGKILL if unnamed else signal.SIGTERM)
    p.wait(30)
    assert not os.listdir(target.parent)


def fuzz_unnamed_unavailable(folder: Path) -> bool:
    from aecodec.imageio import _unnamed_file

    fd = _unnamed_file(folder)
    if fd is None:
        return True
    os.close(fd)
    return False


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_cli_killed_midway_leaves_no_output(tmp_path, command):
    from aecodec.bench.large import mosaic

    # 3 megapixels is seconds of work on most machines; where the job ends before the kill,
    # the same again with 4x the pixels, so the kill lands midway.
    for width, height in ((2048, 1536), (4096, 3072)):
        src = tmp_path / "big.png"
        a = mosaic(width, height, None)
        Image.fromarray(a).save(src, compress_level=1)
        if command == "decompress":
            stream = tmp_path / "big.aec"
            stream.write_bytes(Codec().compress(a, 50))
            src = tmp_path / "big.aec"
        out = tmp_path / f"out{width}"
        out.mkdir()
        p = subprocess.Popen([sys.executable, "-m", "aecodec.cli", command, str(src), "-o",
                              str(out / "result")], stderr=subprocess.PIPE)
        time.sleep(1.5)
        p.kill()
        p.wait(30)
        if not os.listdir(out):
            break
        # the output was written before the kill landed: it must be whole; then try again
        # with more pixels, so that the kill lands midway
        result = (out / "result").read_bytes()
        if command == "compress":
            assert Codec().decompress(result).shape == a.shape
        else:
            assert Image.open(io.BytesIO(result)).size == (width, height)
    else:
        pytest.fail("the job ended before the kill even at 12 megapixels")
    assert p.returncode == -signal.SIGKILL


def test_no_overwrite_without_force_for_every_input(synth, photo, tmp_path):
    from click.testing import CliRunner

    from aecodec import cli

    for name in ("a", "b", "c"):
        Image.fromarray(np.roll(photo, len(name), axis=1)).save(tmp_path / f"{name}.png")
    (tmp_path / "b.aec").write_bytes(b"keep")
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                                      str(tmp_path / "c.png"), "--model", str(synth["factorized"])])
    assert r.exit_code == 1 and "b.aec exists" in r.output
    assert (tmp_path / "b.aec").read_bytes() == b"keep"
    assert (tmp_path / "a.aec").stat().st_size > 4 and (tmp_path / "c.aec").exists()
    # two inputs that would write one output are refused before any work
    Image.fromarray(photo).save(tmp_path / "a.bmp")
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "a.png"), str(tmp_path / "a.bmp"),
                                      "--force", "--model", str(synth["factorized"])])
    assert r.exit_code == 1 and "would both write" in r.output


def test_write_atomic_keeps_mode_and_refuses_existing(tmp_path, monkeypatch):
    from aecodec import imageio

    for unnamed in (True, False):
        if not unnamed:
            monkeypatch.setattr(imageio, "_unnamed_file", lambda folder: None)
        target = tmp_path / f"f{unnamed}.bin"
        imageio.write_atomic(target, b"one")
        with pytest.raises(FileExistsError):
            imageio.write_atomic(target, b"two")
        imageio.write_atomic(target, [b"th", b"ree"], force=True)
        assert target.read_bytes() == b"three"
        assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fFalse.bin", "fTrue.bin"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_mutations_are_deterministic(seeds):
    assert fuzz.stream(123) == fuzz.stream(123)
    assert fuzz.mutate(seeds[0], random.Random(5)) == fuzz.mutate(seeds[0], random.Random(5))


def test_hyper_decoder_by_blocks_is_exact(monkeypatch):
    """The integer hyper-decoder run block by block (with its margin) equals one run."""
    from aecodec import tiles
    from aecodec.bench.large import mosaic

    c = Codec(threads=1)
    data = c.compress(mosaic(320, 256, None), 60)
    whole = c.decode_latents(data)
    monkeypatch.setattr(tiles, "INTNET_BLOCK", 1)
    blocks = c.decode_latents(data)
    for key in ("mean", "index", "y_sym", "y_hat"):
        assert np.array_equal(whole[key], blocks[key]), key


def test_networks_run_by_squares_give_the_same_stream_and_pixels(kodak, monkeypatch):
    """Analysis, hyper-analysis and synthesis run by small squares with their halos: the
    stream's bytes and the decoded pixels are those of one pass."""
    from aecodec import tiles

    a = np.asarray(Image.open(kodak[4]).convert("RGB"))
    c = Codec(threads=1)
    whole = c.compress(a, 40)
    pixels = c.decompress(whole)
    monkeypatch.setattr(tiles, "RUN_TILE_ABOVE", 0)
    monkeypatch.setattr(tiles, "RUN_TILE", 256)
    assert tiles.run_side(32, 48, 16) == 16
    assert c.compress(a, 40) == whole
    assert np.array_equal(c.decompress(whole), pixels)


@pytest.mark.parametrize("version", [1, 2])
def test_hostile_streams_cost_nothing_whatever_their_declared_size(version, monkeypatch):
    """Streams declaring ever larger images in a few bytes are refused before any work that
    grows with the declared size (a lowered untiled limit stands in for 16 MP)."""
    from aecodec import tiles
    from aecodec.bench.large import hostile_stream

    monkeypatch.setattr(tiles, "UNTILED_MAX_PIXELS", 512 * 512)
    c = Codec(threads=1)
    peaks = []
    for side in (1024, 4096):
        data = hostile_stream(c, version, side, side)
        tracemalloc.start()
        with pytest.raises(ImageTooLargeError if version == 1 else CorruptStreamError):
            c.decompress(data)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # 16 MP declared: the z grid's table indices (2 bytes per 4096 pixels) and a fixed chunk
    assert peaks[1] < 4 << 20, peaks


def test_untiled_limit_is_kept_by_the_encoder(monkeypatch):
    from aecodec import tiles

    monkeypatch.setattr(tiles, "UNTILED_MAX_PIXELS", 128 * 128)
    c = Codec(threads=1, tile=64, tile_above=None)
    photo = np.random.default_rng(1).integers(0, 255, (192, 128, 3), np.uint8)
    data = c.compress(photo, 30)
    assert container.unpack(data)[0].tile == 4  # tiled although tile_above=None
    assert c.decompress(data).shape == photo.shape
