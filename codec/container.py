"""The aecodec container: a few header bytes around the entropy-coded sections.

The layout is specified in docs/format.md; this module is its only implementation. It knows
nothing about models or images, only bytes, so its golden bytes never change with retraining.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .errors import CorruptStreamError, ImageTooLargeError
from .rate import quality_code

MAGIC = b"\xae\xcd"
VERSION = 1  # untiled streams
VERSION_TILED = 2  # streams coded by tiles: a tile field and a section count follow
ID_BYTES = 4
CRC_BYTES = 4
MAX_SECTIONS = 2
MAX_SIDE = 1 << 24  # larger sides are refused as corrupt whatever the pixel limit

FLAG_GRAY = 1  # the decoder returns an H x W array
FLAG_SIZE = 2  # width and height follow (else: the model's fixed size)
FLAG_QUALITY = 4  # a quality code follows (else: the model has one rate level)
FLAG_TWO_SECTIONS = 8  # two sections; the first one's length follows


# ---- LEB128 varints -------------------------------------------------------------------------


def write_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, low bits first; 0..127 take one byte."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    """Read a varint at `pos`; returns (value, next position). Refuses overlong encodings."""
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise CorruptStreamError("stream is truncated (inside a header field)")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise CorruptStreamError("non-canonical varint in header")
            return value, pos + i + 1
    raise CorruptStreamError("varint in header is too long")


# ---- quality code ---------------------------------------------------------------------------


def write_quality(quality: float) -> bytes:
    """Integer qualities take one byte (q - 1); tenths take two (100 + c // 256, c % 256).
    The quality must already be recordable (`aecodec.rate.quantize_quality`)."""
    code = quality_code(quality)  # 0..990
    if code % 10 == 0:
        return bytes([code // 10])
    return bytes([100 + (code >> 8), code & 0xFF])


def read_quality(data: bytes, pos: int) -> tuple[float, int]:
    if pos >= len(data):
        raise CorruptStreamError("stream is truncated (inside a header field)")
    b0 = data[pos]
    if b0 < 100:
        return float(b0 + 1), pos + 1
    if b0 > 103 or pos + 1 >= len(data):
        raise CorruptStreamError("invalid quality code in header")
    code = ((b0 - 100) << 8) | data[pos + 1]
    if code > 990 or code % 10 == 0:
        raise CorruptStreamError("invalid quality code in header")
    return (code + 10) / 10, pos + 2


# ---- header ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What a stream says about itself (see docs/format.md)."""

    model_id: str  # 8 hex digits, the manifest's `id`
    width: int | None = None  # None: the model's fixed size
    height: int | None = None
    gray: bool = False
    quality: float | None = None  # None: the model has one rate level
    version: int = VERSION
    tile: int | None = None  # tile side in latent units (version 2); None: untiled

    @property
    def id_bytes(self) -> bytes:
        return bytes.fromhex(self.model_id)


def pack(header: Header, sections: list[bytes]) -> bytes:
    """Header fields, section lengths (all but the last), CRC-32, then the sections."""
    tiled = header.tile is not None
    if not 1 <= len(sections) <= (len(sections) if tiled else MAX_SECTIONS):
        raise ValueError("an untiled stream has one or two sections")
    if (header.width is None) != (header.height is None):
        raise ValueError("width and height go together")
    if tiled and (header.tile < 1 or header.width is None):
        raise ValueError("a tiled stream needs a positive tile side and the image size")
    return write_stream(header, sections)


def write_stream(header: Header, sections: list[bytes]) -> bytes:
    """The stream bytes for these fields and sections, unchecked: `pack`'s writer after its
    checks, and the fuzzer's way to build hostile headers that `pack` would refuse."""
    tiled = header.tile is not None
    flags = (
        (FLAG_GRAY if header.gray else 0)
        | (FLAG_SIZE if header.width is not None else 0)
        | (FLAG_QUALITY if header.quality is not None else 0)
        | (FLAG_TWO_SECTIONS if len(sections) == 2 and not tiled else 0)
    )
    head = bytearray(MAGIC)
    head.append(((VERSION_TILED if tiled else VERSION) << 4) | flags)
    head += header.id_bytes
    if header.width is not None:
        head += write_varint(header.width) + write_varint(header.height)
    if header.quality is not None:
        head += write_quality(header.quality)
    if tiled:
        head += write_varint(header.tile) + write_varint(len(sections))
    for s in sections[:-1]:
        head += write_varint(len(s))
    payload = b"".join(sections)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return bytes(head) + crc.to_bytes(CRC_BYTES, "little") + payload


def crc_offset(data: bytes) -> int:
    """Where a stream's CRC-32 sits (after the header fields); CorruptStreamError if the
    fields cannot be read. For tools that edit streams, e.g. fuzzers."""
    return _fields(bytes(data))[1]


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, list[bytes]]:
    """Parse and check a stream; raises CorruptStreamError or ImageTooLargeError."""
    data = bytes(data)
    (header, lengths), pos = _fields(data)
    width, height = header.width, header.height
    crc = int.from_bytes(data[pos : pos + CRC_BYTES], "little")
    payload = data[pos + CRC_BYTES :]
    if zlib.crc32(payload, zlib.crc32(data[:pos])) != crc:
        raise CorruptStreamError("checksum mismatch: the stream is truncated or damaged")
    if width is not None and not (0 < width < MAX_SIDE and 0 < height < MAX_SIDE):
        raise CorruptStreamError(f"invalid image size {width}x{height} in header")
    if width is not None and max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"stream declares a {width}x{height} image, over the limit of {max_pixels} pixels"
        )
    sections = []
    start = 0
    for n in lengths:
        if start + n > len(payload):
            raise CorruptStreamError("section length runs past the end of the stream")
        sections.append(payload[start : start + n])
        start += n
    sections.append(payload[start:])
    return header, sections


