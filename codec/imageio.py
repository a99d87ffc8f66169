"""Images in and out: files, PIL images and numpy arrays, checked before any model sees them."""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageTooLargeError, LossWarning, UnreadableImageError, UnsupportedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".pnm", ".gif", ".tga"}
# the stream's metadata each output format gets (checked by reading them back: Pillow's JPEG XL
# plugin drops an ICC profile given to it)
METADATA_FORMATS = {
    "PNG": ("icc_profile", "exif", "xmp", "dpi"),
    "JPEG": ("icc_profile", "exif", "xmp", "dpi"),
    "WEBP": ("icc_profile", "exif", "xmp"),
    "AVIF": ("icc_profile", "exif", "xmp"),
    "TIFF": ("icc_profile", "exif", "dpi"),
    "JXL": ("exif",),
}
LOSSY_FORMATS = {"JPEG", "WEBP", "AVIF", "JXL"}
DEFAULT_OUTPUT_QUALITY = 95  # lossy outputs of decompress: well above the stream's own loss
FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "AVIF": ".avif", "JXL": ".jxl",
                 "TIFF": ".tif", "BMP": ".bmp"}
JPEG_MAX_EXIF = 65533  # one APP1 segment
JPEG_XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"  # before the packet in its segment
JPEG_MAX_ICC = 255 * (65533 - 14)  # ICC_PROFILE segments: 255 of them at most


def open_image(source: str | Path | bytes) -> Image.Image:
    """Open an image file (path or its bytes) without decoding its pixels, so that the encoder
    (codec/extras.py) sees its bit depth, frames, alpha and metadata."""
    name = "" if isinstance(source, bytes) else f"{source}: "  # the caller names bytes
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{name}{e}") from None
    except UnidentifiedImageError:
        raise UnreadableImageError(f"{name}cannot read image (not an image format Pillow "
                                   "reads)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UnreadableImageError(f"{name}cannot read image ({plain_message(e)})") from None


def plain_message(e: BaseException) -> str:
    """An exception's message without Python object reprs (`<_io.BytesIO object at 0x..>`)."""
    import re

    text = str(getattr(e, "strerror", None) or e)
    return re.sub(r"\s*<[\w.]+ object at 0x[0-9a-f]+>", "", text).strip() or type(e).__name__


def read_image(source: str | Path | bytes) -> np.ndarray:
    """Decode an image file (path or its bytes) to H x W (grayscale) or H x W x 3 uint8."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im.load()
            return pil_to_array(im)
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{name}: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UnreadableImageError(f"{name}: cannot read image ({plain_message(e)})") from None


def pil_to_array(im: Image.Image) -> np.ndarray:
    """Grayscale modes become H x W, everything else H x W x 3 (alpha is dropped)."""
    gray = im.mode in ("1", "L", "LA", "I", "I;16", "F")
    return np.asarray(im.convert("L" if gray else "RGB"))


def to_uint8(a: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The one rule for samples deeper than 8 bits, for arrays and PIL images alike (Pillow's
    I;16 is a uint16 array, I an int32 one, F a float32 one): (uint8 pixels, what was lost).

    - uint8: as is. bool: False/True -> 0/255, nothing lost.
    - uint16: scaled to 8 bits, round(v * 255 / 65535) (16-bit PNG and TIFF samples).
    - float: on the 0..255 scale, as Pillow's F mode; rounded and clipped.
    - any other integer type: clipped to 0..255, as Pillow's I mode.
    """
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a, None
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255), None
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8), (
            "16-bit samples reduced to 8 bits")
    if np.issubdtype(a.dtype, np.floating):
        finite = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        note = f"{a.dtype} samples rounded and clipped to 0..255"
        if a.size and float(finite.max()) <= 1.0 and float(finite.min()) >= 0.0:
            note += " (they are all within 0..1: floats are read on the 0..255 scale, " \
                    "multiply by 255 first)"
        return np.clip(np.rint(finite), 0, 255).astype(np.uint8), note
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8), f"{a.dtype} samples clipped to 0..255"
    raise UnsupportedImageError(
        f"images must hold numbers (uint8, or uint16 / float / bool: see aecodec.imageio."
        f"to_uint8), got {a.dtype}")


