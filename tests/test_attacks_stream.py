"""Hostile streams, images and model folders written from docs/format.md and
docs/model-format.md alone: each refused, or decoded with its work bounded by its size.

The work bounds are asserted by counting function calls (`call_budget`), not by the clock:
a check whose cost grows with what a stream declares, rather than with its bytes, runs out
of calls at once instead of running for minutes.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import aecodec
from aecodec import container, extras
from aecodec.errors import (
    AecodecError,
    CorruptStreamError,
    ImageTooLargeError,
    LossWarning,
    ModelError,
)


class OverBudget(Exception):
    pass


@contextmanager
def call_budget(calls: int):
    """Fail (OverBudget) once the code inside makes more than `calls` Python or C calls."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        if event in ("call", "c_call"):
            count += 1
            if count > calls:
                raise OverBudget(f"over {calls} calls")

    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(None)


def _with_exif(block: bytes) -> bytes:
    """A valid stream of a 16 x 16 image whose EXIF section is `block`."""
    im = Image.fromarray(np.full((16, 16, 3), 100, np.uint8))
    im.info["exif"] = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00"
    data = aecodec.compress(im, model="hyperprior-fast")
    header, sections = container.unpack(data)
    at = list(header.extras).index("exif") + len(sections) - len(header.extras)
    sections[at] = block
    return container.pack(header, sections)


def _entry(tag: int, typ: int, count: int, value: int) -> bytes:
    return b"".join(v.to_bytes(n, "big") for v, n in ((tag, 2), (typ, 2), (count, 4), (value, 4)))


# ---- A1: the EXIF structure check costs what the block's bytes can hold --------------------

def test_a1_one_directory_of_many_large_entries_is_checked_at_bounded_cost():
    """20,000 SHORT[4096] entries sharing one 8 KiB data area (a 248 kB block): a valid
    structure, accepted, with a number of calls that does not grow with the entries."""
    n, data_at = 20_000, 8 + 2 + 12 * 20_000 + 4
    tiff = (b"MM\x00*" + (8).to_bytes(4, "big") + n.to_bytes(2, "big")
            + _entry(0x010E, 3, 4096, data_at) * n + bytes(4) + bytes(8192))
    block = b"Exif\x00\x00" + tiff
    with call_budget(500):
        assert extras.exif_extent(tiff) == len(tiff)
    data = _with_exif(block)
    assert 240_000 < len(data) < 300_000
    with call_budget(20_000):
        im = Image.open(io.BytesIO(data))
    assert im.info["exif"] == block


def test_a1_overlapping_chained_directories_are_refused_at_bounded_cost():
    """64 directories 12 bytes apart in a 12.8 kB block, each reading the same ~1,000
    SHORT[4096] entries (docs/format.md's EXIF is a TIFF structure, which does not forbid
    it): together they hold 64,000 entries where the block has room for 1,065."""
    n, dirs, p0 = 1000, 64, 8
    rows = []
    for k in range(n + dirs):
        if k < n:  # bytes 10..11 of entry k-1 are directory k's count (big-endian): n
            rows.append(_entry(0x010E, 3, 4096, n))  # data at offset n, 8 KiB
        else:  # the next-directory pointer of directory k - n: the next one, or 0
            i = k - n
            nxt = p0 + 12 * (i + 1) if i + 1 < dirs else 0
            rows.append(_entry(nxt >> 16, nxt & 0xFFFF, 0, 0))
    tiff = b"MM\x00*" + p0.to_bytes(4, "big") + n.to_bytes(2, "big") + b"".join(rows)
    tiff += bytes(max(0, n + 8192 - len(tiff)) + 4)
    assert len(tiff) < 20_000
    with call_budget(2_000), pytest.raises(CorruptStreamError, match="overlap"):
        extras.exif_extent(tiff)
    data = _with_exif(b"Exif\x00\x00" + tiff)
    with call_budget(20_000), pytest.raises(CorruptStreamError, match="overlap"):
        Image.open(io.BytesIO(data))
    with pytest.raises(CorruptStreamError, match="overlap"):
        aecodec.decompress(data)


