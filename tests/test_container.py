"""The container: varints, quality codes, header layout, CRC, and its golden bytes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aecodec import container, rate
from aecodec.container import Header, pack, unpack
from aecodec.errors import CorruptStreamError, ImageTooLargeError

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**28, 2**35 - 1])
def test_varint_round_trip(value):
    data = container.write_varint(value)
    assert len(data) == max(1, -(-value.bit_length() // 7))
    assert container.read_varint(data + b"x", 0) == (value, len(data))


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff\xff\xff\xff\xff", b"\x80\x00"])
def test_varint_rejects_bad_encodings(data):
    with pytest.raises(CorruptStreamError):
        container.read_varint(data, 0)


def test_quality_codes_cover_every_tenth():
    for code in range(10, 1001):
        q = code / 10
        data = container.write_quality(q)
        assert len(data) == (1 if code % 10 == 0 else 2)
        assert container.read_quality(data, 0) == (q, len(data))
    assert rate.quantize_quality(75.04) == 75.0
    for bad in (0, 0.5, 100.1, float("nan")):
        with pytest.raises(ValueError):
            rate.quantize_quality(bad)
    with pytest.raises(ValueError):  # the container writes only recordable qualities
        container.write_quality(75.04)


@pytest.mark.parametrize("name,header,sections", make_golden.container_cases())
def test_golden_container_bytes(name, header, sections):
    data = pack(header, sections)
    assert data == (GOLDEN / name).read_bytes(), "format changed: see tests/golden/make_golden.py"
    assert unpack(data) == (header, sections)


def test_header_overhead():
    # 28x28 fixed-size single-rate model: magic 2 + version/flags 1 + id 4 + CRC 4
    assert len(pack(Header("00000000"), [b"\x01"])) - 1 == 11
    assert len(pack(Header("00000000", quality=40.0), [b"\x01"])) - 1 == 12
    # 768x512 hyperprior at quality 75 with a 300-byte z section: + 2 + 2 + 1 + 2
    data = pack(Header("00000000", 768, 512, False, 75.0), [b"\x01" * 300, b"\x02" * 9000])
    assert len(data) - 9300 == 18


def test_extras_version_3():
    """Extra sections make a version 3 stream; without them the bytes are version 1 / 2 as
    before (no byte added). Each kind at most once, in EXTRA_KINDS order."""
    base = Header("00000000", 768, 512, False, 75.0)
    plain = pack(base, [b"\x01" * 300, b"\x02" * 9000])
    header = Header("00000000", 768, 512, False, 75.0, version=3, extras=("exif", "alpha"))
    data = pack(header, [b"\x01" * 300, b"\x02" * 9000, b"E" * 10, b"A" * 20])
    # + 1 extras byte + 1 latent section count + the y length (2) and exif length (1)
    assert len(data) - len(plain) == 30 + 5
    assert unpack(data) == (header, [b"\x01" * 300, b"\x02" * 9000, b"E" * 10, b"A" * 20])
    latent, extra = container.split_extras(*unpack(data))
    assert latent == [b"\x01" * 300, b"\x02" * 9000] and extra == {"exif": b"E" * 10,
                                                                   "alpha": b"A" * 20}
    for bad in (("alpha", "exif"), ("icc", "icc"), ("thumbnail",)):
        with pytest.raises((ValueError, KeyError)):
            pack(Header("00000000", extras=bad), [b"\x01"] * (1 + len(bad)))
    with pytest.raises(ValueError):  # an untiled stream has at most two latent sections
        pack(Header("00000000", extras=("icc",)), [b"\x01"] * 4)
    raw = bytearray(data)
    raw[2 + 1 + 4 + 2 + 2 + 1] = 0x20  # an unknown extra kind (bits 0..4 are known)
    with pytest.raises(CorruptStreamError, match="unknown extra"):
        unpack(fuzz_refresh(bytes(raw)))


def fuzz_refresh(data: bytes) -> bytes:
    from aecodec.bench.fuzz import refresh_crc

    return refresh_crc(data)


@pytest.mark.parametrize("name", ["container-two.bin", "container-extras.bin",
                                  "container-tiled-alpha.bin"])
def test_every_truncation_and_bit_flip_is_refused(name):
    data = (GOLDEN / name).read_bytes()
    for n in range(len(data)):
        with pytest.raises(CorruptStreamError):
            unpack(data[:n])
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CorruptStreamError):
            unpack(bytes(flipped))


def test_foreign_and_future_streams():
    with pytest.raises(CorruptStreamError, match="magic"):
        unpack(b"\x89PNG\r\n\x1a\n" + bytes(40))
    data = bytearray(pack(Header("00000000"), [b"\x01"]))
    data[2] = (4 << 4) | (data[2] & 15)
    with pytest.raises(CorruptStreamError, match="version 4"):
        unpack(bytes(data))


def test_oversize_header_is_refused_before_decoding():
    data = pack(Header("00000000", 20000, 20000, False, 50.0), [b"\x01"])
    assert unpack(data)[0].width == 20000
    with pytest.raises(ImageTooLargeError):
        unpack(data, max_pixels=100_000_000)
    with pytest.raises(CorruptStreamError):
        unpack(pack(Header("00000000", 0, 5), [b"\x01"]))


def test_tiled_header_round_trip():
    sections = [b"\x05", b"", b"\x01\x02", b"\x07" * 300]
    data = pack(Header("0badf00d", 3000, 2000, False, 40.0, tile=64), sections)
    assert data[2] >> 4 == 2
    header, got = unpack(data)
    assert header.tile == 64 and header.version == 2 and got == sections
    with pytest.raises(CorruptStreamError):  # a tiled stream always carries its size
        unpack(data[:2] + bytes([0x20]) + data[3:])


# ---- compact profile ------------------------------------------------------------------------


@pytest.mark.parametrize("name,header,sections", make_golden.compact_container_cases())
def test_golden_compact_bytes(name, header, sections):
    data = pack(header, sections)
    assert data == (GOLDEN / name).read_bytes(), "format changed: see tests/golden/make_golden.py"
    assert unpack(data) == (header, sections)
    assert container.is_compact(data) and data[0] < 0x80 <= container.MAGIC[0]
    assert len(data) - len(sections[0]) == (3 if header.quality else 2)


def test_compact_header_is_at_most_three_bytes():
    for index, model_id in container.COMPACT_MODELS.items():
        for q in (None, 1.0, 55.0, 100.0):
            h = Header(model_id, gray=True, quality=q, profile="compact")
            data = pack(h, [b"\x09\x08"])
            assert data[0] & container.COMPACT_MAX_INDEX == index
            assert container.header_size(data) == (2 if q is None else 3)
            assert unpack(data)[0] == h


def test_compact_indices_are_stable():
    """An index, once given, names the same model forever (append-only table)."""
    assert {i: container.COMPACT_MODELS[i] for i in range(8)} == {
        0: "b42bd675", 1: "cd402773", 2: "cedc3e61", 3: "86343d3a", 4: "dd1d4aa3", 5: "8e1a5098",
        6: "4f29aa15", 7: "d94cbc00"}
    assert len(set(container.COMPACT_MODELS.values())) == len(container.COMPACT_MODELS)
    assert max(container.COMPACT_MODELS) <= container.COMPACT_MAX_INDEX


def test_compact_truncation_bit_flips_and_unknown_index():
    from aecodec.errors import UnknownModelError

    data = (GOLDEN / "container-compact-q.bin").read_bytes()
    for n in range(len(data)):
        with pytest.raises((CorruptStreamError, UnknownModelError)):
            unpack(data[:n])
    refused = 0
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            unpack(bytes(flipped))
        except (CorruptStreamError, UnknownModelError):
            refused += 1
    assert refused == len(data) * 8  # CRC-8 catches every single-bit error
    free = next(i for i in range(64) if i not in container.COMPACT_MODELS)
    intact = bytes([free]) + bytes([container.crc8(bytes([free]))])
    with pytest.raises(UnknownModelError, match=f"index {free}"):
        unpack(intact)
    with pytest.raises(CorruptStreamError, match="checksum"):  # damaged: corrupt, not unknown
        unpack(intact[:1] + bytes([intact[1] ^ 1]))
    with pytest.raises(CorruptStreamError, match="quality"):
        unpack(bytes([0x40 | 3, 100, 0]))


def test_compact_refuses_what_it_cannot_record():
    mid = container.COMPACT_MODELS[3]
    with pytest.raises(ValueError, match="no compact"):
        pack(Header("00000000", gray=True, profile="compact"), [b"\x01"])
    with pytest.raises(ValueError, match="integer"):
        pack(Header(mid, gray=True, quality=37.5, profile="compact"), [b"\x01"])
    with pytest.raises(ValueError):
        pack(Header(mid, 28, 28, True, 37.0, profile="compact"), [b"\x01"])
    assert container.compact_quality(37.5) == 38.0 and container.compact_quality(1.04) == 1.0


def test_crc8_check_value():
    # CRC-8/AUTOSAR's catalogued check value: crc("123456789") = 0xDF
    assert container.crc8(b"123456789") == 0xDF
