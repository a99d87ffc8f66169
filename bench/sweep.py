"""The rate-distortion sweep: every image x setting x codec, interleaved, measured once.

Codecs are interleaved per (image, setting) so that slow drifts of the machine (thermal, other
load) hit all codecs alike. Encode/decode times here are single measurements; the median-of-
repeats speed figures come from ``speed.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aecodec.metrics import psnr

from .metrics import ms_ssim


class Codec(Protocol):
    name: str

    def settings(self, points: int) -> list[float]: ...
    def encode(self, img: np.ndarray, setting: float) -> bytes: ...
    def decode(self, data: bytes) -> np.ndarray: ...


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result, milliseconds)."""
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def warm_up(codecs: dict[str, Codec], img: np.ndarray) -> None:
    """One untimed encode/decode per codec so library and session set-up is not timed."""
    crop = np.ascontiguousarray(img[:64, :64])
    for c in codecs.values():
        s = c.settings(1)[0]
        c.decode(c.encode(crop, s))


def measure_point(codec: Codec, img: np.ndarray, setting: float) -> dict[str, Any]:
    """One RD point: real file size, PSNR-RGB, MS-SSIM, encode and decode time."""
    data, enc_ms = timed(lambda: codec.encode(img, setting))
    rec, dec_ms = timed(lambda: codec.decode(data))
    if rec.shape != img.shape:
        raise ValueError(f"{codec.name}: decoded shape {rec.shape} != {img.shape}")
    h, w = img.shape[:2]
    return {
        "setting": setting,
        "bytes": len(data),
        "bpp": len(data) * 8.0 / (h * w),
        "psnr": psnr(img, rec),
        "ms_ssim": ms_ssim(img, rec),
        "enc_ms": enc_ms,
        "dec_ms": dec_ms,
        **({"wrote": codec.wrote} if getattr(codec, "wrote", None) else {}),
    }


def run_sweep(
    images: list[tuple[str, np.ndarray]], codecs: dict[str, Codec], points: int,
    log: Callable[[str], None] = lambda s: None, state: Path | None = None,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """per_image[codec][image] = list of points, low rate first.

    With `state`, every measured point is written there at once (atomically), and points found
    there for the same codec, image and setting are taken instead of measured again: a run
    that was killed continues where it stopped (`resumed` marks the points it took)."""
    settings = {name: c.settings(points) for name, c in codecs.items()}
    per_image: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n in codecs}
    done = _load_state(state)
    t0 = time.perf_counter()
    for k, (iname, img) in enumerate(images):
        here = {n: c for n, c in codecs.items() if k % getattr(c, "every", 1) == 0}
        for name in here:  # a codec with `every` = k runs on images 0, k, 2k, ... only
            per_image[name][iname] = []
        for i in range(points):
            for name, c in here.items():
                key = f"{name}|{iname}|{settings[name][i]!r}"
                if key in done:
                    point = {**done[key], "resumed": True}
                else:
                    point = measure_point(c, img, settings[name][i])
                    done[key] = point
                    _save_state(state, done)
                per_image[name][iname].append(point)
        log(f"[sweep] {k + 1}/{len(images)} {iname} ({time.perf_counter() - t0:.0f} s)")
    return per_image


def _load_state(state: Path | None) -> dict[str, dict[str, Any]]:
    if state is None or not state.is_file():
        return {}
    try:
        data = json.loads(state.read_text())
        return {str(k): dict(v) for k, v in data["points"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # unreadable: measured again


def _save_state(state: Path | None, done: dict[str, dict[str, Any]]) -> None:
    if state is None:
        return
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"points": done}))
    tmp.replace(state)


def _nanmean(vals: list[float]) -> float | None:
    a = np.asarray(vals, np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if len(a) else None


def mean_curves(
    per_image: dict[str, dict[str, list[dict[str, Any]]]],
) -> dict[str, list[dict[str, Any]]]:
    """Mean over images for each setting (mean bpp, mean PSNR, ... as CompressAI reports)."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for name, by_image in per_image.items():
        rows = list(by_image.values())
        curve = []
        for i in range(len(rows[0])):
            pts = [r[i] for r in rows]
            curve.append(
                {"setting": pts[0]["setting"]}
                | {k: _nanmean([p[k] for p in pts])
                   for k in ("bpp", "psnr", "ms_ssim", "enc_ms", "dec_ms")}
            )
        curves[name] = curve
    return curves
