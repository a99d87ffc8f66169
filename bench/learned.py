"""aecodec's own models as bench codecs: every shipped model that can code a photo."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import aecodec


def is_photo_model(info: aecodec.ModelInfo) -> bool:
    """Fixed-size (MNIST) and greyscale models cannot code photos: leave them out."""
    return info.fixed_size is None and info.channels == 3


@dataclass
class AecodecModel:
    """One aecodec model (a shipped name or a folder); the sweep varies quality in [1, 100]."""

    name: str  # curve name, "aecodec-<model>"
    model: str
    threads: int = 1
    lo: float = 1
    hi: float = 100
    reference: bool = False  # the model files run as they are (the runtime before issue 11)
    effort: int = 0  # encoder-side optimisation level (docs/effort.md)
    every: int = 1  # only every k-th image of the run (the slow efforts' named subset)
    _codec: aecodec.Codec | None = field(default=None, repr=False)

    @property
    def codec(self) -> aecodec.Codec:
        if self._codec is None:
            if self.reference:
                model = aecodec.Model(aecodec.model.find(self.model), threads=self.threads,
                                      rewrite=False, spinning=True)
                self._codec = aecodec.Codec(model)
            else:
                self._codec = aecodec.Codec(model=self.model, threads=self.threads)
        return self._codec

    @property
    def slow(self) -> bool:
        """Encoders that train per image (the overfit family): minutes per point, so they run
        only when named, get no warm-up and no speed repeats (their sweep times stand)."""
        from aecodec import model

        return model.find(self.model).family == "overfit"

    @property
    def effective_threads(self) -> int:
        return self.threads

    def settings(self, points: int) -> list[float]:
        if points == 1:
            return [float(round((self.lo + self.hi) / 2))]
        return [float(round(v)) for v in np.linspace(self.lo, self.hi, points)]

    def encode(self, img: np.ndarray, setting: float) -> bytes:
        data = self.codec.compress(img, quality=int(setting), effort=self.effort)
        # which model wrote it: the overfit family falls back to the default model's stream
        # where that one's RD cost is lower (docs/overfit.md)
        self.wrote = aecodec.stream_info(data)["model"]
        return data

    def decode(self, data: bytes) -> np.ndarray:
        return self.codec.decompress(data)


def with_efforts(models: dict[str, AecodecModel], efforts: dict[int, int]) -> dict:
    """The models plus `<name>+e<N>` for each effort N > 0 (on every k-th image, `efforts[N]`)
    of each model that effort can optimise (aecodec.effort.check_model)."""
    from aecodec import effort, model

    out = dict(models)
    for name, m in models.items():
        if m.reference or m.effort or m.slow:  # the overfit family: effort = its training length
            continue
        info = model.find(m.model)
        for e, every in sorted(efforts.items()):
            try:
                effort.check_model(info, e)
            except aecodec.ModelError:
                continue
            if e:
                out[f"{name}+e{e}"] = AecodecModel(f"{name}+e{e}", m.model, m.threads, m.lo,
                                                   m.hi, effort=e, every=every)
    return out


def aecodec_models(threads: int = 1) -> dict[str, AecodecModel]:
    """Photo-capable shipped models keyed ``aecodec-<model>``."""
    return {f"aecodec-{i.name}": AecodecModel(f"aecodec-{i.name}", i.name, threads)
            for i in aecodec.models() if is_photo_model(i)}
