"""The aecodec container: a few header bytes around the entropy-coded sections.

The layout is specified in docs/format.md; this module is its only implementation. It knows
nothing about models or images, only bytes, so its golden bytes never change with retraining.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import CorruptStreamError, ImageTooLargeError, UnknownModelError
from .rate import quality_code, quantize_quality

if TYPE_CHECKING:  # annotations only: the container itself handles bytes
    import numpy as np

    from .entropy import TableSet

MAGIC = b"\xae\xcd"
VERSION = 1  # untiled streams
VERSION_TILED = 2  # streams coded by tiles: a tile field and a section count follow
VERSION_EXTRAS = 3  # streams with extra sections (ICC, EXIF, alpha), tiled or not
ID_BYTES = 4
CRC_BYTES = 4
MAX_SECTIONS = 2
MAX_SIDE = 1 << 24  # larger sides are refused as corrupt whatever the pixel limit

FLAG_GRAY = 1  # the decoder returns an H x W array
FLAG_SIZE = 2  # width and height follow (else: the model's fixed size)
FLAG_QUALITY = 4  # a quality code follows (else: the model has one rate level)
FLAG_TWO_SECTIONS = 8  # two sections; the first one's length follows (version 1)
MIN_TILE = 4  # tile sides are multiples of this many latents (docs/format.md, Tiles)
FLAG_TILED = 8  # version 3: a tile field follows (the bit that is FLAG_TWO_SECTIONS in v1)

# Extra sections of a version 3 stream, in their order in the stream, with their bit in the
# extras byte. Their content is defined in docs/format.md (Extra sections) and codec/extras.py.
EXTRA_KINDS = ("icc", "exif", "alpha", "xmp", "dpi")
EXTRA_BITS = {kind: 1 << i for i, kind in enumerate(EXTRA_KINDS)}

# ---- compact profile (fixed-size grayscale models, docs/format.md "Compact profile") --------
# First byte 0b0Qiiiiii: bit 7 clear (a full header starts with 0xAE, bit 7 set), Q = a quality
# byte follows, i = the model's index below. Indices are stable: an entry is never changed or
# reused; a retrained model gets a new one.
COMPACT_MODELS: dict[int, str] = {
    0: "b42bd675",  # mnist-dense 1.0.0
    1: "cd402773",  # mnist-deep 1.0.0
    2: "cedc3e61",  # mnist-sparse 1.0.0
    3: "86343d3a",  # mnist-conv 1.0.0
    4: "dd1d4aa3",  # mnist-denoise 1.0.0
    5: "8e1a5098",  # mnist-vae 1.0.0
    6: "4f29aa15",  # mnist-rd 1.0.0
    7: "d94cbc00",  # mnist-rd-hq 1.0.0
}
COMPACT_FLAG_QUALITY = 0x40
# the longest compact stream: 3 header bytes and the longest payload a shipped compact model's
# latents can have (mnist-rd-hq: 256 latents, 2,529 bytes), with room for future models; a
# reader that guesses the profile from content (Pillow) reads no further than this
COMPACT_MAX_BYTES = 4096
COMPACT_MAX_INDEX = 0x3F
PROFILES = ("full", "compact")  # the names; the objects: FULL, COMPACT (`profile`)


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
    extras: tuple[str, ...] = ()  # kinds of the extra sections (version 3), EXTRA_KINDS order
    profile: str = "full"  # "compact": 1-3 byte header, one byte-coded section

    @property
    def id_bytes(self) -> bytes:
        return bytes.fromhex(self.model_id)

    @property
    def compact(self) -> bool:
        return self.profile == "compact"

    @property
    def stream_profile(self) -> StreamProfile:
        """The profile object of `profile` (FULL or COMPACT)."""
        return profile(self.profile)


def pack(header: Header, sections: list[bytes]) -> bytes:
    """Header fields, section lengths (all but the last), CRC-32, then the sections.

    `sections` are the latent sections followed by one section per kind in `header.extras`.
    Without extras the stream is version 1 (untiled) or 2 (tiled), byte for byte as before;
    with extras it is version 3. A compact header (`profile="compact"`) is written instead for
    the fixed-size models that have a compact index: the header's profile writes it."""
    return header.stream_profile.pack(header, sections)


