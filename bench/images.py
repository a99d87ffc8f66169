"""Test images: a folder of photos, or the small built-in sample for a quick `aecodec bench`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from aecodec.imageio import IMAGE_SUFFIXES


def load_image(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB (alpha dropped, greyscale expanded); UnreadableImageError naming the
    file for one that is no readable image (empty, truncated, another format)."""
    from aecodec.errors import ImageTooLargeError, UnreadableImageError
    from aecodec.imageio import plain_message

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise UnreadableImageError(f"{path}: cannot read image ({plain_message(e)})") from None


def load_folder(folder: Path, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Images in ``folder`` sorted by name (regular files only); lossless formats are what a
    bench should use. AecodecError for a folder without images or an unreadable one."""
    from aecodec.errors import AecodecError

    paths = sorted(p for p in Path(folder).iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise AecodecError(f"no images in {folder} (it needs {', '.join(sorted(IMAGE_SUFFIXES))} "
                           "files)")
    return [(p.stem, load_image(p)) for p in paths]


def synthetic_image(height: int = 384, width: int = 512, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like stand-in: smooth gradients, hard edges, texture and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.stack([0.5 + 0.4 * np.sin(3 * xx + 1), 0.4 + 0.3 * yy, 0.6 - 0.4 * xx * yy], -1)
    img[(xx - 0.5) ** 2 + (yy - 0.4) ** 2 < 0.04] = (0.9, 0.3, 0.2)  # a disc with hard edges
    img[:, int(0.7 * width) :] *= 0.5 + 0.5 * np.sin(60 * yy[:, int(0.7 * width) :, None])
    blur = rng.normal(0, 1, (height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
    img += 0.03 * blur[:height, :width] + 0.004 * rng.normal(0, 1, img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def sample_images() -> list[tuple[str, np.ndarray]]:
    """The photo shipped in ``aecodec/data/`` if the runtime has one, else a synthetic image."""
    try:
        data = resources.files("aecodec") / "data"
        files = sorted(
            (f for f in data.iterdir() if Path(f.name).suffix.lower() in IMAGE_SUFFIXES),
            key=lambda f: f.name,
        )
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):
        files = []
    if files:
        out = []
        for f in files:
            with resources.as_file(f) as p:
                out.append((Path(f.name).stem, load_image(p)))
        return out
    return [("synthetic", synthetic_image())]
