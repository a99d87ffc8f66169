"""The AEC format in Pillow: open (header only), load (decode), save (encode), by name."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

import aecodec
from aecodec import codec as codec_module
from aecodec import container

PHOTO = [i for i in aecodec.models() if not i.fixed_size]
needs_photo_model = pytest.mark.skipif(not PHOTO, reason="no shipped photo model installed")


def test_registered():
    Image.init()
    assert Image.EXTENSION[".aec"] == "AEC"
    assert Image.MIME["AEC"] == "image/x-aec"
    assert "AEC" in Image.OPEN and "AEC" in Image.SAVE


def test_save_with_model_and_quality(synth, photo, tmp_path):
    im = Image.fromarray(photo)
    im.save(tmp_path / "a.aec", quality=60, model=str(synth["hyperprior"]))
    buf = io.BytesIO()
    im.save(buf, format="AEC", quality=60, model=str(synth["hyperprior"]))
    data = (tmp_path / "a.aec").read_bytes()
    assert data == buf.getvalue() == aecodec.Codec(synth["hyperprior"]).compress(photo, 60)
    assert container.unpack(data)[0].quality == 60.0
    im.save(tmp_path / "b.aec", quality=20, model=str(synth["hyperprior"]))
    assert (tmp_path / "b.aec").stat().st_size < len(data)


def test_open_reads_the_header_without_decoding(synth, photo, tmp_path, monkeypatch):
    """size, mode and info come from the header; no codec is made and nothing is decoded."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.fromarray(np.dstack([photo, photo[:, :, 0]]))
    im.save(tmp_path / "a.aec", model=str(synth["hyperprior"]), icc_profile=srgb)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded on open")

    monkeypatch.setattr(codec_module, "get_codec", refuse)
    monkeypatch.setattr(codec_module, "decompress", refuse)
    monkeypatch.setattr(codec_module.Codec, "decompress", refuse)
    with Image.open(tmp_path / "a.aec") as opened:
        assert opened.format == "AEC" and opened.get_format_mimetype() == "image/x-aec"
        assert opened.size == (photo.shape[1], photo.shape[0]) and opened.mode == "RGBA"
        assert opened.info["icc_profile"] == srgb
        with pytest.raises(AssertionError, match="decoded on open"):
            opened.load()


def test_corrupt_stream_names_the_problem(tmp_path):
    (tmp_path / "bad.aec").write_bytes(container.MAGIC + b"\x10" + bytes(20))
    with pytest.raises(aecodec.CorruptStreamError, match="checksum"):
        Image.open(tmp_path / "bad.aec")


@needs_photo_model
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_open_load_save_round_trip(photo, tmp_path, mode):
    alpha = (np.arange(photo.shape[1], dtype=np.uint8) * 3)[None].repeat(photo.shape[0], 0)
    arrays = {"RGB": photo, "L": photo[:, :, 1], "RGBA": np.dstack([photo, alpha]),
              "LA": np.dstack([photo[:, :, 1], alpha])}
    src = Image.fromarray(arrays[mode], mode)
    src.save(tmp_path / "x.aec", quality=80)
    data = (tmp_path / "x.aec").read_bytes()
    with Image.open(tmp_path / "x.aec") as im:
        assert (im.format, im.mode, im.size) == ("AEC", mode, src.size)
        pixels = np.asarray(im)  # loads
    assert np.array_equal(pixels, aecodec.decompress(data))
    if mode.endswith("A"):
        assert np.array_equal(pixels[:, :, -1], alpha)
    err = np.abs(pixels.astype(int) - arrays[mode]).mean()
    assert err < 6
    # and out again through Pillow to another format
    buf = io.BytesIO()
    Image.open(tmp_path / "x.aec").save(buf, "PNG")
    assert np.array_equal(np.asarray(Image.open(buf)), pixels)


@needs_photo_model
def test_metadata_in_info_and_thumbnail(photo, tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "maker"
    big = Image.fromarray(np.kron(photo, np.ones((4, 4, 1), np.uint8)))
    big.save(tmp_path / "x.aec", icc_profile=srgb, exif=exif, quality=50)
    with Image.open(tmp_path / "x.aec") as im:
        assert im.info["icc_profile"] == srgb and im.getexif()[0x010F] == "maker"
        im.thumbnail((64, 64))
        assert max(im.size) == 64


def test_fixed_size_model_size_from_its_manifest(photo):
    mnist = [i for i in aecodec.models() if i.fixed_size]
    if not mnist:
        pytest.skip("no fixed-size model installed")
    data = aecodec.compress(photo[:28, :28, 0].copy(), 50, model=mnist[0])
    assert container.unpack(data)[0].width is None
    with Image.open(io.BytesIO(data)) as im:
        assert (im.size, im.mode) == ((28, 28), "L")
        assert np.array_equal(np.asarray(im), aecodec.decompress(data))


# ---- compact-profile streams (no magic bytes) -------------------------------------------------

def _digit_stream() -> tuple[bytes, np.ndarray]:
    digit = (np.arange(28 * 28).reshape(28, 28) * 5 % 256).astype(np.uint8)
    c = aecodec.Codec("mnist-rd", profile="compact")
    return c.compress(digit, 50), c.decompress(c.compress(digit, 50))


def test_compact_stream_opens_through_pillow():
    data, want = _digit_stream()
    assert not data.startswith(aecodec.container.MAGIC)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "AEC" and im.size == (28, 28) and im.mode == "L"
        assert np.array_equal(np.asarray(im), want)


def test_compact_guess_never_takes_other_formats():
    """BMP ('B') and GIF ('G') start with bytes that are valid compact model indices."""
    img = Image.fromarray(np.full((8, 8), 77, np.uint8))
    for fmt in ("BMP", "GIF", "TIFF", "PPM"):
        buf = io.BytesIO()
        img.save(buf, fmt)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            assert im.format == fmt


def test_damaged_compact_stream_is_not_identified():
    data, _ = _digit_stream()
    bad = data[:-1] + bytes([data[-1] ^ 0x10])  # CRC-8 no longer matches
    with pytest.raises(OSError):
        Image.open(io.BytesIO(bad)).load()
