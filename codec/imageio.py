"""Images in and out: files, PIL images and numpy arrays, checked before any model sees them."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageTooLargeError, UnreadableImageError, UnsupportedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".pnm", ".gif", ".tga"}


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
    """Validate an API input: uint8 H x W, H x W x 1 or H x W x 3 (or a PIL image)."""
    if isinstance(image, Image.Image):
        return pil_to_array(image)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise UnsupportedImageError(f"images must be uint8 arrays, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise UnsupportedImageError(
            f"images must be H x W or H x W x 3, got shape {tuple(a.shape)}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise UnsupportedImageError("image is empty")
    return a


def encode_image(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
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


def write_atomic(path: str | Path, data: bytes, force: bool = False) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
