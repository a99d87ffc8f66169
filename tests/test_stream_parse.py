"""One parsed stream per decode: `container.Stream` is read once and passed along, so the CRC
is checked once whatever reads the stream (decode, alpha, metadata, info, Pillow)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import aecodec
from aecodec import container, extras
from aecodec.errors import CorruptStreamError, ImageTooLargeError

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def crc_calls(monkeypatch) -> list[bool]:
    """Every CRC check made (its `compact` flag), counted through `container.verify_crc`."""
    calls: list[bool] = []
    real = container.verify_crc

    def counting(data: bytes, at: int, compact: bool) -> None:
        calls.append(compact)
        real(data, at, compact)

    monkeypatch.setattr(container, "verify_crc", counting)
    return calls


def _rgba_with_icc(photo: np.ndarray) -> Image.Image:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.fromarray(np.dstack([photo, photo[:, :, 0]]))
    im.info["icc_profile"] = srgb
    return im


def test_decode_checks_the_crc_once(synth, photo, crc_calls):
    """A stream with alpha and ICC: decode, alpha and metadata read one Stream."""
    model = str(synth["hyperprior"])
    image = _rgba_with_icc(photo)
    data = aecodec.Codec(model).compress(image)
    assert container.read(data).header.extras == ("icc", "alpha")
    crc_calls.clear()
    pixels = aecodec.decompress(data, model=model)
    assert pixels.shape == photo.shape[:2] + (4,) and crc_calls == [False]
    crc_calls.clear()
    aecodec.Codec(model).decompress(data)
    assert crc_calls == [False]
    stream = container.parse(data)
    assert crc_calls == [False, False]
    assert np.array_equal(aecodec.decompress(stream, model=model), pixels)
    assert extras.stream_metadata(stream)["icc_profile"] == image.info["icc_profile"]
    assert aecodec.stream_info(stream)["extras"] == {k: len(v) for k, v in stream.extra.items()}
    assert crc_calls == [False, False]  # the Stream given: never checked again


def test_compact_decode_checks_the_crc_once(crc_calls):
    data = (GOLDEN / "mnist-rd-compact.aec").read_bytes()
    pixels = aecodec.decompress(data)
    assert pixels.shape == (28, 28) and crc_calls == [True]


def test_pillow_open_and_load_check_the_crc_once(crc_calls):
    data = (GOLDEN / "mnist-rd-compact.aec").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.size == (28, 28)
    assert crc_calls == [True]
    full = aecodec.compress(np.full((28, 28), 128, np.uint8), model="mnist-rd")
    crc_calls.clear()
    with Image.open(io.BytesIO(full)) as im:
        assert np.array_equal(np.asarray(im), aecodec.decompress(full))
    assert crc_calls == [False, False]  # Pillow's open and load, then decompress's own


def test_stream_read_then_check():
    """`read` takes the header fields only (enough to pick a model); `check` the rest."""
    sections = [b"z" * 5, b"y" * 7, b"\x01\x02"]
    data = container.pack(container.Header("0123abcd", 64, 48, tile=4), sections)
    stream = container.read(data)
    assert stream.header.width == 64 and not stream.checked
    with pytest.raises(RuntimeError):
        stream.sections  # noqa: B018 - unchecked sections are not handed out
    assert stream.check().sections == sections and stream.latent == sections
    assert stream.header_bytes == container.header_size(data) and stream.extra == {}
    with pytest.raises(ImageTooLargeError):
        container.parse(data, max_pixels=64 * 48 - 1)
    damaged = container.read(data[:-1] + bytes([data[-1] ^ 1]))  # fields still read
    assert damaged.header.model_id == "0123abcd"
    with pytest.raises(CorruptStreamError, match="checksum"):
        damaged.check()
    assert container.parse(stream) is stream


def test_a_folder_job_decodes_with_one_check(synth, photo, crc_calls):
    """`aecodec decompress` of files (batch.Coder): pixels and metadata from one Stream."""
    from aecodec import batch

    model = str(synth["hyperprior"])
    image = _rgba_with_icc(photo)
    data = aecodec.Codec(model).compress(image)
    crc_calls.clear()
    coded = batch.Coder(batch.Settings(mode="decompress", model=model)).transform(data, "PNG")
    assert crc_calls == [False]
    out = Image.open(io.BytesIO(coded.data))
    assert out.info["icc_profile"] == image.info["icc_profile"] and out.mode == "RGBA"
