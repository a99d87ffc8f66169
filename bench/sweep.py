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
    """One untimed encode/decode per codec so library and session set-up is not timed; not
    for the slow (per-image trained) codecs, whose minutes of training dwarf any set-up."""
    crop = np.ascontiguousarray(img[:64, :64])
    for c in codecs.values():
        if getattr(c, "slow", False):
            continue
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
    jobs: int = 1, make_codecs: Callable[[], dict[str, Codec]] | None = None,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """per_image[codec][image] = list of points, low rate first.

    With `state`, every measured point is written there at once (atomically), and points found
    there for the same codec, image and setting are taken instead of measured again: a run
    that was killed continues where it stopped (`resumed` marks the points it took).

    With `jobs` > 1, points are measured by that many worker processes, each building its own
    codecs with `make_codecs` (a picklable callable): for the slow per-image codecs, minutes a
    point, on a machine with cores to spare. Each worker's times are then taken beside the
    others' work (the report says how many jobs ran)."""
    settings = {name: c.settings(points) for name, c in codecs.items()}
    done = _load_state(state)
    todo: list[tuple[str, str, int, int]] = []  # (key, codec, image index, setting index)
    layout: list[tuple[str, str, list[str]]] = []  # (codec, image, keys in order)
    for k, (iname, _) in enumerate(images):
        here = [n for n, c in codecs.items() if k % getattr(c, "every", 1) == 0]
        keys = {n: [f"{n}|{iname}|{settings[n][i]!r}" for i in range(points)] for n in here}
        layout += [(n, iname, keys[n]) for n in here]
        todo += [(keys[n][i], n, k, i) for i in range(points) for n in here
                 if keys[n][i] not in done]
    t0 = time.perf_counter()
    if jobs > 1 and todo:
        if make_codecs is None:
            raise ValueError("jobs > 1 needs make_codecs")
        _measure_in_workers(todo, images, settings, jobs, make_codecs, done, state, log, t0)
    else:
        for n_img, (iname, img) in enumerate(images):
            for key, name, k, i in todo:
                if k == n_img:
                    done[key] = measure_point(codecs[name], img, settings[name][i])
                    _save_state(state, done)
            log(f"[sweep] {n_img + 1}/{len(images)} {iname} ({time.perf_counter() - t0:.0f} s)")
    fresh = {k for k, *_ in todo}
    per_image: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n in codecs}
    for name, iname, keys in layout:
        per_image[name][iname] = [done[k] if k in fresh else {**done[k], "resumed": True}
                                  for k in keys]
    return per_image


_WORKER: dict[str, Any] = {}


def _worker_init(make_codecs: Callable[[], dict[str, Codec]],
                 images: list[tuple[str, np.ndarray]]) -> None:
    codecs = make_codecs()
    warm_up(codecs, images[0][1])
    _WORKER.update(codecs=codecs, images=images)


def _worker_point(name: str, k: int, setting: float) -> dict[str, Any]:
    return measure_point(_WORKER["codecs"][name], _WORKER["images"][k][1], setting)


def _measure_in_workers(
    todo: list[tuple[str, str, int, int]], images: list[tuple[str, np.ndarray]],
    settings: dict[str, list[float]], jobs: int, make_codecs: Callable[[], dict[str, Codec]],
    done: dict[str, dict[str, Any]], state: Path | None, log: Callable[[str], None], t0: float,
) -> None:
    """Measure `todo`'s points in `jobs` fresh (spawned) processes, saving each as it comes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # no inherited thread pools or sessions
    with ProcessPoolExecutor(jobs, ctx, _worker_init, (make_codecs, images)) as pool:
        futures = {pool.submit(_worker_point, name, k, settings[name][i]): key
                   for key, name, k, i in todo}
        try:
            for n, fut in enumerate(as_completed(futures), 1):
                key = futures[fut]
                done[key] = fut.result()
                _save_state(state, done)
                log(f"[sweep] {n}/{len(todo)} {key} ({time.perf_counter() - t0:.0f} s)")
        except BaseException:  # a point failed or the run was stopped: start nothing more
            pool.shutdown(wait=False, cancel_futures=True)
            raise


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
