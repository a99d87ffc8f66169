"""MNIST in its original IDX files (gzip or raw), read with numpy only (no torch, no download).

In the runtime because both sides read it: the torch trainer (aecodec.export) and the bench
(aecodec.bench), which may not import each other.

The folder must hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either as is or gzipped
(``.gz``). Both the ``-idx3-ubyte`` and the ``.idx3-ubyte`` spellings are accepted.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

ENV_VAR = "AECODEC_MNIST"
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_STEMS = {
    ("train", "images"): "train-images",
    ("train", "labels"): "train-labels",
    ("test", "images"): "t10k-images",
    ("test", "labels"): "t10k-labels",
}


class MnistNotFoundError(FileNotFoundError):
    """The MNIST IDX files are not where we looked."""


def default_folder() -> Path:
    """``$AECODEC_MNIST``, else ``$AECODEC_SHARED/data/mnist``, else ``../shared/data/mnist``
    beside the source checkout."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    shared = os.environ.get("AECODEC_SHARED")
    if shared:
        return Path(shared) / "data" / "mnist"
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data" / "mnist"
        if (parent / "pyproject.toml").exists() and cand.is_dir():
            return cand
    return Path("../shared/data/mnist")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped if its name ends in .gz or it starts with the gzip magic)."""
    path = Path(path)
    if not path.is_file():
        raise MnistNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4].hex()})")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[code])
    start = 4 + 4 * ndim
    n = int(np.prod(dims)) if dims else 1
    if len(raw) - start < n * dtype.itemsize:
        raise ValueError(f"{path}: truncated IDX file ({len(raw) - start} bytes of data, "
                         f"{n * dtype.itemsize} expected for shape {dims})")
    arr = np.frombuffer(raw, dtype=dtype, count=n, offset=start).reshape(dims)
    return arr.astype(dtype.newbyteorder("=")) if dtype.byteorder == ">" else arr.copy()


def _find(folder: Path, stem: str, kind: str) -> Path | None:
    for sep in ("-", "."):
        for ext in (".gz", ""):
            p = folder / f"{stem}{sep}{kind}-ubyte{ext}"
            if p.is_file():
                return p
    return None


def load_mnist(split: str = "train", folder: str | os.PathLike | None = None,
               limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N,28,28], labels uint8 [N]) for split 'train' or 'test'."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    folder = Path(folder) if folder is not None else default_folder()
    paths = {}
    missing = []
    for kind, idx in (("images", "idx3"), ("labels", "idx1")):
        stem = _STEMS[(split, kind)]
        p = _find(folder, stem, idx)
        if p is None:
            missing.append(f"{stem}-{idx}-ubyte[.gz]")
        paths[kind] = p
    if missing:
        raise MnistNotFoundError(
            f"MNIST {split} files missing in {folder.resolve()}: {', '.join(missing)}. "
            f"Put the four standard IDX files (gzipped or not) there, or point {ENV_VAR} "
            "or --data at the folder that holds them; nothing is downloaded.")
    images = read_idx(paths["images"])
    labels = read_idx(paths["labels"])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{paths['images']}: expected uint8 [N,28,28], got "
                         f"{images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{paths['labels']}: {labels.shape[0]} labels for "
                         f"{images.shape[0]} images")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def write_idx(path: str | os.PathLike, arr: np.ndarray, gz: bool | None = None) -> None:
    """Write a uint8 array as an IDX file (used by the tests to make small fixtures)."""
    path = Path(path)
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = head + arr.tobytes()
    if gz if gz is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
