"""The manifest's fields checked for type and range before anything uses them.

A model folder's files are hash-checked, but its manifest's own values are not: a changed
stride, pad multiple, level count or halo would otherwise reach the codec as a division by
zero, a padding of a billion rows or a latent grid that does not match the networks. Every
field the runtime reads is checked here (docs/model-format.md gives the ranges), so a bad
manifest is one ModelError naming the field, raised before any weights are loaded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from .errors import ModelError

MAX_PAD = 4096  # pixels: a pad multiple, stride or hyper stride above this is not a model's
MAX_SIDE = 65535  # a fixed size's side
MAX_LEVELS = 1024
MAX_HALO = 64  # latents of receptive-field margin
MAX_CHANNELS = 4096


def check(m: Any, path: Path) -> None:
    """ModelError naming the first field of manifest `m` that has the wrong type or range."""
    where = f"{path}/manifest.json"
    if not isinstance(m, dict):
        raise ModelError(f"{where}: not a JSON object")
    for key in ("name", "family", "id", "sha256"):
        if not isinstance(m.get(key), str) or not m[key]:
            raise ModelError(f"{where}: '{key}' must be a non-empty string")
    if not re.fullmatch(r"[0-9a-fA-F]{8}", m["id"]):
        raise ModelError(f"{where}: 'id' must be 8 hex digits")
    files = m.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ModelError(f"{where}: 'files' must map file names to SHA-256 strings")
    if not isinstance(m.get("shares_files_with"), str | None):
        raise ModelError(f"{where}: 'shares_files_with' must be a folder name")
    image, rate, latent = (_section(m, key, where) for key in ("image", "rate", "latent"))
    if image.get("channels") not in (1, 3) or isinstance(image.get("channels"), bool):
        raise ModelError(f"{where}: image.channels must be 1 or 3")
    pad = _int(image, "pad_multiple", 1, MAX_PAD, where, "image", default=1)
    fixed = image.get("fixed_size")
    if fixed is not None:
        if not isinstance(fixed, list) or len(fixed) != 2:
            raise ModelError(f"{where}: image.fixed_size must be [height, width] or null")
        for side in fixed:
            _check_int(side, 1, MAX_SIDE, where, "image.fixed_size")
    levels = _int(rate, "levels", 1, MAX_LEVELS, where, "rate", default=1)
    for key, count in (("lambdas", levels), ("bpp_range", 2)):
        values = rate.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != count or not all(
                _finite(v) and v >= 0 for v in values):
            raise ModelError(f"{where}: rate.{key} must be {count} non-negative numbers")
    stride = _int(latent, "stride", 1, MAX_PAD, where, "latent")
    hyper = _int(latent, "hyper_stride", 1, MAX_PAD, where, "latent", default=stride)
    if hyper % stride:
        raise ModelError(f"{where}: latent.hyper_stride must be a multiple of latent.stride")
    if fixed is None and pad % hyper:
        raise ModelError(f"{where}: image.pad_multiple must be a multiple of the latent strides "
                         "(latent.stride, latent.hyper_stride)")
    for key in ("analysis_halo", "synthesis_halo", "hyper_analysis_halo"):
        _int(latent, key, 0, MAX_HALO, where, "latent", default=0)
    _int(latent, "channels", 1, MAX_CHANNELS, where, "latent", default=1)
    _int(m, "mean_bits", 0, 16, where, "", default=0)
    if not isinstance(m.get("default", False), bool):
        raise ModelError(f"{where}: 'default' must be true or false")


def _section(m: dict, key: str, where: str) -> dict:
    value = m.get(key, {})
    if not isinstance(value, dict):
        raise ModelError(f"{where}: '{key}' must be an object")
    return value


def _int(d: dict, key: str, lo: int, hi: int, where: str, prefix: str,
         default: int | None = None) -> int:
    """d[key] as an integer in lo..hi (a missing or null key: `default`, if there is one)."""
    name = f"{prefix}.{key}" if prefix else key
    value = d.get(key)
    if value is None:
        if default is None:
            raise ModelError(f"{where}: {name} is missing")
        return default
    return _check_int(value, lo, hi, where, name)


def _check_int(value: Any, lo: int, hi: int, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ModelError(f"{where}: {name} must be an integer in {lo}..{hi}, got {value!r:.40}")
    return value


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
