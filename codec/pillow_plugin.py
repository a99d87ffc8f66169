"""The `AEC` format for Pillow, registered by `import aecodec`.

    im = Image.open("photo.aec")        # size, mode and info from the header; nothing decoded
    im.load()                           # decodes (the model is found by the stream's id)
    im.save("out.aec", quality=60)      # also format="AEC", model="hyperprior", strip=True

Following Pillow's plugin conventions: an ImageFile subclass whose `_open` reads the header
only, and a Python decoder (`ImageFile.PyDecoder`) that runs the codec when the image is
loaded. `info` carries `icc_profile` and `exif` when the stream has them; the mode is L, LA,
RGB or RGBA.
"""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from . import container, extras
from .model import find_by_id

FORMAT = "AEC"
MIME = "image/x-aec"


def _accept(prefix: bytes) -> bool:
    """Full-profile streams by their magic bytes. Compact-profile streams have none (their
    first byte is a model index, and BMP's "B" and GIF's "G" are valid ones), so one is
    claimed only when no other Pillow format claims the bytes, and `_open` then requires the
    whole stream to parse (its CRC-8 included) or hands it back with SyntaxError."""
    if prefix[:2] == container.MAGIC:
        return len(prefix) > 2 and prefix[2] >> 4 in (
            container.VERSION, container.VERSION_TILED, container.VERSION_EXTRAS)
    if not prefix or prefix[0] & 0x80 or (
            prefix[0] & container.COMPACT_MAX_INDEX) not in container.COMPACT_MODELS:
        return False
    return not _claimed_elsewhere(prefix)


def _claimed_elsewhere(prefix: bytes) -> bool:
    """Whether any other registered Pillow format accepts these first bytes."""
    Image.init()  # every plugin registered, so none is tried after a compact guess
    for fmt in list(Image.ID):
        accept = Image.OPEN[fmt][1] if fmt != FORMAT else None
        try:
            if accept is not None and accept(prefix):
                return True
        except Exception:  # noqa: BLE001 - another plugin's check failing is not a claim
            continue
    return False


def _one_channel(model_id: str) -> bool:
    """Whether the stream's model codes gray only (unknown models: decided at load)."""
    from .errors import ModelError

    try:
        return find_by_id(model_id).channels == 1
    except ModelError:
        return False


def _compact_guess(data: bytes) -> container.Stream:
    """A compact-profile stream guessed from content (it has no magic bytes), claimed only
    when it is short enough to be one (`container.COMPACT_MAX_BYTES`: nothing longer is ever
    read), parses with its CRC-8, entropy-decodes to the canonical payload, and no other
    Pillow format opens it (TGA, say, has no accept function to claim its files by);
    SyntaxError otherwise, so Pillow goes on to the other formats."""
    from .codec import get_codec
    from .errors import AecodecError

    if len(data) > container.COMPACT_MAX_BYTES:
        raise SyntaxError("not an aecodec stream (no magic bytes, and longer than a "
                          "compact-profile stream can be)")
    try:
        stream = container.parse(data)
        get_codec(find_by_id(stream.header.model_id)).decode_latents(stream)
    except AecodecError as e:
        raise SyntaxError(f"not an aecodec compact-profile stream ({e})") from None
    if _opened_elsewhere(data):
        raise SyntaxError("not an aecodec stream: another image format opens these bytes")
    return stream


def _opened_elsewhere(data: bytes) -> bool:
    """Whether any other registered Pillow format opens these bytes."""
    import io
    import warnings

    others = [fmt for fmt in Image.ID if fmt != FORMAT]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.open(io.BytesIO(data), formats=others).close()
    except Exception:  # noqa: BLE001 - UnidentifiedImageError, or a plugin's own failure
        return False
    return True


class AecImageFile(ImageFile.ImageFile):
    """An aecodec stream opened by Pillow: the header is parsed (and the CRC checked) on
    open, the image decoded on load."""

    format = FORMAT
    format_description = "aecodec learned image codec stream"

    def _open(self) -> None:
        assert self.fp is not None
        # aecodec's own limit applies before Pillow allocates anything, even where a pipeline
        # sets Image.MAX_IMAGE_PIXELS = None (Image.open still runs Pillow's bomb check after)
        from .codec import default_max_pixels

        head = self.fp.read(len(container.MAGIC))
        if head == container.MAGIC:
            # corrupt streams raise CorruptStreamError (an AecodecError) rather than
            # SyntaxError: the magic bytes matched, so the caller gets the real reason
            stream = container.parse(head + self.fp.read(), default_max_pixels())
        else:  # no magic bytes: a bounded read, and ours only if it decodes and nothing else
            stream = _compact_guess(head + self.fp.read(container.COMPACT_MAX_BYTES))
        header = stream.header
        if header.width is None:
            h, w = find_by_id(header.model_id).fixed_size or (0, 0)
        else:
            h, w = header.height, header.width
        self._size = (w, h)
        base = "L" if header.gray or _one_channel(header.model_id) else "RGB"
        self._mode = base + "A" if "alpha" in header.extras else base
        self.info.update(extras.metadata(stream.extra))
        self.info["aecodec"] = {"model_id": header.model_id, "quality": header.quality,
                                "version": header.version}
        self.tile = [ImageFile._Tile(FORMAT, (0, 0, w, h), 0, (stream,))]


class AecDecoder(ImageFile.PyDecoder):
    """Decodes a whole stream at once (the codec is not incremental): the `container.Stream`
    that `_open` parsed (the tile's args), so the bytes are not parsed again."""

    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        from .codec import decompress

        assert self.fd is not None
        from .errors import CorruptStreamError

        stream = self.args[0] if self.args else self.fd.read()
        pixels = decompress(stream)
        bands = len(self.mode)
        if pixels.shape[:2] != (self.state.ysize, self.state.xsize) or (
                pixels.shape[2] if pixels.ndim == 3 else 1) != bands:
            raise CorruptStreamError(f"decoded {pixels.shape} differs from the header's "
                                     f"{self.state.xsize}x{self.state.ysize} {self.mode}")
        self.set_as_raw(pixels.tobytes(), self.mode)
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """`quality` (default 75) or `bpp` (the highest quality within that many bits per pixel),
    `model` (name, folder or None for the default), `strip`
    (leave out ICC and EXIF), `effort` (0..4, docs/effort.md); `icc_profile` / `exif`
    override the image's own."""
    from .codec import DEFAULT_QUALITY, get_codec

    info = im.encoderinfo
    if "icc_profile" in info or "exif" in info:
        im = im.copy()
        for key in ("icc_profile", "exif"):
            value = info.get(key, im.info.get(key))
            if isinstance(value, Image.Exif):
                value = value.tobytes()
            if value:
                im.info[key] = value
            else:
                im.info.pop(key, None)
    codec = get_codec(info.get("model"))
    strip = bool(info.get("strip"))
    effort = info.get("effort", 0)
    if info.get("bpp") is not None:
        if info.get("quality") is not None:
            raise ValueError("give either quality or bpp, not both")
        fp.write(codec.encode_to_bpp(im, float(info["bpp"]), strip, effort).data)
        return
    fp.write(codec.compress(im, info.get("quality", DEFAULT_QUALITY), strip, effort))


def register() -> None:
    Image.register_open(FORMAT, AecImageFile, _accept)
    Image.register_decoder(FORMAT, AecDecoder)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".aec")
    Image.register_mime(FORMAT, MIME)


register()
