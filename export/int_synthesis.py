"""An 8-bit synthesis transform whose decoding is exact on any runtime, trained quantization-aware.

Why: a float synthesis gives pixels that differ by one level between kernels (threads, graph
optimisations, torch, GPU). Integer convolutions accumulate exactly in int32, so with 8-bit
activations and weights, and every float step an elementwise IEEE operation in a fixed order,
every runtime computes the same pixels. The 8-bit convolutions are also about 4x faster than
float32 ones in ONNX Runtime on CPUs with VNNI.

The network is the float synthesis (subpel convolutions and IGDN) with quantizers at:
- each convolution's input: v = clamp(round(x / s_in), -127, 127), s_in per channel (learned);
- each convolution's weights: int8 per output channel, scale max|w * s_in| / 127;
- each IGDN's input: u = clamp(round(x / s_out), -127, 127), s_out per channel (learned);
- each IGDN's normaliser: beta + gamma . (s_out u)^2 on an integer grid per output channel,
  gamma as 8 bits (0..255), so the sum is an exact int32;
- the last convolution's output: the pixels, round(255 x) clipped to 0..255.
`export.int_onnx` writes the same arithmetic as ONNX integer operators.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .entropy import ste_round
from .layers import GDN

QMAX = 127  # activations and weights are symmetric 8-bit: -127..127
GMAX = 255  # the IGDN's gamma, non-negative 8-bit
BMAX = 2**30  # the IGDN's beta on the same grid, so that the int32 sum cannot overflow


def quantize(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Integer levels of x at per-channel `scale` ([C]), straight-through."""
    return torch.clamp(ste_round(x / scale[None, :, None, None]), -QMAX, QMAX)


def weight_scale(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel int8 scale of a conv weight [O, I, k, k]."""
    return (w.detach().abs().amax(dim=(1, 2, 3)) / QMAX).clamp_min(1e-12)


def gdn_grid(beta: torch.Tensor, gamma: torch.Tensor, s_out: torch.Tensor):
    """IGDN normaliser on an integer grid: norm_i = c_i * (beta_q[i] + sum_j gamma_q[i, j] u_j^2)
    for u in levels of `s_out`. Returns (c [C], beta_q [C], gamma_q [C, C]), straight-through."""
    g = gamma.reshape(gamma.shape[0], -1) * (s_out**2)[None, :]
    c = torch.maximum(g.detach().amax(dim=1) / GMAX, beta.detach() / BMAX).clamp_min(1e-30)
    gamma_q = torch.clamp(ste_round(g / c[:, None]), 0, GMAX)
    beta_q = torch.clamp(ste_round(beta / c), 0, BMAX)
    return c, beta_q, gamma_q


class IntSynthesis(nn.Module):
    """The quantized twin of a subpel/IGDN synthesis (models.synthesis with kind='subpel')."""

    def __init__(self, g_s: nn.Sequential, in_range: list[torch.Tensor],
                 out_range: list[torch.Tensor]) -> None:
        super().__init__()
        self.convs = nn.ModuleList([g_s[i][0] for i in (0, 2, 4, 6)])
        self.gdns = nn.ModuleList([g_s[i] for i in (1, 3, 5)])
        for gdn in self.gdns:
            assert isinstance(gdn, GDN) and gdn.inverse
        self.log_s_in = nn.ParameterList(
            [nn.Parameter(torch.log(r.clamp_min(1e-6) / QMAX)) for r in in_range])
        self.log_s_out = nn.ParameterList(
            [nn.Parameter(torch.log(r.clamp_min(1e-6) / QMAX)) for r in out_range])

    def conv(self, k: int, v: torch.Tensor) -> torch.Tensor:
        """Conv k on integer input levels v, with int8 weights; output in real units."""
        conv = self.convs[k]
        s_in = torch.exp(self.log_s_in[k])
        w = conv.weight * s_in[None, :, None, None]
        sw = weight_scale(w)
        wq = torch.clamp(ste_round(w / sw[:, None, None, None]), -QMAX, QMAX)
        return F.conv2d(v, wq * sw[:, None, None, None], conv.bias, padding=conv.padding)

    def igdn(self, k: int, x: torch.Tensor) -> torch.Tensor:
        s_out = torch.exp(self.log_s_out[k])
        u = quantize(x, s_out)
        beta, gamma = self.gdns[k].params()
        c, beta_q, gamma_q = gdn_grid(beta, gamma, s_out)
        n = F.conv2d(u * u, gamma_q[:, :, None, None], beta_q)
        return u * s_out[None, :, None, None] * torch.sqrt(n * c[None, :, None, None])

    @property
    def widths(self) -> tuple[int, int, int]:
        """Channels of the three normalised stages (the shipped model: 128, 128, 128)."""
        return tuple(len(p) for p in self.log_s_out)  # type: ignore[return-value]

    def stage(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Upsampling stage k (0..3): quantize, 8-bit conv, pixel shuffle, IGDN but the last."""
        v = quantize(x, torch.exp(self.log_s_in[k]))
        x = F.pixel_shuffle(self.conv(k, v), 2)
        return self.igdn(k, x) if k < 3 else x

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        x = y_hat
        for k in range(4):
            x = self.stage(k, x)
        return x


@torch.no_grad()
def activation_ranges(g_s: nn.Sequential, y_hats: list[torch.Tensor]):
    """Per-channel max |x| at each convolution's input and each IGDN's input."""
    ins: list[torch.Tensor | None] = [None] * 4
    outs: list[torch.Tensor | None] = [None] * 3

    def upd(r, x):
        m = x.abs().amax(dim=(0, 2, 3))
        return m if r is None else torch.maximum(r, m)

    for y in y_hats:
        x = y
        for k, i in enumerate((0, 2, 4, 6)):
            ins[k] = upd(ins[k], x)
            x = g_s[i](x)
            if k < 3:
                outs[k] = upd(outs[k], x)
                x = g_s[i + 1](x)
    return ins, outs

