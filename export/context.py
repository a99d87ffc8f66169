"""A parallel-context entropy model on top of a frozen hyperprior, trained quantization-aware.

Why this shape: the shipped hyperprior's transforms and hyper networks stay as they are (so its
latents, its z and its anchors cost what they cost today); the context model only *refines* the
hyper-decoder's (mean, scale index) of y with already decoded symbols, and starts as the identity
(last layer zero), so it can only learn to save rate.

Decoding order: the M channels in `slices` equal groups, each in `phases` checkerboard phases
(1: all positions at once; 2: anchors (row + col even) first, then the others). Step t = (s, p)
codes slice s at phase p; its network sees

- `ctx`: 16 * (y_hat - mean_h) of everything decoded before the step (slices < s everywhere,
  slice s at earlier phases), zero elsewhere; integers (y_hat and the hyper mean both live on the
  1/16 grid), clipped to +-CTX_LIMIT;
- `hyp`: 16 * mean_h and 16 * idx_h of all M channels (the frozen hyper-decoder's output);

and returns (d_mean on the 1/16 grid, d_index on the integers) for slice s. Step (0, 0) has
nothing decoded yet and keeps the hyperprior's parameters. Every step network is
k x k conv(ctx) + 1x1 conv(hyp) -> act -> 1x1 -> act -> 1x1, with the integer forms of
`intnet.py` (int8 weights per output channel, integer biases, activations on a 1/16 grid clipped
to 0..255), so `to_numpy` gives networks that the runtime evaluates exactly in float64.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .entropy import SCALE_LEVELS, gaussian_likelihood, scale_from_index, ste_round
from .intnet import ACT_MAX, ACT_STEP, EXACT, MEAN_BITS

IN_STEP = 1 / 16  # every network input is an integer count of 1/16
CTX_LIMIT = 2**15  # inputs clipped to +-CTX_LIMIT units (+-2048 in value)
D_MEAN_LIMIT = 2**12  # a refinement moves the mean by at most 256 and the index by at most 63


@dataclass
class ContextConfig:
    m: int = 192
    slices: int = 1
    phases: int = 2
    hidden: int = 128
    kernel: int = 5

    def to_dict(self) -> dict:
        return asdict(self)

    def steps(self) -> list[tuple[int, int]]:
        return [(s, p) for s in range(self.slices) for p in range(self.phases)]


def phase_mask(h: int, w: int, phases: int, p: int, device=None) -> torch.Tensor:
    """[h, w] float mask of the positions of phase p (checkerboard: p 0 = row + col even)."""
    if phases == 1:
        return torch.ones(h, w, device=device)
    ij = torch.arange(h, device=device)[:, None] + torch.arange(w, device=device)[None, :]
    return ((ij % 2) == p).float()


class _QConv(nn.Module):
    """Conv whose weights/bias snap to the integer grids of `intnet.QConv` when quantized.

    Two inputs with the same unit (ctx through a k x k kernel, hyp through 1x1), one accumulator:
    they share one weight step per output channel."""

    def __init__(self, cin: int, chyp: int, cout: int, k: int, in_step: float) -> None:
        super().__init__()
        self.k = k
        self.w = nn.Parameter(torch.empty(cout, cin, k, k)) if cin else None
        self.wh = nn.Parameter(torch.empty(cout, chyp, 1, 1)) if chyp else None
        self.b = nn.Parameter(torch.zeros(cout))
        fan = cin * k * k + chyp
        for p in (self.w, self.wh):
            if p is not None:
                nn.init.uniform_(p, -(fan**-0.5), fan**-0.5)
        self.in_step = in_step

    def weight_step(self) -> torch.Tensor:
        parts = [p.detach().abs().amax(dim=(1, 2, 3)) for p in (self.w, self.wh) if p is not None]
        return torch.stack(parts).amax(dim=0).clamp(min=1e-8) / 127

    def forward(self, x: torch.Tensor | None, hyp: torch.Tensor | None,
                quantize: bool) -> torch.Tensor:
        w, wh, b = self.w, self.wh, self.b
        if quantize:
            sw = self.weight_step()[:, None, None, None]
            w = ste_round(w / sw) * sw if w is not None else None
            wh = ste_round(wh / sw) * sw if wh is not None else None
            acc_step = sw[:, 0, 0, 0] * self.in_step
            b = ste_round(b / acc_step) * acc_step
        out = b[None, :, None, None]
        if w is not None:
            out = out + F.conv2d(x, w, padding=self.k // 2)
        if wh is not None:
            out = out + F.conv2d(hyp, wh)
        return out


class StepNet(nn.Module):
    """One step's parameter network: (ctx, hyp) -> (d_mean, d_index) for one slice."""

    def __init__(self, cctx: int, chyp: int, hidden: int, ms: int, k: int) -> None:
        super().__init__()
        self.ms = ms
        self.l0 = _QConv(cctx, chyp, hidden, k, IN_STEP)
        self.l1 = _QConv(hidden, 0, hidden, 1, ACT_STEP)
        self.l2 = _QConv(hidden, 0, 2 * ms, 1, ACT_STEP)
        nn.init.zeros_(self.l2.w)  # starts as the hyperprior
        nn.init.zeros_(self.l2.b)

    def forward(self, ctx: torch.Tensor, hyp: torch.Tensor, q: bool):
        a = self.l0(ctx, hyp, q) / ACT_STEP
        a = torch.clamp(ste_round(a) if q else a, 0, ACT_MAX) * ACT_STEP
        a = self.l1(a, None, q) / ACT_STEP
        a = torch.clamp(ste_round(a) if q else a, 0, ACT_MAX) * ACT_STEP
        out = self.l2(a, None, q)
        dm, di = out[:, : self.ms], out[:, self.ms :]
        if q:
            dm = ste_round(dm * 2**MEAN_BITS) / 2**MEAN_BITS
            di = ste_round(di)
        lim = D_MEAN_LIMIT / 2**MEAN_BITS
        return torch.clamp(dm, -lim, lim), torch.clamp(di, -(SCALE_LEVELS - 1), SCALE_LEVELS - 1)


