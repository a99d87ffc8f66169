"""The MNIST autoencoder family of the Keras tutorials, in PyTorch, each one a variable-rate codec.

Every model has an analysis transform ``encode(x) -> y [B,M]``, a synthesis transform
``decode(y_hat [B,M]) -> x_hat [B,1,28,28]`` in [0,1], K rate levels (gain vectors, Cui et al.
2021) and a factorized density per latent channel (Ballé et al. 2018's non-parametric one).
Training: the rate is -log2 of the density's mass over the unit bin around the noisy latent
``y*gain + u``; the synthesis sees the rounded latent (straight-through), as the codec does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..entropy import EntropyBottleneck

MODEL_NAMES = ("dense", "deep", "sparse", "conv", "denoise", "vae", "rd")
DESCRIPTIONS = {
    "dense": "single-layer dense autoencoder 784-32-784 (the Keras tutorial's first model)",
    "deep": "deep dense autoencoder 784-128-64-32 and back",
    "sparse": "single-layer dense autoencoder 784-32-784 with an L1 activity penalty",
    "conv": "convolutional autoencoder (2 strided convs 16/32 + dense 256 + bottleneck 32)",
    "denoise": "convolutional denoising autoencoder: trained on noisy digits, decodes clean ones",
    "vae": "variational autoencoder (Gaussian latent, KL term); codes the posterior mean",
    "rd": "rate-distortion trained conv autoencoder (3 strided convs 32/48/48 + dense, "
          "64 latents), for 18-30 dB",
}
RD_WIDTH = (32, 48)  # the rd model's conv channels (28 -> 14 -> 7 -> 4)


def describe(model: MnistCodec) -> str:
    """The manifest's description: an rd model names its own widths and latent count, so one
    architecture serves several capacities (mnist-rd, mnist-rd-hq)."""
    if model.kind != "rd":
        return DESCRIPTIONS[model.kind]
    a, b = model.width
    return (f"rate-distortion trained conv autoencoder (3 strided convs {a}/{b}/{b} + dense, "
            f"{model.M} latents), for 18-30 dB")


class FactorizedDensity(EntropyBottleneck):
    """The photo models' entropy bottleneck (Ballé 2018), on dense latents [B, C]."""

    def __init__(self, channels: int, filters=(3, 3, 3), init_scale: float = 10.0):
        super().__init__(channels, filters, init_scale)

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """y [B,C] -> mass of [y-1/2, y+1/2] under each channel's density, [B,C]."""
        return super().likelihood(y[:, :, None, None])[:, :, 0, 0]

    @torch.no_grad()
    def integer_pmf(self, radius: int = 400) -> np.ndarray:
        """Probabilities at the integers -radius..radius, [C, 2*radius+1], float64."""
        v = torch.arange(-radius, radius + 1, dtype=torch.float64)
        return self.pmf_at(v.expand(self.channels, 1, -1).contiguous()).numpy()


def _dense_encoder(sizes):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(nn.Flatten(), *layers)


def _dense_decoder(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers, nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))


def _conv_encoder(m_out):
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(),          # 14x14
        nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),         # 7x7
        nn.Flatten(), nn.Linear(32 * 7 * 7, 256), nn.ReLU(),
        nn.Linear(256, m_out),
    )


def _conv_decoder(m):
    return nn.Sequential(
        nn.Linear(m, 256), nn.ReLU(),
        nn.Linear(256, 32 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (32, 7, 7)),
        nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),  # 14x14
        nn.ConvTranspose2d(16, 1, 4, 2, 1),              # 28x28
        nn.Sigmoid(),
    )


def _rd_encoder(m_out, w=RD_WIDTH):
    """Three strided convs to a 4x4 grid, then one dense layer to the latent (~110k weights)."""
    a, b = w
    return nn.Sequential(
        nn.Conv2d(1, a, 5, 2, 2), nn.GELU(),            # 14x14
        nn.Conv2d(a, b, 5, 2, 2), nn.GELU(),            # 7x7
        nn.Conv2d(b, b, 3, 2, 1), nn.GELU(),            # 4x4
        nn.Flatten(), nn.Linear(b * 16, m_out),
    )


def _rd_decoder(m, w=RD_WIDTH):
    a, b = w
    return nn.Sequential(
        nn.Linear(m, b * 16), nn.GELU(), nn.Unflatten(1, (b, 4, 4)),
        nn.ConvTranspose2d(b, b, 3, 2, 1), nn.GELU(),                    # 7x7
        nn.ConvTranspose2d(b, a, 5, 2, 2, output_padding=1), nn.GELU(),  # 14x14
        nn.ConvTranspose2d(a, 1, 5, 2, 2, output_padding=1),             # 28x28
        nn.Sigmoid(),
    )