def _pack_full(header: Header, sections: list[bytes]) -> bytes:
    """`pack` for the full profile: its checks, then `write_stream`."""
    tiled = header.tile is not None
    extras = tuple(header.extras)
    if extras and (extras != tuple(k for k in EXTRA_KINDS if k in extras)):
        raise ValueError(f"extras must be distinct kinds of {EXTRA_KINDS}, in that order")
    latent = len(sections) - len(extras)
    if not 1 <= latent <= (latent if tiled else MAX_SECTIONS):
        raise ValueError("an untiled stream has one or two latent sections")
    if (header.width is None) != (header.height is None):
        raise ValueError("width and height go together")
    if tiled and (header.tile < 1 or header.width is None):
        raise ValueError("a tiled stream needs a positive tile side and the image size")
    return write_stream(header, sections)


def write_stream(header: Header, sections: list[bytes]) -> bytes:
    """The stream bytes for these fields and sections, unchecked: `pack`'s writer after its
    checks, and the fuzzer's way to build hostile headers that `pack` would refuse."""
    tiled = header.tile is not None
    extras = tuple(header.extras)
    latent = len(sections) - len(extras)
    flags = (
        (FLAG_GRAY if header.gray else 0)
        | (FLAG_SIZE if header.width is not None else 0)
        | (FLAG_QUALITY if header.quality is not None else 0)
    )
    if extras:
        version, flags = VERSION_EXTRAS, flags | (FLAG_TILED if tiled else 0)
    elif tiled:
        version = VERSION_TILED
    else:
        version, flags = VERSION, flags | (FLAG_TWO_SECTIONS if latent == 2 else 0)
    head = bytearray(MAGIC)
    head.append((version << 4) | flags)
    head += header.id_bytes
    if header.width is not None:
        head += write_varint(header.width) + write_varint(header.height)
    if header.quality is not None:
        head += write_quality(header.quality)
    if tiled:
        head += write_varint(header.tile)
    if extras:
        head.append(sum(EXTRA_BITS[k] for k in extras))
    if tiled or extras:
        head += write_varint(latent)
    for s in sections[:-1]:
        head += write_varint(len(s))
    payload = b"".join(sections)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return bytes(head) + crc.to_bytes(CRC_BYTES, "little") + payload


def split_extras(header: Header, sections: list[bytes]) -> tuple[list[bytes], dict[str, bytes]]:
    """The latent sections of an unpacked stream, and its extra sections by kind."""
    n = len(sections) - len(header.extras)
    return sections[:n], dict(zip(header.extras, sections[n:], strict=True))


def crc_offset(data: bytes) -> int:
    """Where a stream's CRC-32 (compact profile: CRC-8) sits; CorruptStreamError if the
    fields cannot be read. For tools that edit streams, e.g. fuzzers."""
    data = bytes(data)
    return sniff(data).crc_offset(data)


def is_compact(data: bytes) -> bool:
    """Whether a stream uses the compact profile (first byte below 0x80)."""
    return len(data) > 0 and data[0] < 0x80


def verify_crc(data: bytes, at: int, compact: bool) -> None:
    """The one CRC check of a stream (CRC-32 at `at`, or the compact profile's CRC-8): every
    byte before it and the whole payload. A `Stream` calls it once, however many readers."""
    if compact:
        ok = crc8(data[at + 1 :], crc8(data[:at]) ^ 0xFF) == data[at]
    else:
        crc = int.from_bytes(data[at : at + CRC_BYTES], "little")
        ok = zlib.crc32(data[at + CRC_BYTES :], zlib.crc32(data[:at])) == crc
    if not ok:
        raise CorruptStreamError("checksum mismatch: the stream is truncated or damaged")


