"""What travels beside the coded pixels: ICC profile, EXIF and the alpha plane.

The learned codec codes 8-bit gray or RGB pixels. `prepare` turns any input (a PIL image or
a uint8 array) into those pixels plus the extra sections of the stream (docs/format.md,
*Extra sections*): the EXIF orientation is applied to the pixels, so the stream holds the
upright image and EXIF travels with its orientation reset to 1. What cannot be kept (16-bit
samples, frames after the first, colour modes converted to RGB) is said in one LossWarning
per image, never silently. `attach_alpha` and `metadata` undo it on decoding.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
from PIL import Image, ImageOps

from . import alpha, container
from .errors import CorruptStreamError, ImageTooLargeError, LossWarning, UnreadableImageError

ORIENTATION = 0x0112
EXIF_PREFIX = b"Exif\x00\x00"
TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
ICC_SPACES = {"RGB": b"RGB ", "L": b"GRAY"}  # ICC data colour space (header bytes 16..19)


def prepare(
    image: np.ndarray | Image.Image, strip: bool = False
) -> tuple[np.ndarray | Image.Image, dict[str, bytes]]:
    """(pixels for the codec, extra sections by kind); warns a LossWarning for what is lost.

    `strip` leaves ICC profile, EXIF, XMP and DPI out (the orientation is applied all the
    same)."""
    if isinstance(image, Image.Image):
        pixels, extra, lost = _from_pil(image, strip)
    else:
        lost: list[str] = []
        pixels, extra = _from_array(image, lost), {}
        if isinstance(pixels, tuple):
            pixels, extra = pixels[0], {"alpha": alpha.encode(pixels[1])}
    if lost:
        warnings.warn("; ".join(lost), LossWarning, stacklevel=_caller_level())
    return pixels, {k: extra[k] for k in container.EXTRA_KINDS if k in extra}


def _from_array(a, lost: list[str]):
    """H x W x 4 / H x W x 2 arrays: (colour or gray pixels, alpha plane); samples deeper
    than 8 bits are brought to 8 by `imageio.to_uint8`'s rule first."""
    from .imageio import to_uint8

    if isinstance(a, np.ndarray) and a.dtype != np.uint8:
        a, note = to_uint8(a)
        if note:
            lost.append(note)
    if isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] in (2, 4):
        return np.ascontiguousarray(a[:, :, : a.shape[2] - 1].squeeze(2) if a.shape[2] == 2
                                    else a[:, :, :3]), a[:, :, -1]
    return a


def _from_pil(im: Image.Image, strip: bool) -> tuple[np.ndarray, dict[str, bytes], list[str]]:
    lost = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        lost.append(f"only the first of {frames} frames is kept")
    deep = im.mode.startswith("I;16") or any(
        isinstance(t.args, str) and ";16" in t.args for t in (getattr(im, "tile", None) or []))
    try:
        im.load()
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        from .imageio import plain_message

        raise UnreadableImageError(f"cannot read image ({plain_message(e)})") from None
    exif = _exif(im, lost)
    if exif is not None and exif.get(ORIENTATION, 1) != 1:
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in ("P", "PA") and im.has_transparency_data:
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode in ("RGBa", "La"):
        im, mode = im.convert(mode.upper()), mode.upper()
    plane = None
    if mode in ("RGBA", "LA"):
        plane = np.asarray(im.getchannel("A"))
        im, mode = im.convert(mode[:-1]), mode[:-1]
    if mode.startswith("I;16") or mode in ("I", "F"):  # the arrays' rule (imageio.to_uint8)
        from .imageio import to_uint8

        samples = np.asarray(im)
        pixels, note = to_uint8(samples.astype(np.uint16) if mode.startswith("I;16")
                                else samples)
        if note and not deep:  # (16-bit reduction is said below, once)
            lost.append(f"{mode} image: {note}")
    elif mode in ("1", "L", "RGB"):
        pixels = np.asarray(im.convert("L") if mode == "1" else im)
    elif mode in ("P", "RGBX"):
        pixels = np.asarray(im.convert("RGB"))
    else:
        lost.append(f"{mode} image converted to RGB")
        pixels = np.asarray(im.convert("RGB"))
    if deep:
        lost.insert(0, "16-bit samples reduced to 8 bits")
    extra: dict[str, bytes] = {} if strip else _metadata_sections(im, pixels.ndim, exif, lost)
    if plane is not None:
        extra["alpha"] = alpha.encode(plane)
    return pixels, extra, lost


