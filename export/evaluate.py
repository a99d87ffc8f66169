"""Measure an exported model on a folder of images and record the result in its manifest.

The numbers come from the real runtime (file sizes with headers, decoded pixels), side by side
with Pillow's JPEG on the same images, through the benchmark's own sweep and BD-rate code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def evaluate_folder(model_folder: Path, eval_dir: Path, points: int = 8,
                    threads: int = 2) -> dict[str, Any]:
    """RD curve of the model and of JPEG on `eval_dir`, BD-rate against JPEG (cubic fit)."""
    from aecodec.bench.bdrate import bd_psnr, bd_rate
    from aecodec.bench.classical import classical_codecs
    from aecodec.bench.images import load_folder
    from aecodec.bench.learned import AecodecModel
    from aecodec.bench.sweep import mean_curves, run_sweep

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
    """Write `results[key]` into manifest.json (results are not part of the model's hash)."""
    path = model_folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.setdefault("results", {})[key] = results
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(path)
