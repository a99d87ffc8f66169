"""The integer hyper-decoder (Ballé et al. 2019), trained quantization-aware.

Training runs in float with fake quantisation: int8 weights per output channel, integer biases
on the accumulator's grid, hidden activations on a fixed grid of ACT_STEP clipped to 0..255,
means on a 2**-MEAN_BITS grid and scale indices on the integers. `to_numpy` writes the exact
integer network that `aecodec.intnet.run` evaluates; both sides then agree bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .entropy import SCALE_LEVELS, ste_round

ACT_STEP = 1 / 16
ACT_MAX = 255
MEAN_BITS = 4
MEAN_LIMIT = 2**20
EXACT = 2.0**52  # every |acc * m| must stay below this for float64 to be exact
Z_CLIP = 2**15  # the runtime clips z symbols to +-Z_CLIP before the network


class QConv(nn.Module):
    """A convolution whose weights, bias and output live on integer grids when `quantize`."""

    def __init__(self, cin: int, cout: int, k: int, in_step: float, ps: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.in_step = in_step
        self.ps = ps

    def weight_step(self) -> torch.Tensor:
        w = self.conv.weight.detach()
        return w.abs().amax(dim=(1, 2, 3)).clamp(min=1e-8) / 127

    def forward(self, x: torch.Tensor, quantize: bool) -> torch.Tensor:
        w, b = self.conv.weight, self.conv.bias
        if quantize:
            sw = self.weight_step()
            w = ste_round(w / sw[:, None, None, None]) * sw[:, None, None, None]
            acc_step = sw * self.in_step
            b = ste_round(b / acc_step) * acc_step
        return F.conv2d(x, w, b, padding=self.conv.padding)


def _shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.pixel_shuffle(x, r) if r > 1 else x


class IntHyperSynthesis(nn.Module):
    """z symbols -> (mean, scale index) of y, at 4x the resolution of z.

    Two subpixel 3x3 layers with bounded integer activations, then a 1x1 head.
    """

    def __init__(self, nz: int, hidden: int, m: int) -> None:
        super().__init__()
        self.m = m
        self.layers = nn.ModuleList(
            [
                QConv(nz, hidden * 4, 3, in_step=1.0, ps=2),
                QConv(hidden, hidden * 4, 3, in_step=ACT_STEP, ps=2),
                QConv(hidden, 2 * m, 1, in_step=ACT_STEP, ps=1),
            ]
        )
        self.quantize = False

    def forward(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (mean, scale index); both on their integer grids when `self.quantize`."""
        q = self.quantize
        x = z_hat
        with torch.autocast(device_type=z_hat.device.type, enabled=False):
            x = x.float()
            for layer in self.layers[:-1]:
                v = layer(x, q) / ACT_STEP
                v = ste_round(v) if q else v
                x = _shuffle(torch.clamp(v, 0, ACT_MAX) * ACT_STEP, layer.ps)
            out = self.layers[-1](x, q)
            mean, idx = out[:, : self.m], out[:, self.m :]
            if q:
                mean = ste_round(mean * 2**MEAN_BITS) / 2**MEAN_BITS
                idx = ste_round(idx)
            mean = torch.clamp(mean, -MEAN_LIMIT / 2**MEAN_BITS, MEAN_LIMIT / 2**MEAN_BITS)
            idx = torch.clamp(idx, 0, SCALE_LEVELS - 1)
        return mean, idx

    @torch.no_grad()
    def to_numpy(self) -> dict[str, np.ndarray]:
        """The exact integer network for the runtime (format in docs/model-format.md)."""
        net: dict[str, np.ndarray] = {}
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            sw = layer.weight_step().double().cpu()
            w = torch.round(layer.conv.weight.double().cpu() / sw[:, None, None, None])
            acc_step = sw * layer.in_step  # real value of one accumulator unit, per channel
            b = torch.round(layer.conv.bias.double().cpu() / acc_step)
            if i < last:
                out_scale = acc_step / ACT_STEP
                lo, hi = np.int64(0), np.int64(ACT_MAX)
            else:
                out_scale = acc_step.clone()
                out_scale[: self.m] *= 2**MEAN_BITS
                lo = np.concatenate([np.full(self.m, -MEAN_LIMIT), np.zeros(self.m)]).astype(
                    np.int64
                )
                hi = np.concatenate(
                    [np.full(self.m, MEAN_LIMIT), np.full(self.m, SCALE_LEVELS - 1)]
                ).astype(np.int64)
            net[f"w{i}"] = w.numpy().astype(np.int32)
            net[f"b{i}"] = b.numpy().astype(np.int64)
            # Largest |acc| any input can produce, and the largest shift that keeps acc * m exact.
            in_max = Z_CLIP if i == 0 else ACT_MAX
            acc_max = float((w.abs().sum(dim=(1, 2, 3)) * in_max + b.abs()).max()) + 1
            shift = int(np.floor(np.log2(EXACT / (acc_max * float(out_scale.max()) * 2))))
            shift = min(shift, 40)
            net[f"m{i}"] = torch.round(out_scale * 2**shift).numpy().astype(np.int64)
            net[f"shift{i}"] = np.int64(shift)
            net[f"ps{i}"] = np.int64(layer.ps)
            net[f"lo{i}"] = np.asarray(lo)
            net[f"hi{i}"] = np.asarray(hi)
        return net