def _metadata_sections(im: Image.Image, ndim: int, exif: Image.Exif | None,
                       lost: list[str]) -> dict[str, bytes]:
    """The ICC, EXIF, XMP and DPI sections of an image, each checked as a decoder checks it
    (`metadata`): a value the decoder would refuse (an ICC profile whose size field is not
    its length, UTF-16 or binary XMP, an infinite DPI, a value of the wrong type) is dropped
    and said in `lost`, so that every stream the encoder writes decodes."""
    found: dict[str, bytes] = {}
    icc = im.info.get("icc_profile")
    if icc and not isinstance(icc, bytes | bytearray):
        lost.append(f"ICC profile of type {type(icc).__name__} dropped")
    elif icc:
        space = ICC_SPACES["L" if ndim == 2 else "RGB"]
        if bytes(icc[16:20]) == space:
            found["icc"] = bytes(icc)
        else:
            lost.append(f"ICC profile for colour space {bytes(icc[16:20])!r} dropped")
    if exif is not None and ("exif" in im.info or any(t != ORIENTATION for t in exif)):
        saved = exif.get(ORIENTATION)
        if saved is not None:
            exif[ORIENTATION] = 1
        try:
            found["exif"] = exif.tobytes()
        finally:  # the caller's image keeps its own EXIF
            if saved is not None:
                exif[ORIENTATION] = saved
        if "exif" not in im.info:  # Pillow's view of a TIFF's own tags: not its layout
            found["exif"] = _without_layout(found["exif"])
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "surrogatepass")
    if xmp and not isinstance(xmp, bytes | bytearray):
        lost.append(f"XMP of type {type(xmp).__name__} dropped")
    elif xmp:
        found["xmp"] = bytes(xmp)
    dpi = im.info.get("dpi")
    if dpi is not None:
        milli = _milli_dpi(dpi)
        if milli is None:
            lost.append(f"unusable DPI {_short_repr(dpi)} dropped")
        else:
            found["dpi"] = b"".join(v.to_bytes(4, "big") for v in milli)
    for kind in list(found):
        try:
            metadata({kind: found[kind]})
        except CorruptStreamError as e:
            del found[kind]
            lost.append(f"{_LABELS[kind]} dropped ({e})")
    return found


def _without_layout(exif: bytes) -> bytes:
    """EXIF without the tags of a TIFF file's layout (its strips, size, compression): they
    describe the file it came from, point outside the EXIF block, and would make a decoder
    refuse the section (`exif_extent`) or a TIFF writer misplace the pixels."""
    from .imageio import TIFF_LAYOUT_TAGS

    parsed = Image.Exif()
    parsed.load(exif)
    for tag in TIFF_LAYOUT_TAGS:
        parsed.pop(tag, None)
    return parsed.tobytes()


_LABELS = {"icc": "ICC profile", "exif": "EXIF", "xmp": "XMP", "dpi": "DPI"}


def _milli_dpi(dpi: object) -> list[int] | None:
    """Two resolutions in thousandths of a dot per inch, each in 1 .. 2**32 - 1; None for
    anything else (NaN, infinities, strings, another count of values)."""
    import math

    try:
        values = [float(v) for v in dpi]  # type: ignore[union-attr]
    except (TypeError, ValueError, OverflowError):
        return None
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        return None
    milli = [round(v * 1000) for v in values]
    return milli if all(0 < v < 2**32 for v in milli) else None


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _exif(im: Image.Image, lost: list[str]) -> Image.Exif | None:
    """The image's EXIF (empty if none); None, said in `lost`, if Pillow cannot parse it."""
    try:
        exif = im.getexif()
        exif.tobytes()  # what will be written must be writable
        return exif
    except Exception:  # noqa: BLE001 - any parse failure of foreign metadata
        lost.append("unreadable EXIF dropped")
        return None


_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_TYPE_SIZES = np.array([_TYPE_SIZE.get(t, 1) for t in range(13)], np.int64)  # others: 1
_SUB_IFDS = (0x8769, 0x8825, 0xA005)  # Exif, GPS and interoperability directories
_BLOBS = ((0x0201, 0x0202), (0x0111, 0x0117))  # (offsets, byte counts): thumbnail data
MAX_EXIF_DIRECTORIES = 64


def exif_extent(tiff: bytes) -> int:
    """The end of the last byte an EXIF (TIFF) structure uses: its directories, their
    out-of-line values, sub-directories and thumbnail data. CorruptStreamError for offsets
    outside the block, a directory loop, or directories holding more entries together than
    the block has room for (12 bytes each: overlapping directories); what lies past the
    extent is trailing bytes.

    The cost is bounded by the block's size, whatever it holds: each directory's entries
    are checked at once (numpy over the 12-byte entries), values are read only for the
    thumbnail offsets and byte counts, and all directories together hold at most
    len(tiff) / 12 entries."""
    order = "<" if tiff[:2] == b"II" else ">"
    entry = np.dtype([("tag", order + "u2"), ("type", order + "u2"), ("count", order + "u4"),
                      ("value", order + "u4")])
    size = len(tiff)

    def u(pos: int, n: int) -> int:
        if pos < 0 or pos + n > size:
            raise CorruptStreamError("EXIF section points outside itself")
        return int.from_bytes(tiff[pos:pos + n], "little" if order == "<" else "big")

    end, todo, seen, room = 8, [u(4, 4)], set(), size // 12
    while todo:
        ifd = todo.pop()
        if ifd == 0:
            continue
        if ifd in seen or len(seen) >= MAX_EXIF_DIRECTORIES:
            raise CorruptStreamError("EXIF section's directories loop")
        seen.add(ifd)
        n = u(ifd, 2)
        room -= n
        if room < 0:
            raise CorruptStreamError("EXIF section's directories hold more entries than it "
                                     "has room for (they overlap)")
        todo.append(u(ifd + 2 + 12 * n, 4))
        end = max(end, ifd + 6 + 12 * n)
        e = np.frombuffer(tiff, entry, count=n, offset=ifd + 2)
        types = e["type"].astype(np.int64)
        sizes = np.where(types < 13, _TYPE_SIZES[np.minimum(types, 12)], 1) * e["count"]
        outside = sizes > 4
        if outside.any():
            stop = e["value"][outside].astype(np.int64) + sizes[outside]
            if int(stop.max()) > size:
                raise CorruptStreamError("EXIF section points outside itself")
            end = max(end, int(stop.max()))
        for k in np.flatnonzero(np.isin(e["tag"], _SUB_IFDS)):
            todo.append(int(e["value"][k]))
        for off_tag, len_tag in _BLOBS:
            offs = _values(tiff, e, ifd, off_tag, order)
            lens = _values(tiff, e, ifd, len_tag, order)
            k = min(len(offs), len(lens))
            if k:
                stop = offs[:k] + lens[:k]
                if int(stop.max()) > size:
                    raise CorruptStreamError("EXIF section points outside itself")
                end = max(end, int(stop.max()))
    return end


