"""Measure an exported model on a folder of images and record the result in its manifest.

The numbers come from the real runtime (file sizes with headers, decoded pixels), side by side
with Pillow's JPEG on the same images, through the benchmark's own sweep and BD-rate code: a
bench module (runtime only), reached from `aecodec train evaluate` and `aecodec train photo
--eval` by name, so the torch side imports no bench code.

    aecodec train evaluate RESULTS.json [KEY]      # bench results into manifests
    aecodec train evaluate --folder MODEL IMAGES   # measure one folder, record it
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from aecodec.manifest import update_manifest


def evaluate_folder(model_folder: Path, eval_dir: Path, points: int = 8,
                    threads: int = 2) -> dict[str, Any]:
    """RD curve of the model and of JPEG on `eval_dir`, BD-rate against JPEG (cubic fit)."""
    from .bdrate import bd_psnr, bd_rate
    from .classical import classical_codecs
    from .images import load_folder
    from .learned import AecodecModel
    from .sweep import mean_curves, run_sweep

    images = load_folder(eval_dir)
    codecs = {
        "model": AecodecModel("model", str(model_folder), threads),
        "jpeg": classical_codecs(threads)["jpeg"],
    }
    curves = mean_curves(run_sweep(images, codecs, points))
    model, jpeg = curves["model"], curves["jpeg"]

    def col(c: list[dict], k: str) -> list[float]:
        return [p[k] for p in c]

    return {
        "images": len(images),
        "folder": eval_dir.name,
        "curve": [{k: p[k] for k in ("setting", "bpp", "psnr", "ms_ssim")} for p in model],
        "jpeg_curve": [{k: p[k] for k in ("setting", "bpp", "psnr")} for p in jpeg],
        "bd_rate_vs_jpeg": bd_rate(col(jpeg, "bpp"), col(jpeg, "psnr"),
                                   col(model, "bpp"), col(model, "psnr")),
        "bd_psnr_vs_jpeg": bd_psnr(col(jpeg, "bpp"), col(jpeg, "psnr"),
                                   col(model, "bpp"), col(model, "psnr")),
        "method": "PSNR-RGB, mean over images per setting; Bjøntegaard cubic fit of log-rate",
    }


def record_results(model_folder: Path, key: str, results: dict[str, Any]) -> None:
    """Write `results[key]` into the model's manifest, and its measured bpp range."""
    lo, hi = results["curve"][0]["bpp"], results["curve"][-1]["bpp"]

    def change(m: dict[str, Any]) -> None:
        m.setdefault("results", {})[key] = results
        m.setdefault("rate", {})["bpp_range"] = [round(lo, 3), round(hi, 3)]

    update_manifest(model_folder, change)


def results_from_bench(results: dict[str, Any], model: str) -> dict[str, Any] | None:
    """A model's entry for its manifest, taken from an `aecodec bench` results.json."""
    key = f"aecodec-{model}"
    if key not in results.get("curves", {}):
        return None
    curve = results["curves"][key]
    bd = results.get("bd", {}).get("codecs", {})
    speed = (results.get("speed") or {}).get("codecs", {}).get(key, {})  # none with --repeats 0
    env = results.get("environment", {})
    return {
        "images": (results.get("images") or {}).get("count"),
        "curve": [{k: p.get(k) for k in ("setting", "bpp", "psnr", "ms_ssim")} for p in curve],
        "bd_rate_vs_jpeg": bd.get(key, {}).get("bd_rate"),
        "bd_psnr_vs_jpeg": bd.get(key, {}).get("bd_psnr"),
        "bd_rate_vs": {c: v.get("bd_rate") for c, v in bd.items()},
        "speed": {k: speed.get(k) for k in ("bpp", "enc_ms", "dec_ms", "threads")},
        "method": results.get("bd", {}).get("method"),
        "machine": {k: env.get(k) for k in ("cpu", "threads", "date")},
    }


@click.command("evaluate")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("target", required=False)
@click.option("--folder", "measure", is_flag=True,
              help="SOURCE is a model folder and TARGET a folder of images to measure it on.")
def command(source: Path, target: str | None, measure: bool) -> None:
    """Evaluate a model folder on an image folder, or record bench results in manifests.

    `RESULTS.json [KEY]`: copy an `aecodec bench` run's results into the manifests of the
    shipped models it measured (under `results[KEY]`, default 'kodak'). `--folder MODEL
    IMAGES`: measure one model folder on a folder of images and record it under
    `results[IMAGES' name]`."""
    from aecodec.errors import AecodecError
    from aecodec.model import shipped

    if measure:
        if target is None or not Path(target).is_dir():
            raise click.UsageError("--folder MODEL IMAGES: give the folder of images")
        images = Path(target)
        try:
            res = evaluate_folder(source, images)
        except AecodecError as e:  # no images, an unreadable one, a bad model: one line
            raise click.ClickException(str(e)) from None
        record_results(source, images.name, res)
        click.echo(f"{images.name}: BD-rate vs JPEG {res['bd_rate_vs_jpeg']:+.1%}")
        return
    try:
        results = json.loads(source.read_text())
    except (OSError, ValueError) as e:
        raise click.ClickException(f"{source}: not a bench results.json ({e})") from None
    key = target or "kodak"
    for info in shipped():
        entry = results_from_bench(results, info.name)
        if entry is not None:
            record_results(info.path, key, entry)
            click.echo(f"{info.name}: BD-rate vs JPEG {entry['bd_rate_vs_jpeg']:+.1%}")


def main(argv: list[str] | None = None) -> None:
    """`python -m aecodec.bench.evaluate`: the same command as `aecodec train evaluate`."""
    command.main(args=argv, prog_name="python -m aecodec.bench.evaluate")


if __name__ == "__main__":
    main()