def _fields(data: bytes) -> tuple[tuple[Header, list[int]], int]:
    """The header fields and section lengths, and the CRC's offset (the CRC is unchecked)."""
    if len(data) < len(MAGIC) + 1 or data[: len(MAGIC)] != MAGIC:
        raise CorruptStreamError("not an aecodec stream (bad magic bytes)")
    vf = data[len(MAGIC)]
    version, flags = vf >> 4, vf & 0x0F
    if version not in (VERSION, VERSION_TILED):
        raise CorruptStreamError(
            f"unsupported format version {version} (this reads {VERSION} and {VERSION_TILED})"
        )
    pos = len(MAGIC) + 1
    if len(data) < pos + ID_BYTES:
        raise CorruptStreamError("stream is truncated (inside the header)")
    model_id = data[pos : pos + ID_BYTES].hex()
    pos += ID_BYTES
    width = height = None
    if flags & FLAG_SIZE:
        width, pos = read_varint(data, pos)
        height, pos = read_varint(data, pos)
    quality = None
    if flags & FLAG_QUALITY:
        quality, pos = read_quality(data, pos)
    lengths = []
    tile = None
    if version == VERSION_TILED:
        if not flags & FLAG_SIZE or flags & FLAG_TWO_SECTIONS:
            raise CorruptStreamError("invalid flags for a tiled stream")
        tile, pos = read_varint(data, pos)
        count, pos = read_varint(data, pos)
        if tile < 1 or count < 1:
            raise CorruptStreamError("invalid tile field in header")
        if count - 1 > len(data) - pos:  # every length takes a byte: refuse before looping
            raise CorruptStreamError("stream is truncated (inside the header)")
        for _ in range(count - 1):
            n, pos = read_varint(data, pos)
            lengths.append(n)
    elif flags & FLAG_TWO_SECTIONS:
        n, pos = read_varint(data, pos)
        lengths.append(n)
    if len(data) < pos + CRC_BYTES:
        raise CorruptStreamError("stream is truncated (inside the header)")
    header = Header(model_id, width, height, bool(flags & FLAG_GRAY), quality, version, tile)
    return (header, lengths), pos


def read_header(data: bytes) -> Header:
    """The header fields alone, without the CRC check or sections: enough to pick a model."""
    return _fields(bytes(data))[0][0]


def header_size(data: bytes) -> int:
    """Bytes before the first section (header fields, section lengths and CRC)."""
    header, sections = unpack(data)
    return len(data) - sum(len(s) for s in sections)
