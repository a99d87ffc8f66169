"""RD cost of real overfit-family streams against training steps (docs/overfit.md).

Each (image, steps) point trains the image from scratch with a schedule of that length (the
schedule scales with it: a 500-step run is not the first 500 steps of a 5,000-step one), writes
the real stream (container header, quantised networks, coded latents) and decodes it with the
exact decoder. The RD cost is the training loss measured on that stream: bpp + lambda * 255^2 *
MSE (pixels on the 0..1 scale). The default model's stream at the same quality is the
reference row. Every point is saved at once, so a killed run continues where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

import aecodec
from aecodec import container

from .images import load_image
from .load import describe, machine_load


def _measure(img: np.ndarray, data: bytes, px: np.ndarray, lam: float) -> dict[str, Any]:
    h, w = img.shape[:2]
    mse = float(np.mean((px.astype(np.float64) - img.astype(np.float64)) ** 2))
    bpp = 8 * len(data) / (h * w)
    return {"bytes": len(data), "bpp": bpp, "psnr": 10 * math.log10(255.0**2 / max(mse, 1e-12)),
            "cost": bpp + lam * mse}  # the training loss: MSE there is on the 0..1 scale


def overfit_point(img: np.ndarray, quality: float, steps: int, seed: int = 0) -> dict[str, Any]:
    """Train, write and decode one real stream of `steps` training steps."""
    codec = aecodec.Codec("overfit")
    pipe = codec.pipeline
    h, w = img.shape[:2]
    t0, c0 = time.perf_counter(), time.process_time()
    res = pipe.fit(img, quality, 0, steps=steps, seed=seed)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    header = container.Header(codec.model.id, w, h, False, quality, tile=None, extras=(),
                              profile=codec.profile)
    data = container.pack(header, res.sections)
    px = aecodec.decompress(data)
    if not np.array_equal(px, res.pixels):
        raise AssertionError("the decoder's pixels differ from the encoder's")
    return {**_measure(img, data, px, pipe.family.lam(quality)), "encode_s": wall, "cpu_s": cpu}


def default_point(img: np.ndarray, quality: float) -> dict[str, Any]:
    """The default model's stream at the same quality: the reference row."""
    lam = aecodec.Codec("overfit").pipeline.family.lam(quality)
    data = aecodec.compress(img, quality=quality)
    return _measure(img, data, aecodec.decompress(data), lam)


def run(images: list[tuple[str, np.ndarray]], steps: list[int], quality: float, out: Path,
        log=print) -> dict[str, dict[str, Any]]:
    """Every point of every image, resumed from `out`/steps.json where it was measured."""
    out.mkdir(parents=True, exist_ok=True)
    state = out / "steps.json"
    done: dict[str, dict[str, Any]] = {}
    if state.is_file():
        done = json.loads(state.read_text()).get("points", {})
    load = describe(machine_load())
    for name, img in images:
        for n in ["default", *steps]:
            key = f"{name}|{n}|{quality:g}"
            if key in done:
                continue
            done[key] = (default_point(img, quality) if n == "default"
                         else overfit_point(img, quality, int(n)))
            log(f"{key}: {json.dumps({k: round(v, 4) for k, v in done[key].items()})}")
            tmp = state.with_suffix(".tmp")
            tmp.write_text(json.dumps({"quality": quality, "points": done}, indent=1))
            tmp.replace(state)
    (out / "steps.md").write_text(report(done, [n for n, _ in images], steps, quality, load))
    return done


def report(done: dict[str, dict[str, Any]], names: list[str], steps: list[int],
           quality: float, load: str) -> str:
    """A table per image: bpp, PSNR and RD cost of the real stream at each step count."""
    lines = [f"# Overfit family: RD cost of real streams against training steps (quality "
             f"{quality:g})", "",
             f"torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}; at the (last) "
             f"start: {load}.", ""]
    for name in names:
        lines += [f"## {name}", "", "| steps | bpp | PSNR (dB) | RD cost | encode (s) |",
                  "|---|---|---|---|---|"]
        for n in ["default", *steps]:
            p = done.get(f"{name}|{n}|{quality:g}")
            if p is None:
                continue
            label = "default model" if n == "default" else f"{n:,}"
            enc = f"{p['encode_s']:.0f}" if "encode_s" in p else "—"
            lines.append(f"| {label} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['cost']:.4f} | "
                         f"{enc} |")
        lines.append("")
    return "\n".join(lines)


@click.command("overfit-steps")
@click.argument("images", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--steps", default="250,500,1000,2000,5000", show_default=True,
              help="Comma list of training lengths.")
@click.option("--quality", type=click.FloatRange(1, 100), default=60, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder (steps.json, steps.md); a run there is continued.")
def command(images: tuple[Path, ...], steps: str, quality: float, out: Path) -> None:
    """RD cost of real overfit streams against training steps, resumable."""
    try:
        counts = [int(s) for s in steps.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"not a comma list of integers: {steps!r}",
                                 param_hint="--steps") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter("steps must be positive", param_hint="--steps")
    loaded = [(p.stem, load_image(p)) for p in images]
    run(loaded, counts, quality, out, log=click.echo)
    click.echo(f"wrote {out / 'steps.md'}")


if __name__ == "__main__":
    command()
