"""Latents of a folder of photos through a shipped model's analysis, computed once.

Why: an entropy model on frozen transforms trains at latent resolution (1/256 of the pixels),
which is what makes it trainable on a CPU. The analysis is the runtime's own (ONNX, with its
8-bit convolution), so the latents are exactly the ones the codec codes.

`aecodec train latents OUT.npz FOLDER... [--model hyperprior] [--max-side 1024]`
writes one array per image, y before the gain, [M, h, w] (float16 for training sets, float32
with --exact), keyed by the image's path relative to its folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from .data import fit_within, image_files


def compute_latents(folders: list[Path], model: str = "hyperprior", max_side: int | None = 1024,
                    dtype: type = np.float16, threads: int = 2) -> dict[str, np.ndarray]:
    """y [M, h, w] per image of `folders` (each downscaled to `max_side`, cropped to the
    model's pad multiple so no padding enters the latents)."""
    import aecodec

    codec = aecodec.Codec(model, threads=threads)
    unit = codec.model.info.pad_multiple
    out: dict[str, np.ndarray] = {}
    for folder in folders:
        for path in image_files(folder):
            with Image.open(path) as img:
                img = fit_within(img, max_side) if max_side else img.convert("RGB")
                a = np.asarray(img)
            h, w = a.shape[0] // unit * unit, a.shape[1] // unit * unit
            if h == 0 or w == 0:
                continue
            a, _ = codec.prepare(np.ascontiguousarray(a[:h, :w]))
            key = f"{Path(folder).name}/{path.relative_to(folder).as_posix()}"
            out[key] = codec.analyse(a).astype(dtype)
    return out


def load_latents(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def write_latents(out: Path, folders: list[Path], model: str = "hyperprior",
                  max_side: int | None = 1024, exact: bool = False, threads: int = 2) -> str:
    """Compute and write OUT.npz atomically; returns a one-line summary."""
    t0 = time.time()
    lat = compute_latents(folders, model, max_side, np.float32 if exact else np.float16, threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **lat)
    tmp.replace(out)
    n = sum(v.shape[1] * v.shape[2] for v in lat.values())
    return (f"{len(lat)} images, {n} latent positions, {out.stat().st_size / 2**20:.1f} MiB "
            f"in {time.time() - t0:.0f} s")
