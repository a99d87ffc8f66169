"""Adapters for the classical codecs people compare against, all through Pillow plugins.

Each adapter turns a sweep setting into an encoded file (header included, so bpp is the real
file size) and back into RGB pixels. Settings are chosen so that a sweep spans roughly
0.1-2 bpp (up to ~3.5 bpp for JPEG) on photos; the BD-rate then uses the PSNR overlap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class PillowCodec:
    """A codec reached through ``Image.save(format=...)`` with fixed options plus one knob."""

    name: str
    fmt: str
    knob: str  # the parameter the sweep varies, recorded as the point's "setting"
    lo: float
    hi: float
    log: bool = False  # space settings geometrically (rates) rather than linearly
    integer: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    thread_option: str | None = None  # encoder option that takes the thread count

    @property
    def effective_threads(self) -> int:
        """Threads the encoder really uses: Pillow's JPEG/WebP/JPEG 2000 paths are single."""
        return self.threads if self.thread_option else 1

    def settings(self, points: int) -> list[float]:
        """``points`` settings from lo to hi, low rate first."""
        if points == 1:
            vals = [float(np.sqrt(self.lo * self.hi)) if self.log else (self.lo + self.hi) / 2]
        elif self.log:
            vals = list(np.geomspace(self.lo, self.hi, points))
        else:
            vals = list(np.linspace(self.lo, self.hi, points))
        return [float(round(v)) if self.integer else round(float(v), 4) for v in vals]

    def save_kwargs(self, setting: float) -> dict[str, Any]:
        kw = dict(self.options)
        if self.thread_option:
            kw[self.thread_option] = self.threads
        kw[self.knob] = int(setting) if self.integer else setting
        return kw

    def encode(self, img: np.ndarray, setting: float) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, self.fmt, **self.save_kwargs(setting))
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


@dataclass
class Jpeg2000Codec(PillowCodec):
    """OpenJPEG: the knob is a target bpp, passed as a compression ratio 24 / bpp.

    ``mct=1`` turns on the RGB->YCbCr transform; Pillow leaves it off by default (+8 % rate).
    """

    def save_kwargs(self, setting: float) -> dict[str, Any]:
        kw = dict(self.options)
        kw["quality_mode"] = "rates"
        kw["quality_layers"] = [24.0 / setting]
        return kw


def _jxl_available() -> bool:
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL plugin with Pillow)
    except ImportError:
        return False
    return True


def set_jxl_decode_threads(threads: int) -> None:
    """pillow-jxl decodes with a module-level thread count (-1 = all cores): pin it."""
    try:
        from pillow_jxl import JpegXLImagePlugin
    except ImportError:
        return
    JpegXLImagePlugin.DECODE_THREADS = threads


def classical_codecs(threads: int = 1) -> dict[str, PillowCodec]:
    """The classical adapters available in this Pillow build, keyed by CLI name."""
    from PIL import features

    codecs: dict[str, PillowCodec] = {}
    if features.check("jpg"):
        # Pillow's default chroma subsampling for JPEG is 4:2:0; optimize=False is its default.
        codecs["jpeg"] = PillowCodec("jpeg", "JPEG", "quality", 5, 95)
    if features.check("webp"):
        # Quality 5..95 like JPEG; starting at 0 adds a 0.10 bpp / 25.7 dB point on Kodak that
        # widens the PSNR overlap downwards and moves the BD-rate from -37 % to -41 %.
        codecs["webp"] = PillowCodec("webp", "WEBP", "quality", 5, 95, options={"method": 6})
    if features.check("jpg_2000"):
        codecs["jpeg2000"] = Jpeg2000Codec(
            "jpeg2000", "JPEG2000", "bpp", 0.1, 3.0, log=True, integer=False,
            options={"mct": 1, "irreversible": True},
        )
    if features.check("avif"):
        codecs["avif"] = PillowCodec(
            "avif", "AVIF", "quality", 10, 90,
            options={"speed": 4, "subsampling": "4:4:4"},
            threads=threads, thread_option="max_threads",
        )
    if _jxl_available():
        set_jxl_decode_threads(threads)
        codecs["jxl"] = PillowCodec(
            "jxl", "JXL", "quality", 5, 95, options={"effort": 7},
            threads=threads, thread_option="num_threads",
        )
    return codecs
