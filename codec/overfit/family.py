"""The overfit family: every image trains its own latents and networks at encode time.

A model folder of this family holds no weights: `arch.json` (shapes and fixed-point rules,
hashed into the id, so a stream always meets the rules that wrote it) and `tables.npz` (the
discrete Laplace tables of the latents). A stream holds two sections: the quantised networks
(params.py) and the latents (latents.py). Decoding is exact numpy (fixed.py); encoding trains
with torch (fit.py, the `effort` extra), imported only here and only when encoding.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

from .. import container, entropy, rate
from ..encoded import Encoded
from ..errors import AecodecError, CorruptStreamError, ModelError
from ..latent.base import LatentCodec
from . import latents, params, quantize
from .arch import Arch
from .synthesis import synthesize

# training steps per effort level (docs/overfit.md: RD cost against steps; 2,000 at effort 0
# take about 7 minutes at 768x512 on 2 cores, inside the 10 the family allows itself)
STEPS = {0: 2000, 1: 4000, 2: 8000, 3: 16000, 4: 32000}
MAX_PIXELS = 1 << 24  # the family's own limit: 16.7 megapixels
INSTALL = "pip install 'aecodec[effort]'"
SEED = 0


class OverfitCodec(LatentCodec):
    """The family's part of a loaded model: its architecture and tables (no transforms)."""

    family = "overfit"
    transforms = ()

    @classmethod
    def files(cls) -> tuple[str, ...]:
        return ("arch.json", "tables.npz")

    def __init__(self, model):
        self.model = model
        self.channels = 1
        try:
            self.arch = Arch.from_manifest({"architecture": json.loads(model.blob("arch.json"))})
        except ValueError as e:
            raise ModelError(f"{model.path}/arch.json: unreadable ({e})") from None
        self.tables = entropy.TableSet.from_npz(model.arrays("tables.npz"), "lat")
        if len(self.tables) != self.arch.rows * self.arch.mu_steps:
            raise ModelError(f"{model.path}: tables.npz does not match arch.json")
        lam = model.info.manifest.get("rate", {}).get("lambdas")
        try:
            self.lambdas = np.asarray(lam, np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ModelError(f"{model.path}: manifest lacks rate.lambdas") from None
        if not self.lambdas.size or not np.all(self.lambdas > 0):
            raise ModelError(f"{model.path}: rate.lambdas must be positive")

    def pipeline(self, codec):
        return OverfitPipeline(codec, self)

    def encode(self, *a, **k):  # the latent-codec entry of transform families
        raise ModelError("the overfit family has no analysis transform: use Codec.encode")

    def decode(self, *a, **k):
        raise ModelError("the overfit family has no latent-only decode: use Codec.decompress")

    def lam(self, quality: float) -> float:
        """The RD trade-off of a quality: the other models' scale (rate.at_quality)."""
        return float(rate.at_quality(self.lambdas, quality))


@dataclass
class FitResult:
    sections: list[bytes]
    bits: float
    pixels: np.ndarray
    log: list[dict]


class OverfitPipeline:
    """Image <-> sections for the overfit family (the seam `Codec` calls, codec/pipeline.py)."""

    def __init__(self, codec, family: OverfitCodec):
        self.codec = codec
        self.family = family
        self.arch = family.arch

    def check_size(self, h: int, w: int) -> None:
        from ..errors import ImageTooLargeError

        if h * w > MAX_PIXELS:
            raise ImageTooLargeError(f"a {w}x{h} image is over the overfit family's limit of "
                                     f"{MAX_PIXELS} pixels")

    # -- encoding -------------------------------------------------------------------------

    def fit(self, a: np.ndarray, quality: float, effort: int, device: str | None = None,
            steps: int | None = None, seed: int = SEED, progress=None) -> FitResult:
        """Train, quantise, code and decode one prepared image (H x W x 3 uint8)."""
        try:
            from . import fit as fitting
        except ImportError:
            raise AecodecError(f"encoding with the overfit family needs torch: {INSTALL}"
                               ) from None
        device = device or os.environ.get("AECODEC_DEVICE", "cpu")
        fitting.check_device(device)
        self.check_size(*a.shape[:2])
        lam = self.family.lam(quality)
        sched = fitting.Schedule.at(steps or STEPS[effort], lam)
        fitted = fitting.fit(a, self.arch, lam, sched, seed, device, progress)
        h, w = a.shape[:2]

        def cost(vals: dict[str, np.ndarray]) -> float:
            bits, mse = fitting.rd_cost(self.arch, a, fitted.grids, vals, lam, device)
            return bits + lam * 255.0**2 * mse * h * w

        q = quantize.search(self.arch, fitted.params, cost)
        p = params.dequantize(q)
        grids = [np.clip(g, -self.arch.latent_max, self.arch.latent_max) for g in fitted.grids]
        lat, bits = latents.encode(p, grids, self.arch, self.family.tables)
        sections = [params.pack(self.arch, q), lat]
        return FitResult(sections, bits, synthesize(p, grids, self.arch), fitted.log)

    def encode(self, a, gray, quality, extra, effort):
        """Train at the quality's lambda; the default model's stream instead if its RD cost
        (bits + lambda * 255**2 * SSE, the training loss) is lower: never worse than it."""
        c = self.codec
        q = c.stream_profile.quality(quality)
        h, w = a.shape[:2]
        res = self.fit(a, q, effort)
        header = container.Header(c.model.id, w, h, gray, q, tile=None, extras=tuple(extra),
                                  profile=c.profile)
        enc = Encoded(container.pack(header, res.sections + list(extra.values())), w, h, q,
                      res.bits)
        base = c.base()
        if base.model.id == c.model.id:
            return enc
        alt = base.pipeline.encode(a, gray, q, extra, 0)
        alt_px = base.pipeline.decode(container.parse(alt.data))
        lam = self.family.lam(q)

        def cost(data: bytes, px: np.ndarray) -> float:
            ref = a if px.ndim == 3 else ((a.astype(np.int32).sum(axis=2) * 2 + 3) // 6)
            sse = float(np.sum((px.astype(np.float64) - ref.reshape(px.shape)) ** 2))
            return 8 * len(data) + lam * sse

        mine = res.pixels if not gray else self.decode_sections(res.sections, h, w, True)
        return enc if cost(enc.data, mine) <= cost(alt.data, alt_px) else alt

    def encode_to_bpp(self, a, gray, bpp, extra, effort):
        """At most three trainings: the default model's best quality within the budget first
        (this family's streams are smaller at one quality), then the quality at which the
        default model's rate grows by the measured margin; the highest that fits is kept."""
        import warnings

        from ..errors import RateWarning

        base = self.codec.base()

        def base_q(budget: float) -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RateWarning)
                return base.search_bpp(
                    lambda q: base.pipeline.encode(a, gray, q, extra, 0), budget).quality

        q0 = base_q(bpp)
        enc = self.encode(a, gray, q0, extra, effort)
        best = enc if enc.bpp <= bpp else None
        for _ in range(2):
            if enc.bpp <= bpp and enc.quality >= 100:
                break
            ratio = bpp / max(enc.bpp, 1e-9)
            base_bpp = base.pipeline.encode(a, gray, enc.quality, extra, 0).bpp
            q1 = base_q(base_bpp * ratio)
            if q1 == enc.quality:
                q1 = min(100.0, q1 + 1) if enc.bpp <= bpp else max(1.0, q1 - 1)
            if best is not None and q1 <= best.quality:
                break
            enc = self.encode(a, gray, q1, extra, effort)
            if enc.bpp <= bpp and (best is None or enc.quality > best.quality):
                best = enc
        if best is None:
            best = enc
            warnings.warn(f"{bpp:g} bpp cannot be met: the smallest stream tried is "
                          f"{enc.bpp:.4f} bpp (quality {enc.quality:g})", RateWarning,
                          stacklevel=4)
        return best

    def decode(self, stream) -> np.ndarray:
        """Pixels (H x W x 3, or H x W if gray) of a parsed stream of this model, or of the
        default model's stream `encode` returned in its place (the codec that wrote a stream
        decodes it)."""
        if stream.header.model_id != self.codec.model.id:
            base = self.codec.base()
            if stream.header.model_id == base.model.id:
                return base.pipeline.decode(stream)
        header, h, w = self.codec.check_header(stream)
        return self.decode_sections(stream.latent, h, w, header.gray)

    # -- decoding -------------------------------------------------------------------------

    def decode_sections(self, sections: list[bytes], h: int, w: int, gray: bool) -> np.ndarray:
        """Pixels (H x W x 3, or H x W if gray) from the stream's sections."""
        self.check_size(h, w)
        if len(sections) != 2:
            raise CorruptStreamError("an overfit stream has exactly two sections")
        p = params.dequantize(params.unpack(self.arch, sections[0]))
        grids = latents.decode(p, sections[1], h, w, self.arch, self.family.tables)
        px = synthesize(p, grids, self.arch)
        if gray:
            return ((px.astype(np.int32).sum(axis=2) * 2 + 3) // 6).astype(np.uint8)
        return px


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
