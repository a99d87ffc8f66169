"""One bench run end to end: pick codecs, sweep, BD, speed, write results.json and reports."""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .bdrate import bd_summary
from .classical import classical_codecs
from .effort import bench_summary
from .environment import environment
from .learned import AecodecModel, aecodec_models
from .load import machine_load
from .report import markdown, plot_curves, visual_mosaic
from .speed import run_speed
from .sweep import Codec, mean_curves, run_sweep, warm_up

SCHEMA_VERSION = 1
ALL_CODECS = ("aecodec", "jpeg", "webp", "jpeg2000", "avif", "jxl")


SWEEP_STATE = "sweep-state.json"  # the points measured so far (resume)


def _folder_model(path: str, threads: int, log: Callable[[str], None]) -> AecodecModel | None:
    """A model folder's adapter, its curve named for the manifest's name (`aecodec-<name>`)."""
    from aecodec.errors import AecodecError
    from aecodec.model import find

    try:
        info = find(path)
    except AecodecError as e:
        log(f"[bench] {path}: {e}, skipped")
        return None
    return AecodecModel(f"aecodec-{info.name}", str(info.path), threads)


def select_codecs(names: list[str], threads: int, log: Callable[[str], None],
                  efforts: dict[int, int] | None = None) -> dict[str, Codec]:
    """Codec adapters for the CLI names; "aecodec" expands to every photo model; `efforts`
    ({level: every k-th image}) adds `<model>+e<level>` for the models effort optimises."""
    classical = classical_codecs(threads)
    learned = aecodec_models(threads) if any(n.startswith("aecodec") for n in names) else {}
    out: dict[str, Codec] = {}
    for n in names:
        if n == "aecodec":  # the slow (per-image trained) family only when named
            if not learned:
                log("[bench] no aecodec photo models installed: skipped")
            out.update({k: v for k, v in learned.items() if not v.slow})
        elif n.startswith("aecodec-"):
            base = n.removesuffix("-reference")
            if n in learned:
                out[n] = learned[n]
            elif base != n and base in learned:  # same model, its files run as they are
                m = learned[base]
                out[n] = type(m)(n, m.model, m.threads, m.lo, m.hi, reference=True)
            elif Path(n.removeprefix("aecodec-")).is_dir():  # a model folder (a fine-tune)
                m = _folder_model(n.removeprefix("aecodec-"), threads, log)
                if m is not None:
                    out[m.name] = m
            else:
                log(f"[bench] {n}: no such photo model, skipped")
        elif n == "jxl" and _missing("pillow_jxl"):
            continue  # said up front (skipped_for_packages)
        elif n in classical:
            out[n] = classical[n]
        else:
            log(f"[bench] {n}: not available in this Pillow build, skipped")
    if efforts:
        from .learned import with_efforts

        learned_out = with_efforts({k: v for k, v in out.items() if k in learned
                                    or k.endswith("-reference")}, efforts)
        out = {**out, **{k: v for k, v in learned_out.items() if k not in out}}
    return out


def _quiet(line: str) -> None:
    """The workers' log: what they would say, the main process said already."""


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def skipped_for_packages(names: list[str], plots: bool) -> list[str]:
    """What this run leaves out because a package of the `bench` extra is missing."""
    extra = "(pip install 'aecodec[bench]')"
    out = []
    if plots and _missing("matplotlib"):
        out.append(f"the RD plots rd_psnr.png and rd_msssim.png: matplotlib is not installed "
                   f"{extra}")
    if "jxl" in names and _missing("pillow_jxl"):
        out.append(f"jxl: pillow-jxl-plugin is not installed {extra}")
    return out


def _settings_config(codecs: dict[str, Codec], points: int) -> dict[str, Any]:
    cfg = {}
    for name, c in codecs.items():
        cfg[name] = {
            "knob": getattr(c, "knob", "quality"),
            "values": c.settings(points),
            "options": dict(getattr(c, "options", {})),
            "format": getattr(c, "fmt", None) or getattr(c, "model", None),
        }
    return cfg


def json_clean(obj: Any) -> Any:
    """NaN/inf -> null and numpy scalars -> Python, so results.json is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def run_bench(
    images: list[tuple[str, np.ndarray]], source: str, codec_names: list[str], outdir: Path,
    points: int, repeats: int, threads: int, anchor: str = "jpeg", speed_bpp: float = 0.5,
    visual_bpp: float = 0.5, visual_image: str | None = None, plots: bool = True,
    log: Callable[[str], None] = print, efforts: dict[int, int] | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run everything and write OUTDIR/results.json, report.md, rd_*.png, visual.png."""
    t_start = time.perf_counter()
    outdir.mkdir(parents=True, exist_ok=True)
    skipped = skipped_for_packages(codec_names, plots)
    for line in skipped:  # said before minutes of sweeping, not found missing at the end
        log(f"[bench] skipping {line}")
    codecs = select_codecs(codec_names, threads, log, efforts)
    if not codecs:
        raise RuntimeError("no codec to benchmark")
    load_start = machine_load()
    warm_up(codecs, images[0][1])
    # every point is saved as it is measured: a killed run continues where it stopped
    make = functools.partial(select_codecs, codec_names, threads, _quiet, efforts)
    per_image = run_sweep(images, codecs, points, log, outdir / SWEEP_STATE, jobs, make)
    t_sweep = time.perf_counter()
    curves = mean_curves(per_image)
    full = {n: c for n, c in codecs.items() if getattr(c, "every", 1) == 1}
    timed_codecs = {n: c for n, c in full.items() if not getattr(c, "slow", False)}
    speed = (run_speed(images, timed_codecs, curves, repeats, threads, speed_bpp, log)
             if repeats > 0 else None)
    t_speed = time.perf_counter()
    res: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "images": {
            "source": source,
            "count": len(images),
            "names": [n for n, _ in images],
            "sizes": [list(im.shape[:2]) for _, im in images],
        },
        "config": {
            "codecs": list(codecs), "points": points, "repeats": repeats, "threads": threads,
            "jobs": jobs,
            "anchor": anchor, "speed_bpp": speed_bpp, "settings": _settings_config(codecs, points),
            "efforts": {str(k): v for k, v in (efforts or {}).items()},
        },
        "environment": {**environment(threads),
                        "load": {"start": load_start, "end": machine_load()}},
        "skipped": skipped,
        "curves": curves,
        "per_image": per_image,
        # curves of a subset of the images (slow efforts) are compared on their own images only
        "bd": bd_summary({n: c for n, c in curves.items() if n in full}, anchor),
        "effort": bench_summary(per_image, curves, anchor),
        "speed": speed,
    }
    names = [n for n, _ in images]
    vi = visual_image if visual_image in names else names[0]
    res["visual"] = visual_mosaic(
        dict(images)[vi], vi, codecs, {c: per_image[c][vi] for c in codecs}, visual_bpp,
        outdir / "visual.png")
    res["plots"] = plot_curves(res, outdir) if plots and not _missing("matplotlib") else []
    res["timing"] = {"sweep_s": round(t_sweep - t_start, 1),
                     "speed_s": round(t_speed - t_sweep, 1),
                     "total_s": round(time.perf_counter() - t_start, 1)}
    res = json_clean(res)
    (outdir / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    (outdir / "report.md").write_text(markdown(res))
    return res
