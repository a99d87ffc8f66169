"""What `aecodec train photo` decides around the loop: the recipe of a fine-tune, the
exported model's name, and the before/after table a run ends with.

A fine-tune (a start from trained weights) differs from training from scratch: a fresh Adam
moves every weight by about the learning rate in its first steps, whatever the gradient's
size, and at the from-scratch rate (1e-4) three steps took the shipped hyperprior from
38.2 to 31.9 dB at its level 6 of 8 (3 validation crops, batch 4 of 128-pixel crops). So a
fine-tune starts at a tenth of that rate with a linear warm-up, trains the hyper-decoder
quantization-aware from the first step (the shipped one already is), and keeps the start's
rate levels (docs/training.md has the measurements).
"""

from __future__ import annotations

import re
from pathlib import Path

from aecodec import model as runtime_models

SCRATCH = {"lr": 1e-4, "warmup": 0, "qat_from": 0.5}
FINE_TUNE = {"lr": 1e-5, "warmup": 100, "qat_from": 0.0}
EXPORT_RESERVE_S = 60.0  # the model folder's export, reserved out of --minutes (measured: 32 s)


def recipe_defaults(fine_tune: bool, lr: float | None, warmup: int | None,
                    qat_from: float | None) -> dict:
    """The options left unset, from the fine-tune or the from-scratch defaults."""
    base = FINE_TUNE if fine_tune else SCRATCH
    given = {"lr": lr, "warmup": warmup, "qat_from": qat_from}
    return {k: base[k] if v is None else v for k, v in given.items()}


def default_name(start: str | None, family: str, out: Path) -> str:
    """`<start or family>-<run folder>`: never a shipped model's name, which the exported
    model would otherwise shadow in listings and streams' descriptions."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", out.resolve().name).strip("-") or "run"
    name = f"{start or family}-{stem}"
    shipped = {p.name for p in runtime_models.MODELS_DIR.iterdir()} \
        if runtime_models.MODELS_DIR.is_dir() else set()
    return f"{name}-tuned" if name in shipped else name


def table(record: dict, lambdas: tuple[float, ...], extend_low: int, images: int) -> str:
    """The validation at the start against the exported (or last) point: bpp and PSNR per
    trained level, with the quality each level is at in the exported layout."""
    points = record.get("validation", [])
    if not points:
        return ""
    before = points[0]
    step = record.get("exported_step", points[-1]["step"])
    after = next((p for p in points if p["step"] == step), points[-1])
    label = "exported" if "exported_step" in record else "last"
    levels = len(lambdas) + extend_low
    lines = [f"validation on {images} held-out image(s): step {before['step']} (start) -> "
             f"step {after['step']} ({label})",
             f"{'level':>5} {'quality':>7} {'bpp':>17} {'PSNR dB':>16}"]
    for k in range(len(lambdas)):
        key_b, key_p = f"bpp_level{k}", f"psnr_level{k}"
        if key_b not in before or key_b not in after:
            continue
        q = 1 + (k + extend_low) * 99 / max(levels - 1, 1)
        lines.append(f"{k + extend_low:>5} {q:>7.0f} {before[key_b]:>7.3f} -> "
                     f"{after[key_b]:<7.3f} {before[key_p]:>6.2f} -> {after[key_p]:<6.2f}")
    if "cost" in before and "cost" in after:
        change = (after["cost"] / before["cost"] - 1) * 100
        lines.append(f"cost (the loss, mean over levels; lower is better): "
                     f"{before['cost']:.5g} -> {after['cost']:.5g} ({change:+.2f} %)")
    return "\n".join(lines)
