"""The alpha plane of an RGBA / LA image, coded losslessly beside the lossy colour pixels.

A plane is stored as a whole image file of its own: lossless WebP where WebP can hold it
(sides up to 16383 pixels), else PNG. On real RGBA images (icons, screenshots, 0.26 to 2.1
megapixels) lossless WebP (method 4) was 25 to 93 % smaller than PNG at Pillow's highest
zlib level with `optimize`; a fully opaque plane takes 54 to 126 bytes (docs/format.md).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from .errors import CorruptStreamError

WEBP_MAX_SIDE = 16383


def encode(plane: np.ndarray) -> bytes:
    """An H x W uint8 plane as lossless WebP (or PNG if a side is over WebP's limit)."""
    h, w = plane.shape
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(plane, np.uint8), "L")
    if max(h, w) <= WEBP_MAX_SIDE:
        im.save(buf, "WEBP", lossless=True, quality=100, method=4)
    else:
        im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def decode(data: bytes, height: int, width: int) -> np.ndarray:
    """The H x W plane of an alpha section; CorruptStreamError unless it is a WebP or PNG
    image of exactly the stream's size, ending where its own structure ends (no trailing
    bytes: a stream has one byte string per image)."""
    if data[:4] == b"RIFF" and len(data) >= 8:
        end = 8 + int.from_bytes(data[4:8], "little")
        end += end & 1  # RIFF chunks are padded to even sizes
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        iend = data.rfind(b"IEND")
        end = iend + 8 if iend >= 0 else len(data)  # IEND's type, then its CRC
    else:
        end = len(data)  # not WebP or PNG: Pillow refuses it below
    if len(data) != end:
        raise CorruptStreamError(f"alpha section has {len(data) - end:+d} bytes beyond its "
                                 "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["WEBP", "PNG"]) as im:
                if im.size != (width, height) or im.mode not in ("L", "RGB", "RGBA"):
                    raise CorruptStreamError(
                        f"alpha section holds a {im.size[0]}x{im.size[1]} {im.mode} image, "
                        f"not a {width}x{height} plane"
                    )
                im.load()
                plane = np.asarray(im.getchannel(0))
    except CorruptStreamError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever Pillow raises on hostile bytes
        raise CorruptStreamError(f"alpha section cannot be decoded ({e})") from None
    return plane