def _values(tiff: bytes, e: np.ndarray, ifd: int, tag: int, order: str) -> np.ndarray:
    """The SHORT or LONG values (at most 4096) of a directory's last entry with `tag`, as
    int64; empty if there is none (its bounds were checked with the directory's)."""
    hits = np.flatnonzero(e["tag"] == tag)
    if not hits.size:
        return np.zeros(0, np.int64)
    k = int(hits[-1])
    typ, count = int(e["type"][k]), int(e["count"][k])
    if typ not in (3, 4) or count > 4096:
        return np.zeros(0, np.int64)
    step = _TYPE_SIZE[typ]
    where = int(e["value"][k]) if step * count > 4 else ifd + 2 + 12 * k + 8
    return np.frombuffer(tiff, f"{order}u{step}", count=count, offset=where).astype(np.int64)


def metadata(extra: dict[str, bytes]) -> dict:
    """Pillow-style info (`icc_profile`, `exif`, `xmp`, `dpi`) of a stream's extra sections,
    checked: CorruptStreamError for a section that is not an ICC profile / an EXIF block /
    UTF-8 XML / two positive milli-DPI values."""
    info = {}
    icc = extra.get("icc")
    if icc is not None:
        if len(icc) < 128 or int.from_bytes(icc[:4], "big") != len(icc) or icc[36:40] != b"acsp":
            raise CorruptStreamError("ICC section is not an ICC profile")
        info["icc_profile"] = icc
    exif = extra.get("exif")
    if exif is not None:
        if exif[:6] != EXIF_PREFIX or exif[6:10] not in TIFF_HEADERS:
            raise CorruptStreamError("EXIF section is not an EXIF block")
        end = exif_extent(exif[6:]) + 6
        if len(exif) > end + 1:  # one byte of word alignment is TIFF's own padding
            raise CorruptStreamError(f"EXIF section has {len(exif) - end} bytes after its "
                                     "last directory and value")
        info["exif"] = exif
    xmp = extra.get("xmp")
    if xmp is not None:
        try:
            text = xmp.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptStreamError("XMP section is not UTF-8 text") from None
        if "<" not in text:
            raise CorruptStreamError("XMP section is not XML")
        info["xmp"] = xmp
    dpi = extra.get("dpi")
    if dpi is not None:
        if len(dpi) != 8:
            raise CorruptStreamError(f"DPI section is {len(dpi)} bytes, not 8")
        x, y = int.from_bytes(dpi[:4], "big"), int.from_bytes(dpi[4:], "big")
        if not (x and y):
            raise CorruptStreamError("DPI section holds a zero resolution")
        info["dpi"] = (x / 1000, y / 1000)
    return info


def stream_metadata(data: bytes | container.Stream) -> dict[str, bytes]:
    """`icc_profile`, `exif`, `xmp` and `dpi` of a stream (its bytes or a `container.Stream`,
    whose CRC is not checked again; no decoding)."""
    return metadata(container.parse(data).extra)


def attach_alpha(pixels: np.ndarray, data: bytes | container.Stream,
                 max_pixels: int | None = None) -> np.ndarray:
    """Decoded pixels with the stream's alpha plane appended (H x W x 4 or H x W x 2), its
    metadata checked; the pixels unchanged for a stream without alpha. `data`: the stream's
    bytes or the `container.Stream` the decode read (not parsed again)."""
    extra = container.parse(data, max_pixels).extra
    metadata(extra)
    if "alpha" not in extra:
        return pixels
    h, w = pixels.shape[:2]
    plane = alpha.decode(extra["alpha"], h, w)
    return np.dstack([pixels, plane])


def _caller_level() -> int:
    """stacklevel for warnings.warn naming the first frame outside aecodec and Pillow."""
    ours = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(Image.__file__))
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) in ours:
        level, frame = level + 1, frame.f_back
    return level
