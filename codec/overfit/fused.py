"""The training step's two big terms, each computed with its gradient in one pass by bands.

Both the latents' code length and the distortion are sums over positions, so each is computed
band by band (rows of a grid, rows of the image with a halo for the 3x3 convolutions), and
each band's gradient is taken at once while its activations are still in cache: nothing of
the width of the hidden layers is ever kept for a whole image. The autograd graph sees one
node per term whose backward only scales the gradients found in forward. Same numbers as the
plain modules (`fit.Net.bits`, `fit.Net.synthesis`), several times less memory traffic.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .arch import CONTEXT, CTX_LEFT, CTX_RIGHT, CTX_UP

ARM_BAND = 1 << 15  # latents per band
SYN_BAND = 1 << 15  # pixels per band (before the halo)


def _scaled(grads, g):
    return tuple(None if t is None else t * g for t in grads)


def laplace_bits(y, mu, ls, lo: float, hi: float):
    """Code length (bits) of integers-or-soft y under Laplace(mu, exp(ls)) (clamped), summed."""
    import torch

    b = torch.exp(ls.clamp(lo, hi))
    d = (y - mu).abs()
    up = torch.exp(-(d + 0.5) / b)
    # both branches finite everywhere (a where's other branch still gets its gradient)
    low = torch.where(d < 0.5, 2.0 - torch.exp(-(0.5 - d).clamp_min(0) / b),
                      torch.exp(-(d - 0.5).clamp_min(0) / b))
    p = (0.5 * (low - up)).clamp_min(2.0**-16)
    return -torch.log2(p).sum()


def laplace_bits_grad(y, mu, ls, lo: float, hi: float):
    """`laplace_bits` and its gradients (d/dy, d/dmu, d/dls) in one pass, differentiated by
    hand: with e1 = exp(-(d + 1/2) / b), e2 = exp(-|d - 1/2| / b), both of p's branches share
    dp/dd = (e1 - e2) / 2b and dp/db = (e2 (d - 1/2) - e1 (d + 1/2)) / 2b^2. A third fewer
    passes over the band than autograd through the branches of `laplace_bits`."""
    import torch

    lsc = ls.clamp(lo, hi)
    b = torch.exp(lsc)
    r = 1.0 / b
    diff = y - mu
    d = diff.abs()
    e1 = torch.exp(-(d + 0.5) * r)
    dm = d - 0.5
    e2 = torch.exp(-dm.abs() * r)
    p = torch.where(dm >= 0, 0.5 * (e2 - e1), 1.0 - 0.5 * (e1 + e2))
    floor = p <= 2.0**-16
    p = p.clamp_min(2.0**-16)
    bits = -torch.log2(p).sum()
    g = (-1.0 / math.log(2.0)) / p  # d bits / dp
    g.masked_fill_(floor, 0.0)
    gr = g * r * 0.5
    d_d = gr * (e1 - e2)
    d_ls = gr * r * (e2 * dm - e1 * (d + 0.5)) * b  # d/db * db/dls (= b)
    d_ls.masked_fill_((ls < lo) | (ls > hi), 0.0)
    d_y = d_d * torch.sign(diff)
    return bits, d_y, -d_y, d_ls


def _conv_rows(x, w, b, top: bool, bottom: bool):
    """3x3 convolution with replicated edges on the columns always and on the rows only where
    the band meets the image (`top`, `bottom`); elsewhere a row of halo is consumed."""
    import torch
    import torch.nn.functional as F

    x = F.pad(x, (1, 1, 0, 0), mode="replicate")
    if top:
        x = torch.cat([x[:, :, :1], x], 2)
    if bottom:
        x = torch.cat([x, x[:, :, -1:]], 2)
    # channels-last: oneDNN's 3-channel 3x3 convolution (and its backward) is ~3x faster so
    return F.conv2d(x.contiguous(memory_format=torch.channels_last), w, b)


def _crop_rows(x, top: bool, bottom: bool):
    return x[:, :, (0 if top else 1): x.shape[2] - (0 if bottom else 1)]


@functools.cache
def functions() -> tuple[Any, Any]:
    """(ArmBits, SynthSSE), built on first use: torch is imported here, never on import."""
    import torch
    import torch.nn.functional as F

    class ArmBits(torch.autograd.Function):
        """Total bits of all grids: forward(lo, hi, n_grids, *grids, *arm_params).

        The module's layers are differentiated by hand (a few small matrix products per band):
        autograd over the context gather alone cost zero-filled full-band buffers per offset.
        Only the Laplace code length, elementwise on the band's vectors, goes through autograd.
        """

        @staticmethod
        def forward(ctx, lo, hi, n, *tensors):
            grids, (w1, b1, w2, b2, w3, b3, ws) = tensors[:n], tensors[n:]
            c = w1.shape[0]
            total = torch.zeros((), dtype=torch.float64, device=w1.device)
            wc = torch.cat([w1, ws]).detach()  # [c + 2, len(CONTEXT)]
            w2, w3 = w2.detach(), w3.detach()
            b1c, b2c, b3c = b1.detach()[:, None], b2.detach()[:, None], b3.detach()[:, None]
            g_wc = torch.zeros_like(wc)
            g_b1, g_w2, g_b2 = torch.zeros_like(b1), torch.zeros_like(w2), torch.zeros_like(b2)
            g_w3, g_b3 = torch.zeros_like(w3), torch.zeros_like(b3)
            g_grids = []
            for y in grids:
                hh, ww = y.shape[2], y.shape[3]
                yp = F.pad(y.detach()[0, 0], (CTX_LEFT, CTX_RIGHT, CTX_UP, 0))
                gp = torch.zeros_like(yp)
                rows = max(1, ARM_BAND // ww)
                for r0 in range(0, hh, rows):
                    r1 = min(r0 + rows, hh)
                    m = (r1 - r0) * ww
                    views = [yp[r0 + CTX_UP + dy: r1 + CTX_UP + dy,
                                CTX_LEFT + dx: CTX_LEFT + dx + ww] for dy, dx in CONTEXT]
                    cols = torch.stack(views).view(len(CONTEXT), m)
                    feats = wc @ cols  # [c + 2, m]
                    h1 = (feats[:c] + b1c).relu_()
                    h2 = torch.addmm(b2c, w2, h1).add_(h1).relu_()
                    out = torch.addmm(b3c, w3, h2) + feats[c:]
                    yc = yp[r0 + CTX_UP: r1 + CTX_UP, CTX_LEFT: CTX_LEFT + ww].reshape(m)
                    bits, d_yc, d_mu, d_ls = laplace_bits_grad(yc, out[0], out[1], lo, hi)
                    d_out = torch.stack([d_mu, d_ls])  # [2, m]
                    g_w3.addmm_(d_out, h2.t())
                    g_b3 += d_out.sum(1)
                    d2 = (w3.t() @ d_out).mul_(h2 > 0)
                    g_w2.addmm_(d2, h1.t())
                    g_b2 += d2.sum(1)
                    d1 = torch.addmm(d2, w2.t(), d2).mul_(h1 > 0)
                    g_b1 += d1.sum(1)
                    d_feats = torch.cat([d1, d_out])
                    g_wc.addmm_(d_feats, cols.t())
                    d_cols = (wc.t() @ d_feats).view(len(CONTEXT), r1 - r0, ww)
                    for k, (dy, dx) in enumerate(CONTEXT):
                        gp[r0 + CTX_UP + dy: r1 + CTX_UP + dy,
                           CTX_LEFT + dx: CTX_LEFT + dx + ww] += d_cols[k]
                    gp[r0 + CTX_UP: r1 + CTX_UP, CTX_LEFT: CTX_LEFT + ww] += d_yc.view(r1 - r0, ww)
                    total += bits.detach().double()
                g_grids.append(gp[CTX_UP:, CTX_LEFT:CTX_LEFT + ww][None, None])
            ctx.save_for_backward(*g_grids, g_wc[:c], g_b1, g_w2, g_b2, g_w3, g_b3, g_wc[c:])
            ctx.n = n
            return total.float()

        @staticmethod
        def backward(ctx, g):
            saved = ctx.saved_tensors
            return (None, None, None, *_scaled(saved, g))


    class SynthSSE(torch.autograd.Function):
        """Sum of squared errors of the synthesis of u against x: forward(u, x, *syn_params)."""

        @staticmethod
        def forward(ctx, u, x, w1, b1, w2, b2, w3, b3, w4, b4):
            params = (w1, b1, w2, b2, w3, b3, w4, b4)
            _, c, hh, ww = u.shape
            gu = torch.zeros_like(u)
            g_params = [torch.zeros_like(p) for p in params]
            total = torch.zeros((), dtype=torch.float64, device=u.device)
            rows = max(1, SYN_BAND // ww)
            halo = 2
            for r0 in range(0, hh, rows):
                r1 = min(r0 + rows, hh)
                e0, e1 = max(r0 - halo, 0), min(r1 + halo, hh)
                with torch.enable_grad():
                    band = u[:, :, e0:e1].detach().requires_grad_(True)
                    ps = [p.detach().requires_grad_(True) for p in params]
                    flat = band[0].reshape(c, -1)
                    s1 = torch.addmm(ps[1][:, None], ps[0], flat).relu_()  # in place: one
                    # band-sized [40, n] buffer fewer (addmm keeps no output for backward)
                    s2 = torch.addmm(ps[3][:, None], ps[2], s1).reshape(1, 3, e1 - e0, ww)
                    top1, bot1 = e0 == 0, e1 == hh
                    s3 = _conv_rows(s2, ps[4], ps[5], top1, bot1).relu_() + _crop_rows(
                        s2, top1, bot1)
                    a0 = e0 + (0 if top1 else 1)
                    a1 = e1 - (0 if bot1 else 1)
                    top2, bot2 = a0 == 0, a1 == hh
                    s4 = _conv_rows(s3, ps[6], ps[7], top2, bot2) + _crop_rows(s3, top2, bot2)
                    b0 = a0 + (0 if top2 else 1)
                    out = s4[:, :, r0 - b0: r1 - b0]
                    sse = ((out - x[:, :, r0:r1]) ** 2).sum()
                    grads = torch.autograd.grad(sse, [band, *ps])
                gu[:, :, e0:e1] += grads[0]
                for acc, g in zip(g_params, grads[1:], strict=True):
                    acc += g
                total += sse.detach().double()
            ctx.save_for_backward(gu, *g_params)
            return total.float()

        @staticmethod
        def backward(ctx, g):
            gu, *gp = ctx.saved_tensors
            return (gu * g, None, *_scaled(gp, g))

    return ArmBits, SynthSSE
