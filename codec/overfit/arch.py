"""The per-image family's architecture: what a model folder fixes and every stream shares.

A stream of this family carries its own networks; the model folder only fixes their shapes and
the rules to decode them (docs/format.md, "overfit family"). Nothing here imports torch: the
encoder (`fit.py`) and the exact decoder (`decode.py`) both read this one description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ModelError

# causal neighbours (dy, dx) of a latent, already decoded in raster order: dx <= 1 one row up
# and dx <= 2 two rows up keep a wavefront slope of 2 (`wavefront.py`)
CONTEXT = ((0, -1), (0, -2), (0, -3), (-1, -3), (-1, -2), (-1, -1), (-1, 0), (-1, 1),
           (-2, -2), (-2, -1), (-2, 0), (-2, 1), (-2, 2), (-3, -1), (-3, 0), (-3, 1))
CTX_UP, CTX_LEFT, CTX_RIGHT = 3, 3, 2  # the context's reach
# separable x2 upsampling, bicubic (a = -0.75) at half-pixel phases, in 1/128ths: output 2i
# reads inputs i-2..i+1, output 2i+1 reads i-1..i+2 (edges replicated)
UP_EVEN = (-3, 29, 111, -9)
UP_ODD = (-9, 111, 29, -3)
UP_SHIFT = 7


@dataclass(frozen=True)
class Arch:
    """Shapes and fixed-point rules of the family (the manifest's `architecture`)."""

    grids: int  # latent grids at 1, 1/2, ... 1/2**(grids-1) of the image size
    arm_width: int  # hidden width of the autoregressive module (= len(CONTEXT))
    synth_width: int  # the 1x1 synthesis layer's width
    frac_bits: int  # fixed point of activations: multiples of 2**-frac_bits
    act_max: float  # activations clipped to +-act_max
    latent_max: int  # |latent| bound: larger values are refused
    weight_max: int  # |quantised weight| bound
    log_scale_min: float  # the Laplace scale's log range, covered by the tables
    log_scale_max: float
    log_scale_steps: int  # table rows per unit of log scale
    mu_steps: int  # table columns per unit of mean offset

    @classmethod
    def from_manifest(cls, m: dict[str, Any]) -> Arch:
        try:
            a = m["architecture"]
            arch = cls(int(a["grids"]), int(a["arm_width"]), int(a["synth_width"]),
                       int(a["frac_bits"]), float(a["act_max"]), int(a["latent_max"]),
                       int(a["weight_max"]), float(a["log_scale_min"]),
                       float(a["log_scale_max"]), int(a["log_scale_steps"]),
                       int(a["mu_steps"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"overfit architecture: missing or malformed field ({e!r})") from None
        arch.check()
        return arch

    def check(self) -> None:
        """Bounds that keep every decoder sum exact in float64 (see `fixed.py`)."""
        ok = (1 <= self.grids <= 8 and self.arm_width == len(CONTEXT)
              and 1 <= self.synth_width <= 128 and 6 <= self.frac_bits <= 16
              and 0 < self.act_max <= 2**12 and 1 <= self.latent_max <= 2**12
              and 1 <= self.weight_max <= 2**15 and self.log_scale_min < self.log_scale_max
              and 1 <= self.log_scale_steps <= 64 and 1 <= self.mu_steps <= 64
              and self.rows * self.mu_steps <= 4096)
        if not ok:
            raise ModelError("overfit architecture out of its supported ranges")

    @property
    def rows(self) -> int:
        """Table rows: log-scale bins."""
        return round((self.log_scale_max - self.log_scale_min) * self.log_scale_steps)

    def layers(self) -> list[tuple[str, tuple[int, ...]]]:
        """Every parameter tensor of a stream, in stream order: (name, shape)."""
        c, s = self.arm_width, self.synth_width
        return [
            ("arm.w1", (c, c)), ("arm.b1", (c,)),
            ("arm.w2", (c, c)), ("arm.b2", (c,)),
            ("arm.w3", (2, c)), ("arm.b3", (2,)),
            ("arm.ws", (2, c)),
            ("syn.w1", (s, self.grids)), ("syn.b1", (s,)),
            ("syn.w2", (3, s)), ("syn.b2", (3,)),
            ("syn.w3", (3, 3, 3, 3)), ("syn.b3", (3,)),
            ("syn.w4", (3, 3, 3, 3)), ("syn.b4", (3,)),
        ]


def grid_shapes(h: int, w: int, grids: int) -> list[tuple[int, int]]:
    """(rows, cols) of each latent grid of an h x w image: ceil(h / 2**k) x ceil(w / 2**k)."""
    return [(-(-h // (1 << k)), -(-w // (1 << k))) for k in range(grids)]