class MnistCodec(nn.Module):
    """One member of the family; ``kind`` picks the architecture."""

    def __init__(self, kind: str, latent: int = 32, levels: int = 5,
                 width: tuple[int, int] = RD_WIDTH):
        """`width`: the rd model's conv channels (more for more capacity at the top rates)."""
        super().__init__()
        if kind not in MODEL_NAMES:
            raise ValueError(f"unknown MNIST model {kind!r}; choose one of {MODEL_NAMES}")
        self.kind, self.M, self.K = kind, latent, levels
        self.width = tuple(width)
        m = latent
        if kind in ("dense", "sparse"):
            self.encoder = _dense_encoder((784, m))
            self.decoder = _dense_decoder((m, 784))
        elif kind == "deep":
            self.encoder = _dense_encoder((784, 128, 64, m))
            self.decoder = _dense_decoder((m, 64, 128, 784))
        elif kind in ("conv", "denoise"):
            self.encoder = _conv_encoder(m)
            self.decoder = _conv_decoder(m)
        elif kind == "rd":
            self.encoder = _rd_encoder(m, self.width)
            self.decoder = _rd_decoder(m, self.width)
        else:  # vae: encoder gives mean and log-variance
            self.encoder = _conv_encoder(2 * m)
            self.decoder = _conv_decoder(m)
        # gains (level 0 = lowest rate): a learned base vector times fixed half-octave steps,
        # so the levels keep their spacing; the inverse gains get a learned per-level correction
        steps = torch.tensor([(k - (levels - 1)) * 0.5 * math.log(2) for k in range(levels)])
        self.register_buffer("level_steps", steps)
        self.log_gain = nn.Parameter(torch.zeros(m))
        self.log_inv_corr = nn.Parameter(torch.zeros(levels, m))
        self.density = FactorizedDensity(m)

    # -- transforms -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Analysis: x [B,1,28,28] -> y [B,M] (for the VAE, the posterior mean)."""
        out = self.encoder(x)
        return out[:, : self.M] if self.kind == "vae" else out

    def encode_stats(self, x):
        out = self.encoder(x)
        return out[:, : self.M], out[:, self.M :].clamp(-12, 8)

    def decode(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.decoder(y_hat)

    def gains(self):
        """(gain, inv_gain), each [K, M]."""
        log_g = self.log_gain[None, :] + self.level_steps[:, None]
        return torch.exp(log_g), torch.exp(-log_g + self.log_inv_corr)

    # -- training forward -------------------------------------------------------------------
    def forward(self, x_in: torch.Tensor, level: torch.Tensor):
        """Returns (x_hat, bits [B], y [B,M], extra dict)."""
        extra = {}
        if self.kind == "vae":
            mu, logvar = self.encode_stats(x_in)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            extra["x_sample"] = self.decode(z)
            extra["kl"] = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            y = mu
        else:
            y = self.encode(x_in)
        g, ig = self.gains()
        yg = y * g[level]
        noisy = yg + torch.empty_like(yg).uniform_(-0.5, 0.5)
        bits = -torch.log2(self.density.likelihood(noisy).clamp_min(1e-9)).sum(1)
        yq = yg + (torch.round(yg) - yg).detach()
        x_hat = self.decode(yq * ig[level])
        extra["yg"] = yg
        return x_hat, bits, y, extra

    @torch.no_grad()
    def codec_roundtrip(self, x: torch.Tensor, level: int):
        """Deterministic quantized reconstruction and ideal bits (tables not trimmed)."""
        y = self.encode(x)
        g, ig = self.gains()
        sym = torch.round(y * g[level])
        lik = self.density.likelihood(sym).clamp_min(1e-12)
        return self.decode(sym * ig[level]), -torch.log2(lik).sum(1), sym

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """VAE only: decode latents drawn from the prior N(0, I)."""
        z = torch.randn(n, self.M, generator=generator)
        return self.decode(z)


class AnalysisGraph(nn.Module):
    """x [1,1,28,28] -> y [1,M,1,1]"""

    def __init__(self, model: MnistCodec):
        super().__init__()
        self.model = model

    def forward(self, x):
        y = self.model.encode(x)
        return y.reshape(y.shape[0], self.model.M, 1, 1)


class SynthesisGraph(nn.Module):
    """y_hat [1,M,1,1] -> x_hat [1,1,28,28]"""

    def __init__(self, model: MnistCodec):
        super().__init__()
        self.model = model

    def forward(self, y_hat):
        return self.model.decode(y_hat.reshape(y_hat.shape[0], self.model.M))
