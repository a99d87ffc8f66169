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
METADATA_FORMATS = {"PNG", "JPEG", "WEBP"}  # outputs that get the stream's ICC profile and EXIF
JPEG_MAX_EXIF = 65533  # one APP1 segment


def open_image(source: str | Path | bytes) -> Image.Image:
    """Open an image file (path or its bytes) without decoding its pixels, so that the encoder
    (codec/extras.py) sees its bit depth, frames, alpha and metadata."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{name}: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UnreadableImageError(f"{name}: cannot read image ({e})") from None


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
        raise UnreadableImageError(f"{name}: cannot read image ({e})") from None


def pil_to_array(im: Image.Image) -> np.ndarray:
    """Grayscale modes become H x W, everything else H x W x 3 (alpha is dropped)."""
    gray = im.mode in ("1", "L", "LA", "I", "I;16", "F")
    return np.asarray(im.convert("L" if gray else "RGB"))


def as_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """Validate the codec's pixels: uint8 H x W, H x W x 1 or H x W x 3 (or a PIL image).
    (Alpha, H x W x 2 / 4, is split off before, by codec/extras.py.)"""
    if isinstance(image, Image.Image):
        return pil_to_array(image)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise UnsupportedImageError(f"images must be uint8 arrays, got {a.dtype}")
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


def encode_image(array: np.ndarray, fmt: str = "PNG", info: dict | None = None) -> bytes:
    """An image file of decoded pixels (H x W, x 2, x 3 or x 4), with `info`'s `icc_profile`
    and `exif` written where the format holds them (PNG, JPEG, WebP). What the format cannot
    hold (alpha in JPEG, metadata in BMP, ...) is dropped with one LossWarning."""
    im = Image.fromarray(array, {2: "LA", 4: "RGBA"}.get(array.shape[2]) if array.ndim == 3
                         else None)
    params = {k: v for k, v in (info or {}).items() if k in ("icc_profile", "exif") and v}
    lost = []
    if params and fmt not in METADATA_FORMATS:
        lost.append(f"{' and '.join(params)} not written ({fmt} output)")
        params = {}
    if fmt == "JPEG" and len(params.get("exif", b"")) > JPEG_MAX_EXIF:
        lost.append("exif not written (over the 64 KB a JPEG segment holds)")
        del params["exif"]
    try:
        data = _save(im, fmt, params)
    except (OSError, KeyError, ValueError):
        if im.mode not in ("LA", "RGBA"):
            raise
        lost.append(f"alpha dropped ({fmt} output has no alpha channel)")
        data = _save(im.convert(im.mode[:-1]), fmt, params)
    if lost:
        warnings.warn("; ".join(lost), LossWarning, stacklevel=2)
    return data


def _save(im: Image.Image, fmt: str, params: dict) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def format_for(path: str | Path) -> str:
    """Pillow format name from a file name's extension (PNG when there is none)."""
    ext = Path(path).suffix.lower()
    if not ext:
        return "PNG"
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
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else data
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