class Stream:
    """One stream's bytes read once: header fields, section framing, the CRC checked once.

    `read` gives the header fields (enough to pick a model; a compact stream is checked whole,
    so damage is never an unknown model); `check` then verifies the CRC (once per object), the
    size limits and the section lengths. Every reader (the codec's decode, `decompress`, the
    extras' metadata and alpha, the Pillow plugin) takes a Stream or builds one, so a decode
    parses the bytes once however many readers look at them."""

    __slots__ = ("data", "header", "_lengths", "_crc_at", "_sections")

    def __init__(self, data: bytes, header: Header, lengths: list[int], crc_at: int,
                 sections: tuple[bytes, ...] | None = None):
        self.data = data
        self.header = header
        self._lengths = lengths
        self._crc_at = crc_at  # the CRC-32 (compact: CRC-8) offset
        self._sections = sections  # set once the CRC has been checked

    @property
    def checked(self) -> bool:
        return self._sections is not None

    def check(self, max_pixels: int | None = None) -> Stream:
        """Verify the CRC (the first time only), the declared size against MAX_SIDE and
        `max_pixels`, and the section lengths; returns self. CorruptStreamError or
        ImageTooLargeError, as `unpack`."""
        header = self.header
        if self._sections is None:  # (a compact stream is checked whole when read)
            verify_crc(self.data, self._crc_at, False)
        width, height = header.width, header.height
        if width is not None and not (0 < width < MAX_SIDE and 0 < height < MAX_SIDE):
            raise CorruptStreamError(f"invalid image size {width}x{height} in header")
        if width is not None and max_pixels is not None and width * height > max_pixels:
            raise ImageTooLargeError(
                f"stream declares a {width}x{height} image, over the limit of {max_pixels} "
                "pixels")
        if self._sections is None:
            self._sections = _split(self.data[self._crc_at + CRC_BYTES :], self._lengths)
        return self

    @property
    def sections(self) -> list[bytes]:
        """Every section, latent then extra (the stream must be checked)."""
        if self._sections is None:
            raise RuntimeError("Stream.check() first: the sections are unchecked")
        return list(self._sections)

    @property
    def latent(self) -> list[bytes]:
        """The latent sections (those the latent codec reads)."""
        return split_extras(self.header, self.sections)[0]

    @property
    def extra(self) -> dict[str, bytes]:
        """The extra sections by kind (ICC, EXIF, alpha, XMP, DPI)."""
        return split_extras(self.header, self.sections)[1]

    @property
    def header_bytes(self) -> int:
        """Bytes before the first section (header fields, section lengths and CRC)."""
        return len(self.data) - sum(len(s) for s in self.sections)


def _split(payload: bytes, lengths: list[int]) -> tuple[bytes, ...]:
    """The payload cut at the section lengths; the last section takes the rest."""
    sections = []
    start = 0
    for n in lengths:
        if start + n > len(payload):
            raise CorruptStreamError("section length runs past the end of the stream")
        sections.append(payload[start : start + n])
        start += n
    sections.append(payload[start:])
    return tuple(sections)


def read(data: bytes | Stream) -> Stream:
    """The header fields of a stream, unchecked (the compact profile: checked whole, CRC-8
    first, then the index resolved); a Stream is returned as it is."""
    if isinstance(data, Stream):
        return data
    data = bytes(data)
    return sniff(data).read(data)


def _read_full(data: bytes) -> Stream:
    (header, lengths), pos = _fields(data)
    return Stream(data, header, lengths, pos)


def parse(data: bytes | Stream, max_pixels: int | None = None) -> Stream:
    """A stream read and checked (`read`, then `Stream.check`): a Stream given is checked
    without its CRC being verified again."""
    return read(data).check(max_pixels)


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, list[bytes]]:
    """Parse and check a stream (either profile); raises CorruptStreamError,
    ImageTooLargeError, or UnknownModelError (a compact index no model has)."""
    stream = parse(data, max_pixels)
    return stream.header, stream.sections


