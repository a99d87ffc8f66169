"""Latents of a folder of photos through a shipped model's analysis, computed once.

Why: an entropy model on frozen transforms trains at latent resolution (1/256 of the pixels),
which is what makes it trainable on a CPU. The analysis is the runtime's own (ONNX, with its
8-bit convolution), so the latents are exactly the ones the codec codes.

`python -m aecodec.export.latents OUT.npz FOLDER... [--model hyperprior] [--max-side 1024]`
writes one array per image, y before the gain, [M, h, w] (float16 for training sets, float32
with --exact), keyed by the image's path relative to its folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .data import _fit, image_files


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
                img = _fit(img, max_side) if max_side else img.convert("RGB")
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("folders", type=Path, nargs="+")
    p.add_argument("--model", default="hyperprior")
    p.add_argument("--max-side", type=int, default=1024, help="0: keep the full size")
    p.add_argument("--exact", action="store_true", help="float32 instead of float16")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    t0 = time.time()
    lat = compute_latents(a.folders, a.model, a.max_side or None,
                          np.float32 if a.exact else np.float16, a.threads)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp.npz")
    np.savez(tmp, **lat)
    tmp.replace(a.out)
    n = sum(v.shape[1] * v.shape[2] for v in lat.values())
    print(f"{len(lat)} images, {n} latent positions, {a.out.stat().st_size / 2**20:.1f} MiB "
          f"in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
