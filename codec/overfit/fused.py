"""The training step's two big terms, each computed with its gradient in one pass by bands.

Both the latents' code length and the distortion are sums over positions, so each is computed
band by band (rows of a grid, rows of the image with a halo for the 3x3 convolutions), and
each band's gradient is taken at once while its activations are still in cache: nothing of
the width of the hidden layers is ever kept for a whole image. The autograd graph sees one
node per term whose backward only scales the gradients found in forward. Same numbers as the
plain modules (`fit.Net.bits`, `fit.Net.synthesis`), several times less memory traffic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .arch import CTX_LEFT, CTX_RIGHT, CTX_UP

ARM_BAND = 1 << 15  # latents per band
SYN_BAND = 1 << 14  # pixels per band (before the halo)


def _scaled(grads, g):
    return tuple(None if t is None else t * g for t in grads)


def laplace_bits(y, mu, ls, lo: float, hi: float):
    """Code length (bits) of integers-or-soft y under Laplace(mu, exp(ls)) (clamped), summed."""
    b = torch.exp(ls.clamp(lo, hi))
    d = (y - mu).abs()
    up = torch.exp(-(d + 0.5) / b)
    # both branches finite everywhere (a where's other branch still gets its gradient)
    low = torch.where(d < 0.5, 2.0 - torch.exp(-(0.5 - d).clamp_min(0) / b),
                      torch.exp(-(d - 0.5).clamp_min(0) / b))
    p = (0.5 * (low - up)).clamp_min(2.0**-16)
    return -torch.log2(p).sum()


class ArmBits(torch.autograd.Function):
    """Total bits of all grids: forward(kernel_index, lo, hi, n_grids, *grids, *arm_params)."""

    @staticmethod
    def forward(ctx, index, lo, hi, n, *tensors):
        grids, (w1, b1, w2, b2, w3, b3, ws) = tensors[:n], tensors[n:]
        params = (w1, b1, w2, b2, w3, b3, ws)
        c = w1.shape[0]
        total = torch.zeros((), dtype=torch.float64)
        g_params = [torch.zeros_like(p) for p in params]
        g_grids = []
        wcat = torch.cat([w1, ws])  # [c + 2, len(CONTEXT)]
        kw = CTX_LEFT + CTX_RIGHT + 1
        for y in grids:
            hh, ww = y.shape[2], y.shape[3]
            yp = F.pad(y.detach(), (CTX_LEFT, CTX_RIGHT, CTX_UP, 0))
            gp = torch.zeros_like(yp)
            rows = max(1, ARM_BAND // ww)
            for r0 in range(0, hh, rows):
                r1 = min(r0 + rows, hh)
                with torch.enable_grad():
                    band = yp[:, :, r0:r1 + CTX_UP].clone().requires_grad_(True)
                    ps = [p.detach().requires_grad_(True) for p in params]
                    wc = torch.cat([ps[0], ps[6]])
                    cols = F.unfold(band, (CTX_UP + 1, kw))[0]  # [(CTX_UP+1) * kw, n]
                    feats = wc @ cols.index_select(0, index)  # [c + 2, n]
                    h1 = torch.relu(feats[:c] + ps[1][:, None])
                    h2 = torch.relu(torch.addmm(ps[3][:, None], ps[2], h1) + h1)
                    out = torch.addmm(ps[5][:, None], ps[4], h2) + feats[c:]
                    yc = cols[CTX_UP * kw + CTX_LEFT]
                    bits = laplace_bits(yc, out[0], out[1], lo, hi)
                    grads = torch.autograd.grad(bits, [band, *ps])
                gp[:, :, r0:r1 + CTX_UP] += grads[0]
                for acc, g in zip(g_params, grads[1:], strict=True):
                    acc += g
                total += bits.detach().double()
            g_grids.append(gp[:, :, CTX_UP:, CTX_LEFT:CTX_LEFT + ww])
        del wcat
        ctx.save_for_backward(*g_grids, *g_params)
        ctx.n = n
        return total.float()

    @staticmethod
    def backward(ctx, g):
        saved = ctx.saved_tensors
        return (None, None, None, None, *_scaled(saved, g))


def _conv_rows(x, w, b, top: bool, bottom: bool):
    """3x3 convolution with replicated edges on the columns always and on the rows only where
    the band meets the image (`top`, `bottom`); elsewhere a row of halo is consumed."""
    x = F.pad(x, (1, 1, 0, 0), mode="replicate")
    if top:
        x = torch.cat([x[:, :, :1], x], 2)
    if bottom:
        x = torch.cat([x, x[:, :, -1:]], 2)
    return F.conv2d(x, w, b)


def _crop_rows(x, top: bool, bottom: bool):
    return x[:, :, (0 if top else 1): x.shape[2] - (0 if bottom else 1)]


class SynthSSE(torch.autograd.Function):
    """Sum of squared errors of the synthesis of u against x: forward(u, x, *syn_params)."""

    @staticmethod
    def forward(ctx, u, x, w1, b1, w2, b2, w3, b3, w4, b4):
        params = (w1, b1, w2, b2, w3, b3, w4, b4)
        _, c, hh, ww = u.shape
        gu = torch.zeros_like(u)
        g_params = [torch.zeros_like(p) for p in params]
        total = torch.zeros((), dtype=torch.float64)
        rows = max(1, SYN_BAND // ww)
        halo = 2
        for r0 in range(0, hh, rows):
            r1 = min(r0 + rows, hh)
            e0, e1 = max(r0 - halo, 0), min(r1 + halo, hh)
            with torch.enable_grad():
                band = u[:, :, e0:e1].detach().requires_grad_(True)
                ps = [p.detach().requires_grad_(True) for p in params]
                flat = band[0].reshape(c, -1)
                s1 = torch.relu(torch.addmm(ps[1][:, None], ps[0], flat))
                s2 = torch.addmm(ps[3][:, None], ps[2], s1).reshape(1, 3, e1 - e0, ww)
                top1, bot1 = e0 == 0, e1 == hh
                s3 = torch.relu(_conv_rows(s2, ps[4], ps[5], top1, bot1)) + _crop_rows(
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