# ---- A2, A3: Pillow's content sniffing: bounded, and no other format's files taken ---------

def _crc8(data: bytes) -> int:
    """CRC-8/AUTOSAR as docs/format.md defines it (poly 0x2F, init 0xFF, xorout 0xFF)."""
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x2F) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0xFF


def _compact_crc_ok(data: bytes) -> bool:
    """Whether bytes pass a compact header's CRC-8 (at byte 1, or 2 with the quality flag)."""
    at = 2 if data[0] & 0x40 else 1
    return len(data) > at and _crc8(data[:at] + data[at + 1:]) == data[at]


def test_a2_crc8_is_the_documented_one():
    assert _crc8(b"123456789") == 0xDF


@pytest.mark.parametrize("compression", [None, "tga_rle"])
def test_a2_tga_files_that_pass_the_compact_crc_stay_tga(compression):
    """A gray TGA starts with 00 (no image id): compact index 0. Among the 256 values of one
    pixel exactly one makes the file pass the CRC-8; with aecodec imported it opens as TGA."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        pixels = rng.integers(0, 256, (6, 7), np.uint8)
        for v in range(256):
            pixels[0, 0] = v
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, "TGA", compression=compression)
            data = buf.getvalue()
            if data[0] < 0x40 and _compact_crc_ok(data):
                break
        else:
            continue
        break
    else:
        pytest.fail("no TGA file passing the CRC-8 found")
    im = Image.open(io.BytesIO(data))
    assert im.format == "TGA"
    assert np.array_equal(np.asarray(im), pixels)


def test_a2_bytes_no_format_reads_are_not_an_aec_image_that_cannot_load():
    rng = np.random.default_rng(7)
    data = bytearray(rng.integers(0, 256, 40, np.uint8).tobytes())
    data[0] = 0x06  # compact index 6 (mnist-rd), no quality byte: the CRC-8 at byte 1
    data[1] = _crc8(bytes(data[:1] + data[2:]))
    assert _compact_crc_ok(bytes(data))
    others = [f for f in Image.ID if f != "AEC"]
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(bytes(data)), formats=others)
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(bytes(data)))


class Zeros(io.RawIOBase):
    """/dev/zero as a seekable file object that fails past `limit` bytes read."""

    def __init__(self, limit: int) -> None:
        self.limit, self.read_total, self.pos = limit, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b) -> int:
        if self.read_total + len(b) > self.limit:
            raise OverBudget(f"read over {self.limit} bytes")
        b[:] = bytes(len(b))
        self.read_total += len(b)
        self.pos += len(b)
        return len(b)


def test_a3_open_reads_a_bounded_prefix_of_an_endless_file():
    zeros = Zeros(1 << 20)
    with pytest.raises(UnidentifiedImageError):
        Image.open(zeros)
    assert zeros.read_total <= 2 * container.COMPACT_MAX_BYTES


def test_a3_compact_streams_longer_than_the_bound_are_refused():
    data = (GOLDEN / "mnist-rd-compact.aec").read_bytes()
    assert Image.open(io.BytesIO(data)).format == "AEC"  # a real one still opens
    padded = data + bytes(container.COMPACT_MAX_BYTES)
    with pytest.raises(CorruptStreamError, match="over 4096 bytes"):
        aecodec.decompress(padded)


GOLDEN = Path(__file__).parent / "golden"


# ---- A4, A13: what the encoder keeps, the decoder reads; odd metadata is no crash ----------

def _icc(size_field: int, length: int) -> bytes:
    """ICC-like bytes (docs/format.md: size field, 'RGB ' at 16, 'acsp' at 36)."""
    icc = bytearray(length)
    icc[:4] = size_field.to_bytes(4, "big")
    icc[16:20], icc[36:40] = b"RGB ", b"acsp"
    return bytes(icc)


def _saved(fmt: str, **params) -> Image.Image:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 24, 3), 140, np.uint8)).save(buf, fmt, **params)
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("fmt, params, lost", [
    ("JPEG", {"icc_profile": _icc(300, 200)}, "ICC"),  # size field != length
    ("JPEG", {"xmp": "<x:xmpmeta/>".encode("utf-16")}, "XMP"),  # UTF-16 packet
    ("PNG", {"icc_profile": _icc(500, 300)}, "ICC"),  # truncated
    ("WEBP", {"xmp": b"\x00\xff\xfe\x01binary", "lossless": True}, "XMP"),
])
def test_a4_metadata_a_decoder_refuses_is_dropped_with_a_warning(fmt, params, lost):
    im = _saved(fmt, **params)
    with pytest.warns(LossWarning, match=lost):
        data = aecodec.compress(im, model="hyperprior-fast")
    assert aecodec.decompress(data).shape == (16, 24, 3)  # the image is not lost


def test_a4_a_tiff_input_keeps_its_resolution_and_decodes():
    """Pillow's EXIF of a TIFF is the file's own directory: its strip offsets point into the
    TIFF, not into an EXIF block. They are left out; what describes the image stays."""
    im = _saved("TIFF", dpi=(300, 300))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = aecodec.compress(im, model="hyperprior-fast")
    assert aecodec.decompress(data).shape == (16, 24, 3)
    meta = extras.stream_metadata(data)
    assert meta["dpi"] == (300, 300)
    exif = Image.Exif()
    exif.load(meta["exif"])
    assert 0x0111 not in exif and exif[0x011A] == 300


def test_a13_a_tiff_whose_resolution_is_an_infinite_double():
    from PIL import TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    for tag in (282, 283):  # XResolution, YResolution as DOUBLE (type 12) infinity
        ifd[tag] = float("inf")
        ifd.tagtype[tag] = 12
    im = _saved("TIFF", tiffinfo=ifd)
    assert im.info["dpi"] == (float("inf"), float("inf"))
    with pytest.warns(LossWarning, match="DPI"):
        data = aecodec.compress(im, model="hyperprior-fast")
    assert "dpi" not in extras.stream_metadata(data)


@pytest.mark.parametrize("key, value", [
    ("dpi", (float("inf"), 72)), ("dpi", (float("nan"), 72)), ("dpi", ("a", "b")),
    ("dpi", 72), ("dpi", (1, 2, 3)), ("dpi", (1e300, 1e300)),
    ("icc_profile", 5), ("icc_profile", "text"), ("icc_profile", [1, 2]),
    ("xmp", 5), ("xmp", b"\xff\xfe<\x00"), ("xmp", "<a>\udcff</a>"), ("xmp", b"no xml"),
    ("exif", 5), ("exif", "text"), ("exif", b"garbage"),
])
def test_a13_odd_info_values_are_dropped_or_refused_as_aecodec_errors(key, value):
    im = Image.fromarray(np.full((8, 8, 3), 60, np.uint8))
    im.info[key] = value
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LossWarning)
            data = aecodec.compress(im, model="hyperprior-fast")
    except AecodecError:
        return
    assert aecodec.decompress(data).shape == (8, 8, 3)


# ---- A7: the pixel limit counts the padding the transforms run on ---------------------------

def test_a7_a_one_row_image_is_counted_with_its_padding():
    codec = aecodec.Codec("hyperprior-fast", max_pixels=100_000)
    line = np.full((1, 5000, 3), 90, np.uint8)  # 5,000 pixels, coded as 64 x 5,056
    with pytest.raises(ImageTooLargeError, match="padded to 5056x64"):
        codec.compress(line)
    data = container.pack(container.Header(codec.model.id, 5000, 1, False, 75.0),
                          [b"\x01", b"\x01"])
    with pytest.raises(ImageTooLargeError, match="padded"):
        codec.decompress(data)
    codec.compress(np.full((64, 1000, 3), 90, np.uint8))  # the same area, unpadded: coded


# ---- A8: model folders with valid hashes and one manifest value changed ---------------------

@pytest.fixture(scope="module")
def factorized_copy(tmp_path_factory) -> Path:
    src = next(i.path for i in aecodec.models() if i.name == "factorized")
    dst = tmp_path_factory.mktemp("models") / "factorized"
    shutil.copytree(src, dst)
    return dst


def _manifest(folder: Path) -> dict:
    src = next(i.path for i in aecodec.models() if i.name == folder.name)
    return json.loads((src / "manifest.json").read_text())


@pytest.mark.parametrize("where, value, field", [
    (("latent", "stride"), 0, "latent.stride"),
    (("latent", "stride"), -16, "latent.stride"),
    (("latent", "stride"), "16", "latent.stride"),
    (("latent", "hyper_stride"), 0, "latent.hyper_stride"),
    (("latent", "hyper_stride"), 24, "latent.hyper_stride"),
    (("latent", "synthesis_halo"), 10**9, "latent.synthesis_halo"),
    (("latent", "analysis_halo"), -1, "latent.analysis_halo"),
    (("image", "pad_multiple"), 10**9, "image.pad_multiple"),
    (("image", "pad_multiple"), 0, "image.pad_multiple"),
    (("image", "pad_multiple"), 48, "image.pad_multiple"),
    (("image", "channels"), True, "image.channels"),
    (("image", "fixed_size"), [0, 0], "image.fixed_size"),
    (("image", "fixed_size"), [10**9, 10**9], "image.fixed_size"),
    (("image", "fixed_size"), "28x28", "image.fixed_size"),
    (("rate", "levels"), 10**12, "rate.levels"),
    (("rate", "levels"), 0, "rate.levels"),
    (("rate", "lambdas"), [1.0], "rate.lambdas"),
    (("rate", "bpp_range"), ["a", "b"], "rate.bpp_range"),
    (("mean_bits",), None, None),  # absent is allowed: no manifest error, decodes
    (("mean_bits",), 10**6, "mean_bits"),
    (("files",), [], "files"),
    (("latent",), [], "latent"),
    (("format",), True, "format"),
    (("id",), 5, "id"),
])
def test_a8_a_changed_manifest_value_is_a_model_error(factorized_copy, where, value, field):
    m = _manifest(factorized_copy)
    node = m
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (factorized_copy / "manifest.json").write_text(json.dumps(m))
    if field is None:
        codec = aecodec.Codec(factorized_copy)
        assert codec.decompress(codec.compress(np.full((16, 16, 3), 9, np.uint8))).shape[0] == 16
        return
    with pytest.raises(ModelError, match=field.split(".")[-1]):
        aecodec.model.read_manifest(factorized_copy)


@pytest.mark.parametrize("where, value, match", [
    (("rate", "levels"), 3, "rate levels"),
    (("latent", "channels"), 64, "latent channels"),
])
def test_a8_manifest_values_that_disagree_with_the_tables(factorized_copy, where, value, match):
    m = _manifest(factorized_copy)
    m[where[0]][where[1]] = value
    m["rate"]["lambdas"] = m["rate"]["lambdas"][:m["rate"]["levels"]]  # consistent in itself
    (factorized_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match=match):
        aecodec.Model(factorized_copy)


def test_a8_a_bad_model_folder_is_one_error_line_in_the_cli(factorized_copy, tmp_path):
    from click.testing import CliRunner

    from aecodec.cli import main

    m = _manifest(factorized_copy)
    m["latent"]["stride"] = 0
    (factorized_copy / "manifest.json").write_text(json.dumps(m))
    Image.fromarray(np.full((16, 16, 3), 9, np.uint8)).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "--model",
                                  str(factorized_copy)])
    assert r.exit_code == 1 and r.stderr.startswith("Error:") and "stride" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "a.aec").exists()