def _fields(data: bytes) -> tuple[tuple[Header, list[int]], int]:
    """The header fields and section lengths, and the CRC's offset (the CRC is unchecked)."""
    if len(data) < len(MAGIC) + 1 or data[: len(MAGIC)] != MAGIC:
        raise CorruptStreamError("not an aecodec stream (bad magic bytes)")
    vf = data[len(MAGIC)]
    version, flags = vf >> 4, vf & 0x0F
    if version not in (VERSION, VERSION_TILED, VERSION_EXTRAS):
        raise CorruptStreamError(
            f"unsupported format version {version} "
            f"(this reads {VERSION}, {VERSION_TILED} and {VERSION_EXTRAS})"
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
    extras: tuple[str, ...] = ()
    tiled = version == VERSION_TILED or (version == VERSION_EXTRAS and flags & FLAG_TILED)
    if version == VERSION_TILED and (not flags & FLAG_SIZE or flags & FLAG_TWO_SECTIONS):
        raise CorruptStreamError("invalid flags for a tiled stream")
    if tiled:
        if not flags & FLAG_SIZE:
            raise CorruptStreamError("invalid flags for a tiled stream")
        tile, pos = read_varint(data, pos)
    if version == VERSION_EXTRAS:
        if pos >= len(data):
            raise CorruptStreamError("stream is truncated (inside a header field)")
        bits = data[pos]
        pos += 1
        if bits >> len(EXTRA_KINDS):
            raise CorruptStreamError(f"unknown extra sections (bits {bits:#04x}) in header")
        extras = tuple(k for k in EXTRA_KINDS if bits & EXTRA_BITS[k])
    if tiled or version == VERSION_EXTRAS:
        count, pos = read_varint(data, pos)
        if tiled and (tile < 1 or count < 1):  # (version 2's check and message, unchanged)
            raise CorruptStreamError("invalid tile field in header")
        if tiled and tile % MIN_TILE:  # every family: a positive multiple of 4 latents
            raise CorruptStreamError(f"tile side {tile} is not a multiple of {MIN_TILE} "
                                     "latents")
        if count < 1 or (not tiled and count > MAX_SECTIONS):
            raise CorruptStreamError("invalid section count in header")
        count += len(extras)
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
    header = Header(model_id, width, height, bool(flags & FLAG_GRAY), quality, version, tile,
                    extras)
    return (header, lengths), pos


def read_header(data: bytes) -> Header:
    """The header fields alone, without the CRC check or sections: enough to pick a model."""
    return read(data).header


def header_size(data: bytes) -> int:
    """Bytes before the first section (header fields, section lengths and CRC)."""
    return parse(data).header_bytes


# ---- compact profile ------------------------------------------------------------------------


def compact_index(model_id: str) -> int | None:
    """A model id's compact-profile index, or None if it has none."""
    for index, mid in COMPACT_MODELS.items():
        if mid == model_id:
            return index
    return None


def compact_quality(quality: float) -> float:
    """The quality a compact stream can record: an integer in [1, 100]."""
    return float(round(quantize_quality(quality)))


def crc8(data: bytes, crc: int = 0xFF) -> int:
    """CRC-8/AUTOSAR (polynomial 0x2F, init 0xFF, final xor 0xFF, not reflected)."""
    for b in data:
        crc = _CRC8_TABLE[crc ^ b]
    return crc ^ 0xFF


def _crc8_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x2F) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC8_TABLE = _crc8_table()


def _pack_compact(header: Header, sections: list[bytes]) -> bytes:
    """Index byte, quality byte (if any), CRC-8 of those and the payload, one section."""
    index = compact_index(header.model_id)
    if index is None:
        raise ValueError(f"model id {header.model_id} has no compact-profile index")
    if len(sections) != 1 or header.width is not None or header.tile is not None:
        raise ValueError("a compact stream has one section and the model's fixed size")
    if not header.gray:
        raise ValueError("compact streams are grayscale")
    head = bytearray([index | (COMPACT_FLAG_QUALITY if header.quality is not None else 0)])
    if header.quality is not None:
        q = float(header.quality)
        if q != round(q) or not 1 <= q <= 100:
            raise ValueError("a compact stream records an integer quality in [1, 100]")
        head.append(int(q) - 1)
    payload = sections[0]
    return bytes(head) + bytes([crc8(payload, crc8(head) ^ 0xFF)]) + payload


def _compact_fields(data: bytes) -> tuple[tuple[int, float | None], int]:
    """The compact header's (index, quality) and its CRC-8's offset (nothing checked yet)."""
    b0 = data[0]
    pos = 1
    quality = None
    if b0 & COMPACT_FLAG_QUALITY:
        if len(data) < 2:
            raise CorruptStreamError("stream is truncated (inside the header)")
        if data[1] > 99:
            raise CorruptStreamError("invalid quality code in header")
        quality = float(data[1] + 1)
        pos = 2
    if len(data) < pos + 1:
        raise CorruptStreamError("stream is truncated (inside the header)")
    return (b0 & COMPACT_MAX_INDEX, quality), pos


