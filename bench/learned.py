"""Adapter for aecodec's own models, robust to the runtime API not existing yet.

The runtime API (``aecodec.models()``, ``aecodec.Codec(model=, threads=)``) is written in
parallel with the bench; when it is missing the bench simply has no aecodec curves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np


def _model_name(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        return str(entry.get("name"))
    return str(getattr(entry, "name", entry))


def _manifest(entry: Any, name: str) -> dict[str, Any]:
    """The model's manifest, from the models() entry if it carries one, else from package data."""
    if isinstance(entry, dict):
        return entry.get("manifest", entry)
    if hasattr(entry, "family"):  # aecodec.ModelInfo: family, fixed_size, channels attributes
        return {"family": entry.family, "channels": getattr(entry, "channels", None),
                "image": {"fixed_size": getattr(entry, "fixed_size", None)}}
    for attr in ("manifest", "info"):
        m = getattr(entry, attr, None)
        if isinstance(m, dict):
            return m
    try:
        path = resources.files("aecodec") / "models" / name / "manifest.json"
        return json.loads(path.read_text())
    except (OSError, ValueError, ModuleNotFoundError):
        return {}


def is_photo_model(manifest: dict[str, Any]) -> bool:
    """Fixed-size factorized (MNIST) and greyscale models cannot code photos: leave them out."""
    image = manifest.get("image") or {}
    fixed = image.get("fixed_size")
    channels = manifest.get("channels") or image.get("channels")
    return not ((manifest.get("family") == "factorized" and fixed) or channels == 1)


@dataclass
class AecodecModel:
    """One shipped aecodec model; the sweep varies ``quality`` in [1, 100]."""

    name: str  # curve name, "aecodec-<model>"
    model: str
    threads: int = 1
    lo: float = 1
    hi: float = 100
    reference: bool = False  # the model files run as they are (the runtime before issue 11)
    _codec: Any = None

    @property
    def codec(self) -> Any:
        if self._codec is None:
            import aecodec

            if self.reference:
                from aecodec.model import Model, find

                model = Model(find(self.model), threads=self.threads, rewrite=False,
                              spinning=True)
                self._codec = aecodec.Codec(model)
            else:
                self._codec = aecodec.Codec(model=self.model, threads=self.threads)
        return self._codec

    @property
    def effective_threads(self) -> int:
        return self.threads

    def settings(self, points: int) -> list[float]:
        if points == 1:
            return [float(round((self.lo + self.hi) / 2))]
        return [float(round(v)) for v in np.linspace(self.lo, self.hi, points)]

    def encode(self, img: np.ndarray, setting: float) -> bytes:
        return bytes(self.codec.compress(img, quality=int(setting)))

    def decode(self, data: bytes) -> np.ndarray:
        out = np.asarray(self.codec.decompress(data))
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=-1)
        if out.dtype != np.uint8:  # tolerate a float [0, 1] decoder output
            out = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
        return out


def aecodec_models(threads: int = 1) -> dict[str, AecodecModel]:
    """Photo-capable shipped models keyed ``aecodec-<model>``; empty if the API isn't there."""
    try:
        import aecodec

        entries = list(aecodec.models())
        _ = aecodec.Codec
    except (ImportError, AttributeError):
        return {}
    out: dict[str, AecodecModel] = {}
    for entry in entries:
        name = _model_name(entry)
        if is_photo_model(_manifest(entry, name)):
            out[f"aecodec-{name}"] = AecodecModel(f"aecodec-{name}", name, threads)
    return out
