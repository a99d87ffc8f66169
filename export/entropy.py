"""Entropy models for training and their export to tables.

- `EntropyBottleneck`: Ballé's non-parametric factorized density (one per channel), used for the
  hyper-latent z and the factorized prior's y.
- `gaussian_likelihood`: the conditional quantized Gaussian for y given (mean, scale).
- `scale_table` / `gaussian_tables`: the discrete scales the integer hyper-decoder indexes and
  their probability tables.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LIKELIHOOD_FLOOR = 1e-9
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def noisy(x: torch.Tensor) -> torch.Tensor:
    """Additive uniform noise: the differentiable stand-in for rounding in the rate term."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


class EntropyBottleneck(nn.Module):
    """Per-channel learned CDF c(x) = sigmoid(f(x)), f a monotone 1-3-3-3-1 network."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3), init_scale=10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        # Quantiles (0.5e-9, 0.5, 1 - 0.5e-9) learned by the auxiliary loss: they bound the tables.
        self.quantiles = nn.Parameter(
            torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1)
        )
        self.register_buffer("target", torch.tensor([-21.0, 0.0, 21.0]))  # logit(1e-9) ~ -20.7

    def logits_cdf(self, x: torch.Tensor, stop_gradient: bool = False) -> torch.Tensor:
        """x: [C, 1, N] -> logits of the CDF, [C, 1, N]."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            if stop_gradient:
                m, b = m.detach(), b.detach()
            x = torch.matmul(F.softplus(m.to(x.dtype)), x) + b.to(x.dtype)
            if i < len(self.factors):
                f = self.factors[i].detach() if stop_gradient else self.factors[i]
                x = x + torch.tanh(f.to(x.dtype)) * torch.tanh(x)
        return x

    def pmf_at(self, v: torch.Tensor) -> torch.Tensor:
        """Mass of [v - 0.5, v + 0.5] for v [C, 1, N] (no floor), as [C, N] in v's dtype."""
        lower, upper = self.logits_cdf(v - 0.5), self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))[:, 0]

    def aux_loss(self) -> torch.Tensor:
        logits = self.logits_cdf(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    def likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Probability mass of [x - 0.5, x + 0.5] for x [B, C, H, W]."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            b, c, h, w = x.shape
            v = x.float().permute(1, 0, 2, 3).reshape(c, 1, -1)
            p = self.pmf_at(v).reshape(c, b, h, w).permute(1, 0, 2, 3)
            return torch.clamp(p, min=LIKELIHOOD_FLOOR)

    @torch.no_grad()
    def tables(self, margin: int = 2, max_len: int = 4096) -> dict[str, np.ndarray]:
        """Probability tables at the integers, per channel, over the learned quantile range."""
        q = self.quantiles.detach().float().cpu()[:, 0, :]
        lo = torch.floor(q[:, 0]).long() - margin
        hi = torch.ceil(q[:, 2]).long() + margin
        lens = torch.clamp(hi - lo + 1, 1, max_len)
        c = self.channels
        table_len = int(lens.max())
        pos = lo[:, None] + torch.arange(table_len)[None, :]
        dev = self.quantiles.device
        p = self.pmf_at(pos.float().to(dev).reshape(c, 1, -1)).double().cpu()
        mask = torch.arange(table_len)[None, :] < lens[:, None]
        p = torch.where(mask, p, torch.zeros_like(p))
        return {
            "pmf": p.numpy(),
            "len": lens.int().numpy(),
            "offset": lo.int().numpy(),
        }


def scale_table() -> torch.Tensor:
    """The discrete Gaussian scales, log-spaced: index i -> SCALE_MIN * step**i."""
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


def scale_from_index(t: torch.Tensor) -> torch.Tensor:
    """A (possibly fractional, during training) scale index to the scale it stands for."""
    step = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1)
    return torch.exp(math.log(SCALE_MIN) + step * t)


def _std_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def gaussian_likelihood(v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mass of [v - 0.5, v + 0.5] under N(0, scale), computed on the tail that is accurate."""
    with torch.autocast(device_type=v.device.type, enabled=False):
        v = torch.abs(v.float())
        s = scale.float()
        p = _std_cdf((0.5 - v) / s) - _std_cdf((-0.5 - v) / s)
        return torch.clamp(p, min=LIKELIHOOD_FLOOR)


def gaussian_tables(tail: float = 7.0) -> dict[str, np.ndarray]:
    """One pmf per discrete scale over -T..T (T = ceil(tail * scale)); escape codes the rest."""
    scales = scale_table().double()
    half = torch.ceil(tail * scales).long().clamp(min=1)
    width = int(2 * half.max() + 1)
    rows = []
    for s, t in zip(scales, half, strict=True):
        x = torch.arange(-int(t), int(t) + 1, dtype=torch.float64)
        p = _std_cdf((x + 0.5) / s) - _std_cdf((x - 0.5) / s)
        row = torch.zeros(width, dtype=torch.float64)
        row[: len(x)] = p
        rows.append(row)
    return {
        "pmf": torch.stack(rows).numpy(),
        "len": (2 * half + 1).int().numpy(),
        "offset": (-half).int().numpy(),
    }
