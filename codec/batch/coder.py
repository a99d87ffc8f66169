"""The coder of one file's bytes: what a worker process, a Ray actor and `aecodec.ray`'s
Ray Data classes share, so all of them write the same streams as `aecodec compress`.

No filesystem decisions here (which files, where, whether to overwrite): `Coder` turns input
bytes (or an array, or a path) into output bytes, and its `Settings` travel to other processes,
so both are picklable.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .. import container
from ..container import Stream
from ..errors import AecodecError
from .fileio import read

Mode = Literal["compress", "decompress"]


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to open its model and code one file (picklable)."""

    mode: Mode
    model: str | None = None  # name or folder; None: the default (compress) or by stream id
    quality: float | None = None
    bpp: float | None = None
    threads: int | None = None  # ONNX Runtime threads per worker
    force: bool = False
    strip: bool = False  # compress: leave out ICC profile, EXIF, XMP and DPI
    profile: str = "full"  # compress: "compact" for the fixed-size digit models
    strict_bpp: bool = False  # compress: a --bpp target that cannot be met fails the file
    fmt: str | None = None  # decompress: output format (default: from the name, else PNG)
    out_quality: int | None = None  # decompress: lossy outputs' quality (imageio's default)
    effort: int = 0  # compress: encoder-side optimisation level (docs/effort.md)


@dataclass(frozen=True)
class Coded:
    """One coded file: its output bytes, pixel count and (compress) the quality chosen."""

    data: bytes
    pixels: int
    width: int
    height: int
    quality: float | None = None
    notes: tuple[str, ...] = ()  # what the image lost on the way (LossWarning messages)


class Coder:
    """One worker's open model(s): codes file bytes (or arrays) to output bytes.

    Compression opens its model at once; decompression opens each stream's model (by its id,
    or `settings.model`) on first use and keeps it.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.mode == "compress":
            self._codec(settings.model)

    def _codec(self, model):
        from ..codec import get_codec

        return get_codec(model, self.settings.threads, self.settings.profile)

    def encode(self, image: np.ndarray | bytes | str):
        """An image array, image file bytes or path -> `Encoded` (quality or bpp target).
        Files are opened, not decoded, here: alpha, ICC, EXIF and bit depth reach the codec."""
        from ..codec import DEFAULT_QUALITY
        from ..errors import LossWarning, RateWarning
        from ..imageio import open_image

        s = self.settings
        if isinstance(image, str):
            image = read(image)
        if isinstance(image, bytes):
            image = open_image(image)
        if getattr(image, "format", None) == "AEC":
            warnings.warn("the input is itself an aecodec stream: decoded and coded again, "
                          "losing quality a second time (decompress it instead?)", LossWarning,
                          stacklevel=2)
        codec = self._codec(s.model)
        if s.bpp is None:
            return codec.encode(image, DEFAULT_QUALITY if s.quality is None else s.quality,
                                s.strip, s.effort)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            enc = codec.encode_to_bpp(image, s.bpp, s.strip, s.effort)
        for w in caught:
            if not issubclass(w.category, RateWarning):
                warnings.warn(w.message, stacklevel=2)
            elif s.strict_bpp:
                raise AecodecError(f"{w.message} (--strict-bpp: nothing written)")
            else:
                warnings.warn(str(w.message), LossWarning, stacklevel=2)
        return enc

    def decode(self, data: bytes | Stream) -> np.ndarray:
        """A stream -> pixels, with the model it names unless one was given (the API's lookup,
        which keeps the codec open)."""
        from ..codec import decompress

        return decompress(data, self.settings.model, self.settings.threads)

    def transform(self, source: bytes | str, fmt: str = "PNG") -> Coded:
        """Input file bytes (or a path, for images) -> the output file's bytes."""
        from ..extras import stream_metadata
        from ..imageio import encode_image

        compress = self.settings.mode == "compress"
        with loss_notes() as notes:  # filled when the block ends
            if compress:
                enc = self.encode(source)
            else:
                data = Path(source).read_bytes() if isinstance(source, str) else source
                stream = container.read(data)  # parsed once, for the pixels and the metadata
                pixels = self.decode(stream)
                out = encode_image(pixels, fmt, stream_metadata(stream),
                                   self.settings.out_quality)
        if compress:
            h, w = enc.height, enc.width
            return Coded(enc.data, h * w, w, h, enc.quality, tuple(notes))
        h, w = pixels.shape[:2]
        return Coded(out, h * w, w, h, notes=tuple(notes))

    def try_transform(self, source: bytes | str, fmt: str = "PNG") -> tuple[Coded | None, str]:
        """`transform`, with a bad input's error as a message (for remote callers)."""
        try:
            return self.transform(source, fmt), ""
        except (AecodecError, OSError) as e:
            return None, error_text(e)


@contextmanager
def loss_notes() -> Iterator[list[str]]:
    """Collect the LossWarnings raised inside (what an image loses on the way) as messages,
    so the CLI can say them once per file from any process; other warnings pass on."""
    from ..errors import LossWarning

    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossWarning)
        try:
            yield notes
        finally:
            notes += [str(w.message) for w in caught if issubclass(w.category, LossWarning)]
    for w in caught:
        if not issubclass(w.category, LossWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def error_text(e: BaseException) -> str:
    """One line for a failed file: a bad input's own message, else the exception's kind."""
    if isinstance(e, AecodecError | FileExistsError):
        return str(e)
    if isinstance(e, OSError):
        return str(e.strerror or e)
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"  # not a bad input: a bug, memory, a lost worker