def _read_compact(data: bytes) -> Stream:
    """The CRC is checked before the index: a damaged stream is corrupt, and only an intact
    one naming an index this version lacks (a newer model) is an unknown model. A compact
    stream is a few bytes: it is checked whole here, its one section included."""
    if len(data) > COMPACT_MAX_BYTES:
        raise CorruptStreamError(f"compact stream is over {COMPACT_MAX_BYTES} bytes")
    (index, quality), pos = _compact_fields(data)
    verify_crc(data, pos, True)
    model_id = COMPACT_MODELS.get(index)
    if model_id is None:
        raise UnknownModelError(
            f"compact stream names model index {index}, which no model of this version has"
        )
    header = Header(model_id, None, None, True, quality, VERSION, profile="compact")
    return Stream(data, header, [], pos, (data[pos + 1 :],))


# ---- stream profiles ------------------------------------------------------------------------


class StreamProfile:
    """A stream profile: which header the container writes and reads, which quality it can
    record, and which coder codes the latent sections (docs/format.md). The container and the
    latent codecs consult it instead of a `compact` flag; a latent codec lists the profiles it
    codes (`LatentCodec.profiles`)."""

    name = ""

    def __repr__(self) -> str:
        return f"<stream profile {self.name}>"

    def carries(self, model_id: str) -> bool:
        """Whether streams of this model can have this profile."""
        return True

    def quality(self, quality: float) -> float:
        """The quality the header records for a requested one."""
        return quantize_quality(quality)

    def pack(self, header: Header, sections: list[bytes]) -> bytes:
        return _pack_full(header, sections)

    def read(self, data: bytes) -> Stream:
        return _read_full(data)

    def crc_offset(self, data: bytes) -> int:
        return _fields(data)[1]

    def encode(self, tables: TableSet, symbols: np.ndarray, index: np.ndarray) -> bytes:
        """One latent section of symbols under tables `index` (a `TableSet`): ANS."""
        return tables.encode(symbols, index)

    def decode(self, tables: TableSet, data: bytes, index: np.ndarray) -> np.ndarray:
        return tables.decode(data, index)

    def check_room(self, tables: TableSet, sections: list[bytes], counts: np.ndarray) -> None:
        """Refuse sections too short for the symbols they declare, before decoding any (the
        per-stream bound of docs/format.md, Tiles)."""
        tables.check_stream_room(sections, counts)


class CompactProfile(StreamProfile):
    """1-3 header bytes, CRC-8, one section coded by the exact byte coder (bytecoder.py)."""

    name = "compact"

    def carries(self, model_id: str) -> bool:
        return compact_index(model_id) is not None

    def quality(self, quality: float) -> float:
        return compact_quality(quality)

    def pack(self, header: Header, sections: list[bytes]) -> bytes:
        return _pack_compact(header, sections)

    def read(self, data: bytes) -> Stream:
        return _read_compact(data)

    def crc_offset(self, data: bytes) -> int:
        return _compact_fields(data)[1]

    def encode(self, tables: TableSet, symbols: np.ndarray, index: np.ndarray) -> bytes:
        return tables.encode_bytes(symbols, index)

    def decode(self, tables: TableSet, data: bytes, index: np.ndarray) -> np.ndarray:
        return tables.decode_bytes(data, index)

    def check_room(self, tables: TableSet, sections: list[bytes], counts: np.ndarray) -> None:
        """Nothing before decoding: the byte coder refuses a payload longer than any coding of
        its symbols could be, and any non-canonical one."""


class FullProfile(StreamProfile):
    """The `AE CD` header, CRC-32, sections coded by ANS (constriction)."""

    name = "full"


FULL = FullProfile()
COMPACT = CompactProfile()
_PROFILES = {p.name: p for p in (FULL, COMPACT)}


def profile(name: str | StreamProfile) -> StreamProfile:
    """The profile object of a name in PROFILES (a profile object is returned as it is)."""
    if isinstance(name, StreamProfile):
        return name
    try:
        return _PROFILES[name]
    except (KeyError, TypeError):
        raise ValueError(f"profile must be one of {PROFILES}, got {name!r}") from None


def sniff(data: bytes) -> StreamProfile:
    """The profile of a stream's bytes, by its first byte (docs/format.md)."""
    return COMPACT if is_compact(data) else FULL
