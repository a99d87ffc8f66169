"""`aecodec demo`: the bundled Kodak photo through the codec, against JPEG at the same PSNR."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from .codec import Codec
from .imageio import encode_image, read_image, write_atomic
from .metrics import psnr

SAMPLE = Path(__file__).parent / "data" / "kodim23.png"


def jpeg_bytes_for(image: np.ndarray, target_psnr: float) -> tuple[int, int, float] | None:
    """Smallest Pillow JPEG (quality 1..100) reaching the PSNR: (bytes, quality, psnr)."""
    def encode(q: int) -> tuple[int, float]:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=q)
        return buf.tell(), psnr(image, np.asarray(Image.open(buf)))

    lo, hi = 1, 100
    if encode(hi)[1] < target_psnr:
        return None
    while lo < hi:  # PSNR rises with JPEG quality
        mid = (lo + hi) // 2
        if encode(mid)[1] >= target_psnr:
            hi = mid
        else:
            lo = mid + 1
    n, p = encode(lo)
    return n, lo, p


MARK = ".aecodec-demo"  # in a folder the demo wrote: its two outputs are the demo's own


def run(codec: Codec, out_dir: Path, quality: float, force: bool = False) -> list[str]:
    """Write <out>/kodim23.aec and kodim23-decoded.png; return the report lines.

    A second run replaces the two files a first run wrote (the folder holds the demo's mark
    file), so the demo can be run again as it is; files of the same names that the demo did
    not write are replaced only with `force`."""
    image = read_image(SAMPLE)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stream, decoded = out_dir / f"{SAMPLE.stem}.aec", out_dir / f"{SAMPLE.stem}-decoded.png"
    own = (out_dir / MARK).is_file()
    for p in (stream, decoded):
        if p.exists() and not (force or own):
            raise FileExistsError(f"{p} exists and was not written by the demo (use --force "
                                  "to overwrite, or --out another folder)")
    enc = codec.encode(image, quality)
    pixels = codec.decompress(enc.data)
    (out_dir / MARK).write_text("written by aecodec demo: a rerun replaces its outputs\n")
    write_atomic(stream, enc.data, True)
    write_atomic(decoded, encode_image(pixels), True)
    h, w = image.shape[:2]
    p = psnr(image, pixels)
    lines = [
        f"model     {codec.model.name} ({codec.model.id}), quality {enc.quality}",
        f"image     {SAMPLE.name}, {w}x{h}",
        f"aecodec   {len(enc.data)} bytes, {enc.bpp:.3f} bpp, PSNR {p:.2f} dB",
    ]
    jpeg = jpeg_bytes_for(image, p)
    if jpeg is None:
        lines.append("JPEG      cannot reach this PSNR at quality 100")
    else:
        n, q, jp = jpeg
        lines.append(f"JPEG      {n} bytes, {n * 8 / (w * h):.3f} bpp, PSNR {jp:.2f} dB "
                     f"(quality {q}): {n / len(enc.data):.2f}x the aecodec size")
    lines.append(f"wrote     {stream} and {decoded}")
    return lines