class ContextModel(nn.Module):
    def __init__(self, cfg: ContextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ms = cfg.m // cfg.slices
        nets = {}
        for s, p in cfg.steps():
            if (s, p) == (0, 0):
                continue
            cctx = ms * (s + (1 if p > 0 else 0))
            nets[f"{s}_{p}"] = StepNet(cctx, 2 * cfg.m, cfg.hidden, ms, cfg.kernel)
        self.nets = nn.ModuleDict(nets)
        self.quantize = False
        self.bf16 = False  # bfloat16 step networks while not quantizing (CPU speed)

    def forward(self, y: torch.Tensor, mean_h: torch.Tensor, idx_h: torch.Tensor,
                train: bool = True) -> dict[str, torch.Tensor]:
        """y: gain-scaled latents [B,M,h,w]; mean_h, idx_h: the frozen hyper-decoder's output.

        Returns the final (mean, idx) and the bits of y per image (noise in training, the real
        rounding otherwise). The decoded values the steps see are the real ones either way."""
        cfg, q = self.cfg, self.quantize
        b, m, h, w = y.shape
        ms = m // cfg.slices
        with torch.autocast(device_type=y.device.type, enabled=False):
            y, mean_h, idx_h = y.float(), mean_h.float(), idx_h.float()
            hyp = torch.cat([mean_h, idx_h], 1)
            hyp = torch.clamp(hyp, -CTX_LIMIT * IN_STEP, CTX_LIMIT * IN_STEP)
            mu, idx = mean_h.clone(), idx_h.clone()
            ctx = torch.zeros_like(y)
            for s, p in cfg.steps():
                cs = slice(s * ms, (s + 1) * ms)
                pm = phase_mask(h, w, cfg.phases, p, y.device)
                if (s, p) != (0, 0):
                    net = self.nets[f"{s}_{p}"]
                    cctx = ms * (s + (1 if p > 0 else 0))
                    with torch.autocast(device_type=y.device.type, dtype=torch.bfloat16,
                                        enabled=self.bf16 and not q):
                        dm, di = net(ctx[:, :cctx], hyp, q)
                    dm, di = dm.float(), di.float()
                    mu = mu.clone()
                    idx = idx.clone()
                    mu[:, cs] = torch.where(pm.bool(), mean_h[:, cs] + dm, mu[:, cs])
                    idx[:, cs] = torch.where(pm.bool(), torch.clamp(idx_h[:, cs] + di, 0,
                                                                     SCALE_LEVELS - 1), idx[:, cs])
                with torch.no_grad():
                    yhat = torch.round(y[:, cs] - mu[:, cs]) + mu[:, cs]
                    val = torch.clamp(yhat - mean_h[:, cs], -CTX_LIMIT * IN_STEP,
                                      CTX_LIMIT * IN_STEP)
                    ctx = ctx.clone()
                    ctx[:, cs] = torch.where(pm.bool(), val, ctx[:, cs])
            v = y - mu
            # y is frozen: the rate of its real symbols is the objective (rounding with a
            # straight-through gradient to the means), not the noisy proxy, which for fixed
            # latents overstates it by half.
            lik = gaussian_likelihood(ste_round(v) if train else torch.round(v),
                                      scale_from_index(idx))
            bits = -torch.log2(lik).sum(dim=(1, 2, 3))
        return {"mean": mu, "idx": idx, "bits": bits}

    @torch.no_grad()
    def to_numpy(self) -> dict[str, np.ndarray]:
        """Every step network in exact integer form (format: codec/latent/context_net.py)."""
        out: dict[str, np.ndarray] = {
            "slices": np.int64(self.cfg.slices), "phases": np.int64(self.cfg.phases),
            "ctx_limit": np.int64(CTX_LIMIT), "d_mean_limit": np.int64(D_MEAN_LIMIT),
        }
        for key, net in self.nets.items():
            for i, layer in enumerate((net.l0, net.l1, net.l2)):
                out |= _export_layer(layer, f"{key}.{i}", last=i == 2, ms=net.ms,
                                     in_max=CTX_LIMIT if i == 0 else ACT_MAX)
        return out


def _export_layer(layer: _QConv, prefix: str, last: bool, ms: int, in_max: int) -> dict:
    sw = layer.weight_step().double().cpu()
    acc_step = sw * layer.in_step
    res: dict[str, np.ndarray] = {}
    wsum = torch.zeros_like(sw)
    for name, p in (("w", layer.w), ("wh", layer.wh)):
        if p is None:
            continue
        wq = torch.round(p.double().cpu() / sw[:, None, None, None])
        res[f"{prefix}.{name}"] = wq.numpy().astype(np.int8)  # per-channel int8 grid
        wsum += wq.abs().sum(dim=(1, 2, 3))
    b = torch.round(layer.b.double().cpu() / acc_step)
    if last:
        out_scale = acc_step.clone()
        out_scale[:ms] *= 2**MEAN_BITS
        lo = np.concatenate([np.full(ms, -D_MEAN_LIMIT), np.full(ms, -(SCALE_LEVELS - 1))])
        hi = np.concatenate([np.full(ms, D_MEAN_LIMIT), np.full(ms, SCALE_LEVELS - 1)])
    else:
        out_scale = acc_step / ACT_STEP
        lo, hi = np.zeros(len(sw)), np.full(len(sw), ACT_MAX)
    acc_max = float((wsum * in_max + b.abs()).max()) + 1
    shift = min(int(np.floor(np.log2(EXACT / (acc_max * float(out_scale.max()) * 2)))), 40)
    res[f"{prefix}.b"] = b.numpy().astype(np.int64)
    res[f"{prefix}.m"] = torch.round(out_scale * 2**shift).numpy().astype(np.int64)
    res[f"{prefix}.shift"] = np.int64(shift)
    res[f"{prefix}.lo"] = lo.astype(np.int64)
    res[f"{prefix}.hi"] = hi.astype(np.int64)
    return res
