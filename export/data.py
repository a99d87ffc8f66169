"""Training images: a folder or one compact archive, held in memory, cut into random crops.

Why an archive: the same training command runs on a laptop and on a borrowed GPU machine; one
tar file under 64 MiB moves between them easily and reads fast.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aecodec.imageio import IMAGE_SUFFIXES


def image_files(folder: Path) -> list[Path]:
    """The image files under a folder, sorted: regular files only (a FIFO or a link to a
    device under an image name would block or read without end)."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_rgb(source, name: str) -> np.ndarray:
    """An image file (path or file object) as HxWx3 uint8; a file that is no readable image
    (empty, truncated, another format) is a ValueError naming it, which the commands print as
    one `Error:` line."""
    from aecodec.imageio import plain_message

    try:
        with Image.open(source) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ValueError(f"{name}: cannot read image ({plain_message(e)})") from None


def _open(path: Path) -> Image.Image:
    """`Image.open` with `read_rgb`'s error."""
    from aecodec.imageio import plain_message

    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot read image ({plain_message(e)})") from None


def fit_within(img: Image.Image, max_side: int) -> Image.Image:
    img = img.convert("RGB")
    scale = max_side / max(img.size)
    if scale < 1:
        size = (round(img.width * scale), round(img.height * scale))
        img = img.resize(size, Image.Resampling.LANCZOS)
    return img


def build_archive(folders: list[Path], out: Path, max_side: int = 1024,
                  quality: int | None = None, max_bytes: int | None = None, crop: int = 256,
                  seed: int = 0) -> int:
    """Write the images of `folders` into one tar; large ones are downscaled to `max_side`.

    Without `max_bytes`: every image, JPEGs that already fit with their original bytes (no
    second generation of artefacts), the others re-encoded as JPEG at `quality` (4:4:4; 95 by
    default). With it: `crop`-pixel squares cut from every downscaled image (a grid of them),
    as JPEG at `quality` (90 by default: 872 crops of 256 px from 464 of the 562 training
    photos in 20 MiB, against 628 at 95 and 539 of 320 px at 90), drawn in a seeded random
    order until the archive would pass `max_bytes`: a training set of a given size, spread
    over all the photos. Returns the archive's size in bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    members = _whole_images(folders, max_side, quality or 95) if max_bytes is None else \
        _crops(folders, max_side, quality or 90, max_bytes, crop, seed)
    with tarfile.open(tmp, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return out.stat().st_size


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _whole_images(folders: list[Path], max_side: int, quality: int
                  ) -> Iterator[tuple[str, bytes]]:
    for folder in folders:
        for path in image_files(folder):
            with _open(path) as img:
                keep = path.suffix.lower() in {".jpg", ".jpeg"} and max(img.size) <= max_side
                data = path.read_bytes() if keep else _jpeg(fit_within(img, max_side), quality)
            rel = path.relative_to(folder).with_suffix(".jpg")
            yield f"{folder.name}/{rel.as_posix()}", data


def _crops(folders: list[Path], max_side: int, quality: int, max_bytes: int, crop: int,
           seed: int) -> Iterator[tuple[str, bytes]]:
    tiles = []  # every tile encoded (each photo decoded once), then a seeded draw of them
    for folder in folders:
        for path in image_files(folder):
            with _open(path) as img:
                im = fit_within(img, max_side)
            rel = path.relative_to(folder).with_suffix("")
            for top in range(0, im.height - crop + 1, crop):
                for left in range(0, im.width - crop + 1, crop):
                    tiles.append((f"{folder.name}/{rel.as_posix()}-{top}-{left}.jpg",
                                  _jpeg(im.crop((left, top, left + crop, top + crop)), quality)))
    total = 1024 + tarfile.RECORDSIZE  # the end blocks, and the last record's padding
    for i in np.random.default_rng(seed).permutation(len(tiles)):
        name, data = tiles[i]
        total += 512 + -(-len(data) // 512) * 512  # header and padded body
        if total > max_bytes:
            return
        yield name, data


def load_images(source: Path, min_side: int) -> list[tuple[str, np.ndarray]]:
    """Decode all images of a folder or a tar archive as (name, HxWx3 uint8), sorted by name."""
    source = Path(source)
    items: list[tuple[str, np.ndarray]] = []
    if source.is_file():
        with tarfile.open(source) as tar:
            for m in tar.getmembers():
                if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES:
                    f = tar.extractfile(m)
                    assert f is not None
                    items.append((m.name, read_rgb(f, f"{source}:{m.name}")))
    elif source.is_dir():
        for p in image_files(source):
            items.append((str(p.relative_to(source)), read_rgb(p, str(p))))
    else:
        raise FileNotFoundError(f"no training images at {source}")
    items = [(n, a) for n, a in sorted(items) if min(a.shape[:2]) >= min_side]
    if not items:
        raise ValueError(f"no image of at least {min_side}px a side in {source}")
    return items


def split(items: list, every: int = 50) -> tuple[list, list]:
    """Hold out every `every`-th image (by name) for validation."""
    val = items[::every]
    train = [it for i, it in enumerate(items) if i % every]
    return train, val


def random_crops(images: list[torch.Tensor], size: int, batch: int,
                 gen: torch.Generator) -> torch.Tensor:
    """`batch` random crops (with flips) of [3, H, W] uint8 images as [B, 3, size, size] floats
    in [0, 1], every choice drawn from `gen` (so a step's batch is a function of its seed)."""
    out = []
    for i in torch.randint(0, len(images), (batch,), generator=gen).tolist():
        img = images[i]
        _, h, w = img.shape
        top = int(torch.randint(0, h - size + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - size + 1, (1,), generator=gen))
        c = img[:, top: top + size, left: left + size]
        if float(torch.rand((), generator=gen)) < 0.5:
            c = c.flip(2)
        out.append(c)
    return torch.stack(out).float() / 255
