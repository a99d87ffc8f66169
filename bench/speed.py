"""Encode/decode speed at one operating point per codec: interleaved, median of repeats.

Each codec is timed at the sweep setting whose mean bpp is closest to ``target_bpp``. Every
repeat visits every image and, per image, every codec in a rotated order, so no codec always
runs first (cold caches) or last; the per-image time is the median over repeats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .sweep import Codec, timed


def pick_setting(curve: list[dict[str, Any]], target_bpp: float) -> dict[str, Any]:
    """The curve point nearest target_bpp in log-rate."""
    return min(curve, key=lambda p: abs(np.log(p["bpp"] / target_bpp)))


def run_speed(
    images: list[tuple[str, np.ndarray]], codecs: dict[str, Codec],
    curves: dict[str, list[dict[str, Any]]], repeats: int, threads: int,
    target_bpp: float = 0.5, log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """speed[codec] = setting, bpp, mean per-image medians (ms), megapixels per second."""
    points = {name: pick_setting(curves[name], target_bpp) for name in codecs}
    names = list(codecs)
    enc: dict[str, list[list[float]]] = {n: [[] for _ in images] for n in names}
    dec: dict[str, list[list[float]]] = {n: [[] for _ in images] for n in names}
    for r in range(repeats):
        for k, (_, img) in enumerate(images):
            shift = (r + k) % len(names)
            for name in names[shift:] + names[:shift]:
                c, s = codecs[name], points[name]["setting"]
                data, te = timed(lambda c=c, s=s, img=img: c.encode(img, s))
                _, td = timed(lambda c=c, d=data: c.decode(d))
                enc[name][k].append(te)
                dec[name][k].append(td)
        log(f"[speed] repeat {r + 1}/{repeats}")
    mpix = np.array([img.shape[0] * img.shape[1] / 1e6 for _, img in images])
    out: dict[str, Any] = {"target_bpp": target_bpp, "repeats": repeats, "threads": threads,
                           "codecs": {}}
    for name in names:
        e = np.array([np.median(t) for t in enc[name]])
        d = np.array([np.median(t) for t in dec[name]])
        out["codecs"][name] = {
            "setting": points[name]["setting"],
            "threads": getattr(codecs[name], "effective_threads", None),
            "bpp": points[name]["bpp"],
            "enc_ms": float(e.mean()),
            "dec_ms": float(d.mean()),
            "enc_mpix_s": float(mpix.sum() / (e.sum() / 1e3)),
            "dec_mpix_s": float(mpix.sum() / (d.sum() / 1e3)),
            "enc_ms_per_image": [float(v) for v in e],
            "dec_ms_per_image": [float(v) for v in d],
        }
    return out
