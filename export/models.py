"""Model families: transforms plus a latent codec, variable-rate through gain units.

- `Factorized`: Ballé et al. 2018's factorized prior, the small fast option.
- `Hyperprior`: Minnen et al. 2018's mean-scale hyperprior with an integer hyper-decoder.

Both are variable-rate by gain units (Cui et al. 2021): per rate level k, y is scaled channel-wise
by gain[k] before rounding and by inv_gain[k] after, so one network covers the whole range.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .entropy import EntropyBottleneck, gaussian_likelihood, noisy, scale_from_index, ste_round
from .intnet import IntHyperSynthesis
from .layers import GDN, conv, freeze_gdn, upsample

# CompressAI's MSE lambdas for its qualities 1..8: about 0.1 to 2 bpp on Kodak.
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


@dataclass
class Config:
    family: str = "hyperprior"
    n: int = 128
    m: int = 192
    nz: int = 128
    upsample: str = "subpel"
    lambdas: tuple[float, ...] = field(default_factory=lambda: LAMBDAS)

    def to_dict(self) -> dict:
        return asdict(self)


def analysis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(
        conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m)
    )


def synthesis(n: int, m: int, kind: str,
              widths: tuple[int, int, int] | None = None) -> nn.Sequential:
    """Three upsampling stages of `widths` channels each (default n, n, n), then pixels."""
    a, b, c = widths or (n, n, n)
    return nn.Sequential(
        upsample(m, a, kind), GDN(a, inverse=True),
        upsample(a, b, kind), GDN(b, inverse=True),
        upsample(b, c, kind), GDN(c, inverse=True),
        upsample(c, 3, kind),
    )  # fmt: skip


class Gains(nn.Module):
    """Per-level, per-channel gains, stored as logs; level 0 is the lowest rate."""

    def __init__(self, lambdas: tuple[float, ...], m: int) -> None:
        super().__init__()
        ref = math.exp(sum(math.log(v) for v in lambdas) / len(lambdas))
        init = torch.tensor([0.5 * math.log(v / ref) for v in lambdas])[:, None].repeat(1, m)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())

    def forward(self, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """level: [B] int -> gain, inv_gain as [B, M, 1, 1]."""
        g = torch.exp(self.log_gain[level])[:, :, None, None]
        ig = torch.exp(self.log_inv_gain[level])[:, :, None, None]
        return g, ig


def at_positions(log_table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A per-level table of logs [K, M] at continuous level positions t [B] -> [B, M]:
    geometric interpolation between levels floor(t) and floor(t) + 1, and below level 0 the
    two lowest continued (the exported extra low levels). The torch twin of
    `aecodec.rate.at_quality`, which `quality_position` maps qualities onto (tested)."""
    lo = t.floor().long().clamp(0, log_table.shape[0] - 2)
    f = (t - lo)[:, None]
    return torch.exp(log_table[lo] * (1 - f) + log_table[lo + 1] * f)


def quality_position(quality: torch.Tensor, levels: int) -> torch.Tensor:
    """The level position of a quality 1..100 among `levels` (docs/format.md)."""
    return (quality.float() - 1) / 99 * (levels - 1)


class Codec(nn.Module):
    """Shared pieces: transforms, gains, and the rate-distortion forward pass."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.g_a = analysis(cfg.n, cfg.m)
        self.g_s = synthesis(cfg.n, cfg.m, cfg.upsample)
        self.gains = Gains(cfg.lambdas, cfg.m)

    def aux_loss(self) -> torch.Tensor:
        return sum(mod.aux_loss() for mod in self.modules() if isinstance(mod, EntropyBottleneck))

    def freeze(self) -> None:
        freeze_gdn(self)


class Factorized(Codec):
    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.bottleneck = EntropyBottleneck(cfg.m)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> dict[str, torch.Tensor]:
        g, ig = self.gains(level)
        y = self.g_a(x).float() * g
        lik = self.bottleneck.likelihood(noisy(y) if self.training else torch.round(y))
        x_hat = self.g_s(ste_round(y) * ig)
        return {"x_hat": x_hat, "bits": -torch.log2(lik).sum(dim=(1, 2, 3))}


class Hyperprior(Codec):
    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        n, m, nz = cfg.n, cfg.m, cfg.nz
        self.h_a = nn.Sequential(
            conv(m, n, 3, 1), nn.LeakyReLU(inplace=True),
            conv(n, n, 5, 2), nn.LeakyReLU(inplace=True),
            conv(n, nz, 5, 2),
        )  # fmt: skip
        self.h_s = IntHyperSynthesis(nz, n, m)
        self.bottleneck = EntropyBottleneck(nz)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> dict[str, torch.Tensor]:
        g, ig = self.gains(level)
        y = self.g_a(x).float() * g
        z = self.h_a(y).float()
        z_hat = ste_round(z) if self.training else torch.round(z)
        z_lik = self.bottleneck.likelihood(noisy(z) if self.training else z_hat)
        mean, idx = self.h_s(z_hat)
        v = y - mean
        y_lik = gaussian_likelihood(noisy(v) if self.training else torch.round(v),
                                    scale_from_index(idx))
        x_hat = self.g_s(ste_round(v) * ig + mean * ig)
        bits = -torch.log2(y_lik).sum(dim=(1, 2, 3)) - torch.log2(z_lik).sum(dim=(1, 2, 3))
        return {"x_hat": x_hat, "bits": bits}


def frozen(model: Codec) -> Codec:
    """A trained base as the shipped runtime runs it, for trainings of other parts: eval mode,
    the integer hyper-decoder quantised, no parameter learning."""
    model.eval()
    if hasattr(model, "h_s"):
        model.h_s.quantize = True
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build(cfg: Config) -> Codec:
    return {"factorized": Factorized, "hyperprior": Hyperprior}[cfg.family](cfg)


def load_weights(path: Path, device: str = "cpu") -> tuple[Codec, dict]:
    """A model from `weights.pt` or `checkpoint.pt`, with its training record."""
    state = torch.load(path, map_location=device, weights_only=False)
    return model_from_state(state, device), state


def model_from_state(state: dict, device: str = "cpu") -> Codec:
    """The model a weights file's contents describe (its config and state dict)."""
    model = build(Config(**state["config"])).to(device)
    model.load_state_dict(state["model"])
    return model