def as_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """Validate the codec's pixels: uint8 H x W, H x W x 1 or H x W x 3 (or a PIL image).
    (Alpha, H x W x 2 / 4, is split off before, by codec/extras.py.)"""
    if isinstance(image, Image.Image):
        return pil_to_array(image)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a, lost = to_uint8(a)
        if lost:
            warnings.warn(lost, LossWarning, stacklevel=3)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise UnsupportedImageError(
            f"images must be H x W, H x W x 3, or with alpha H x W x 2 / H x W x 4 "
            f"(uint8), got shape {tuple(a.shape)}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise UnsupportedImageError("image is empty")
    return a


def encode_image(array: np.ndarray, fmt: str = "PNG", info: dict | None = None,
                 quality: int | None = None) -> bytes:
    """An image file of decoded pixels (H x W, x 2, x 3 or x 4), with `info`'s metadata
    (`icc_profile`, `exif`, `xmp`, `dpi`) written where the format holds it; lossy formats at
    `quality` (default DEFAULT_OUTPUT_QUALITY). What the format cannot hold (alpha in JPEG,
    metadata in BMP, ...) is dropped with one LossWarning."""
    register_plugins(fmt)
    im = Image.fromarray(array, {2: "LA", 4: "RGBA"}.get(array.shape[2]) if array.ndim == 3
                         else None)
    params = {k: v for k, v in (info or {}).items()
              if k in ("icc_profile", "exif", "xmp", "dpi") and v}
    lost = []
    kept = METADATA_FORMATS.get(fmt, ())
    if [k for k in params if k not in kept]:
        lost.append(f"{' and '.join(k for k in params if k not in kept)} not written "
                    f"({fmt} output)")
        params = {k: v for k, v in params.items() if k in kept}
    if fmt == "JPEG":
        lost += _jpeg_limits(params)
    if fmt == "TIFF" and "exif" in params:
        params["exif"] = _tiff_exif(params["exif"])
    if fmt in LOSSY_FORMATS:
        params["quality"] = DEFAULT_OUTPUT_QUALITY if quality is None else int(quality)
    try:
        data = _save(im, fmt, params)
    except (OSError, KeyError, ValueError):
        if im.mode not in ("LA", "RGBA"):
            raise
        lost.append(f"alpha dropped ({fmt} output has no alpha channel)")
        data = _save(im.convert(im.mode[:-1]), fmt, params)
    lost += written_losses(array, fmt, data, lost)
    if lost:
        warnings.warn("; ".join(lost), LossWarning, stacklevel=2)
    return data


def _jpeg_limits(params: dict) -> list[str]:
    """Drop (and say) the metadata a JPEG file cannot hold: EXIF or XMP over one segment,
    an ICC profile over 255 segments, a resolution over the 16 bits of JFIF's density."""
    lost = []
    if len(params.get("exif", b"")) > JPEG_MAX_EXIF:
        lost.append("exif not written (over the 64 KB a JPEG segment holds)")
        del params["exif"]
    if len(params.get("xmp", b"")) > JPEG_MAX_EXIF - len(JPEG_XMP_PREFIX):
        lost.append("xmp not written (over the 64 KB a JPEG segment holds)")
        del params["xmp"]
    if len(params.get("icc_profile", b"")) > JPEG_MAX_ICC:
        lost.append("icc_profile not written (over the 255 segments a JPEG holds)")
        del params["icc_profile"]
    dpi = params.get("dpi")
    if dpi and max(round(v) for v in dpi) > 65535:
        lost.append(f"dpi not written ({dpi[0]:g}x{dpi[1]:g} is over the 65535 a JPEG holds)")
        del params["dpi"]
    return lost


# the tags of a TIFF file's own layout: EXIF copied from another file must not set them in a
# TIFF output (Pillow's writer copies every EXIF tag over its own, the image size included)
TIFF_LAYOUT_TAGS = (256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 284, 317, 322, 323,
                    324, 325, 338, 339, 340, 341, 347, 530, 531, 532)


def _tiff_exif(exif: bytes) -> Image.Exif:
    """A stream's EXIF for a TIFF output, without the tags that describe a TIFF's layout (an
    EXIF's ImageWidth, say, is the size of the frame it was written for, not this one)."""
    parsed = Image.Exif()
    parsed.load(exif)
    for tag in TIFF_LAYOUT_TAGS:
        parsed.pop(tag, None)
    return parsed


def written_losses(array: np.ndarray, fmt: str, data: bytes, said: list[str]) -> list[str]:
    """What Pillow's writer lost without a word, read back from the file's header: a
    palette of 256 colours (GIF), another size (ICO holds at most 256x256), alpha dropped
    (BMP). `said`: losses already named, not repeated."""
    try:
        with Image.open(io.BytesIO(data)) as out:
            size, mode, transparency = out.size, out.mode, "transparency" in out.info
    except (OSError, SyntaxError, ValueError):  # a format Pillow writes but cannot read back
        return []
    h, w = array.shape[:2]
    lost = []
    if size != (w, h):
        lost.append(f"written as {size[0]}x{size[1]}, not {w}x{h} ({fmt} output)")
    alpha = array.ndim == 3 and array.shape[2] in (2, 4)
    if alpha and "A" not in mode and not any("alpha" in s for s in said):
        lost.append(f"alpha dropped ({fmt} output as Pillow writes it has no alpha channel)"
                    if not transparency else f"alpha reduced to on/off ({fmt} output)")
    if mode in ("P", "PA") and _colours_over(array, 256):
        lost.append(f"colours reduced to a 256-colour palette ({fmt} output)")
    return lost


def _colours_over(array: np.ndarray, n: int) -> bool:
    """Whether the image has more than n distinct colours (alpha left out)."""
    a = array if array.ndim == 2 else array[:, :, : (1 if array.shape[2] <= 2 else 3)]
    flat = a.reshape(a.shape[0] * a.shape[1], -1).astype(np.uint32)
    keys = flat[:, 0] if flat.shape[1] == 1 else (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    return len(np.unique(keys)) > n


def register_plugins(fmt_or_ext: str) -> None:
    """JPEG XL comes from pillow-jxl-plugin (the `bench` extra), registered when imported."""
    if fmt_or_ext.upper().lstrip(".") == "JXL":
        try:
            import pillow_jxl  # noqa: F401
        except ImportError:
            raise UnsupportedImageError("JPEG XL output needs pillow-jxl-plugin "
                                        "(pip install pillow-jxl-plugin)") from None


def _save(im: Image.Image, fmt: str, params: dict) -> bytes:
    if fmt == "PNG" and "xmp" in params:  # Pillow writes PNG XMP as an iTXt chunk only
        from PIL.PngImagePlugin import PngInfo

        params = dict(params)
        pnginfo = PngInfo()
        pnginfo.add_itxt("XML:com.adobe.xmp", params.pop("xmp").decode("utf-8"))
        params["pnginfo"] = pnginfo
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def format_for(path: str | Path) -> str:
    """Pillow format name from a file name's extension (PNG when there is none)."""
    ext = Path(path).suffix.lower()
    if not ext:
        return "PNG"
    register_plugins(ext)
    Image.init()
    fmt = Image.EXTENSION.get(ext)
    if fmt is None:
        raise UnsupportedImageError(f"unknown image file extension '{ext}'")
    return fmt


def write_atomic(
    path: str | Path, data: bytes | Iterable[bytes], force: bool = False
) -> None:
    """Write a file all at once or not at all, and never over an existing one without `force`.

    On Linux the bytes go to an unnamed file (O_TMPFILE) that is linked into place only once
    complete: a process killed midway, even by SIGKILL, leaves nothing behind. Without
    `force` the link itself refuses an existing target, so there is no check-then-write race.
    Elsewhere (or where the filesystem lacks O_TMPFILE), a named temporary file in the same
    folder is renamed into place and removed on any exception, SIGINT or SIGTERM included
    (the CLI turns SIGTERM into an exception); only SIGKILL can leave it behind there.
    """
    path = Path(path)
    chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    if writes_through(path):  # -o /dev/null, a FIFO: written into, never replaced
        with open(path, "wb", buffering=0) as f:
            for chunk in chunks:
                f.write(chunk)
        return
    if path.exists() or path.is_symlink():
        if not force:
            raise FileExistsError(f"{path} exists (use --force to overwrite)")
        if path.is_symlink() or not path.is_file():  # a link, a folder, a socket...
            kind = "a symbolic link" if path.is_symlink() else "not a regular file"
            raise FileExistsError(f"{path} is {kind}: not replaced, even with --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _unnamed_file(path.parent)
    if fd is not None:
        try:
            _write_all(fd, chunks)
            _link_into_place(f"/proc/self/fd/{fd}", path, force)
        finally:
            os.close(fd)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            _write_all(fd, chunks)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give a normal file's mode
        _link_into_place(tmp, path, force)
    finally:
        Path(tmp).unlink(missing_ok=True)


def writes_through(path: str | Path) -> bool:
    """A character device (/dev/null) or a FIFO: an output written into, not replaced."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _unnamed_file(folder: Path) -> int | None:
    """A descriptor of a new unnamed file in `folder` (Linux O_TMPFILE), or None."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not Path("/proc/self/fd").is_dir():
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY, 0o666)  # the umask applies as usual
    except OSError:  # EOPNOTSUPP, EISDIR (kernel without O_TMPFILE), EINVAL, ...
        return None


def _write_all(fd: int, chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
    os.fsync(fd)


def _link_into_place(src: str, path: Path, force: bool) -> None:
    """Give the finished file `src` the name `path`: a hard link, which fails if `path`
    exists; with `force`, a link to a hidden name then an atomic rename over `path`."""
    if not force:
        try:
            _link(src, path)
        except FileExistsError:
            raise FileExistsError(f"{path} exists (use --force to overwrite)") from None
        return
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    _link(src, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _link(src: str, dst: Path) -> None:
    """os.link, following a /proc/self/fd entry to its unnamed file (linkat with
    AT_SYMLINK_FOLLOW: os.link calls plain link(2), which does not follow, unless a
    directory descriptor is given)."""
    if not src.startswith("/proc/"):
        os.link(src, dst)
        return
    folder, name = os.path.split(src)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.link(name, dst, src_dir_fd=dir_fd, follow_symlinks=True)
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
