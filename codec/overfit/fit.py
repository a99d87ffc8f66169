"""Training one image's latents and networks (the encoder of the overfit family).

torch is imported inside the functions here (and in fused.py), never when the module is
imported: only when an image is encoded with an overfit-family model (the `effort` extra).
The networks mirror `synthesis.py` and `latents.py` in float; after training they are
quantised and the stream is written and checked by the exact decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import fused
from .arch import CONTEXT, CTX_LEFT, CTX_RIGHT, CTX_UP, UP_EVEN, UP_ODD, UP_SHIFT, Arch

if TYPE_CHECKING:
    import torch



def softround(x: Any, t: float) -> Any:
    """A differentiable round (C3, Agustsson & Theis): -> round(x) as t -> 0."""
    import torch

    f = torch.floor(x)
    d = x - f - 0.5
    return f + 0.5 * torch.tanh(d / t) / math.tanh(0.5 / t) + 0.5


def _up_kernel() -> Any:
    """[4, 1, 5, 5] phase kernels (ee, eo, oe, oo) of the x2 upsampling over a window of 5."""
    import torch

    e = torch.tensor([*UP_EVEN, 0.0]) / 2**UP_SHIFT
    o = torch.tensor([0.0, *UP_ODD]) / 2**UP_SHIFT
    k = [torch.outer(a, b) for a in (e, o) for b in (e, o)]
    return torch.stack(k)[:, None]


class Net:
    """The autoregressive module and the synthesis of one image, in float: leaf tensors by
    their stream names (`Arch.layers`), so the trainer and the stream agree by construction."""

    def __init__(self, arch: Arch, generator: Any, device: str = "cpu"):
        import torch

        c, s, g = arch.arm_width, arch.synth_width, arch.grids
        self.arch = arch

        def rnd(*shape, std):
            return torch.randn(*shape, generator=generator) * std

        def zeros(*shape):
            return torch.zeros(*shape)

        t = {}
        t["arm.w1"], t["arm.b1"] = rnd(c, c, std=1 / c), zeros(c)
        t["arm.w2"], t["arm.b2"] = zeros(c, c), zeros(c)
        t["arm.w3"], t["arm.b3"] = rnd(2, c, std=1 / c**2), zeros(2)
        t["arm.ws"] = rnd(2, c, std=1 / c**2)
        # a positive bias: at zero latents every unit is active, so gradients reach them
        t["syn.w1"] = rnd(s, g, std=1 / math.sqrt(g))
        t["syn.b1"] = torch.full((s,), 0.1)
        t["syn.w2"] = rnd(3, s, std=1 / s)
        t["syn.b2"] = torch.full((3,), 0.5)
        t["syn.w3"], t["syn.b3"] = zeros(3, 3, 3, 3), zeros(3)
        t["syn.w4"], t["syn.b4"] = zeros(3, 3, 3, 3), zeros(3)
        self.t = {name: t[name].to(device).requires_grad_(True) for name, _ in arch.layers()}
        kw = CTX_LEFT + CTX_RIGHT + 1
        self.ctx_index = torch.tensor([(dy + CTX_UP) * kw + dx + CTX_LEFT
                                       for dy, dx in CONTEXT], device=device)
        self.kshape = (CTX_UP + 1, kw)
        self.up = _up_kernel().to(device)

    def parameters(self) -> list[Any]:
        return list(self.t.values())

    def named_tensors(self) -> dict[str, Any]:
        """The parameters by their stream names (`Arch.layers`)."""
        return self.t

    # -- the entropy model ---------------------------------------------------------------

    def arm(self, grids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, log-scale, y) of every latent of every grid, flattened in grid order."""
        import torch
        import torch.nn.functional as F

        c = self.arch.arm_width
        k = torch.zeros(c + 2, self.kshape[0] * self.kshape[1], dtype=self.t["arm.w1"].dtype)
        k = k.index_copy(1, self.ctx_index, torch.cat([self.t["arm.w1"], self.t["arm.ws"]])
                         ).view(c + 2, 1, *self.kshape)
        feats, ys = [], []
        for y in grids:
            p = F.pad(y, (CTX_LEFT, CTX_RIGHT, CTX_UP, 0))
            feats.append(F.conv2d(p, k).flatten(2)[0])
            ys.append(y.flatten())
        f = torch.cat(feats, 1).t()  # [N, c + 2]
        h1 = torch.relu(f[:, :c] + self.t["arm.b1"])
        h2 = torch.relu(torch.addmm(self.t["arm.b2"], h1, self.t["arm.w2"].t()) + h1)
        out = torch.addmm(self.t["arm.b3"], h2, self.t["arm.w3"].t()) + f[:, c:]
        return out[:, 0], out[:, 1], torch.cat(ys)

    def bits(self, grids: list[torch.Tensor]) -> torch.Tensor:
        """Code length of the latents (bits) under the Laplace the module predicts."""
        mu, ls, y = self.arm(grids)
        return fused.laplace_bits(y, mu, ls, self.arch.log_scale_min, self.arch.log_scale_max)

    def fused_terms(self, grids: list[torch.Tensor], x: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(bits, sum of squared errors) as `bits` and `synthesis` give them, each computed
        with its gradient by bands (fused.py): the training step's fast path."""
        t = self.named_tensors()
        arm = [t[n] for n in ("arm.w1", "arm.b1", "arm.w2", "arm.b2", "arm.w3", "arm.b3",
                              "arm.ws")]
        syn = [t[f"syn.{k}"] for k in ("w1", "b1", "w2", "b2", "w3", "b3", "w4", "b4")]
        a = self.arch
        arm_bits, synth_sse = fused.functions()
        bits = arm_bits.apply(a.log_scale_min, a.log_scale_max, len(grids), *grids, *arm)
        return bits, synth_sse.apply(self.upsample(grids), x, *syn)

    # -- the synthesis -------------------------------------------------------------------

    def upsample(self, grids: list[torch.Tensor]) -> torch.Tensor:
        """All grids brought to the finest one's size: [1, grids, h, w]."""
        import torch
        import torch.nn.functional as F

        u = grids[-1]
        for g in reversed(grids[:-1]):
            n = u.shape[1]
            p = F.pad(u, (2, 2, 2, 2), mode="replicate").contiguous(
                memory_format=torch.channels_last)  # oneDNN's faster depthwise layout
            u = F.pixel_shuffle(F.conv2d(p, self.up.repeat(n, 1, 1, 1), groups=n), 2)
            u = torch.cat([g, u[:, :, : g.shape[2], : g.shape[3]]], 1)
        return u

    def synthesis(self, u: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        t = self.t
        s1 = torch.relu(F.conv2d(u, t["syn.w1"][:, :, None, None], t["syn.b1"]))
        s2 = F.conv2d(s1, t["syn.w2"][:, :, None, None], t["syn.b2"])
        s3 = torch.relu(F.conv2d(F.pad(s2, (1, 1, 1, 1), mode="replicate"), t["syn.w3"],
                                 t["syn.b3"])) + s2
        return F.conv2d(F.pad(s3, (1, 1, 1, 1), mode="replicate"), t["syn.w4"], t["syn.b4"]) + s3


@dataclass
class Schedule:
    """One training run: Cool-chic 5's intra recipe scaled to a step budget."""

    steps: int
    # Cool-chic's 1e-2 for both suits its 10 k+ steps; at 1-2 k steps the latents must move
    # faster (256x256 crop of kodim23, 400 steps, RD loss: latents at 1e-2 1.93, 0.05 1.41,
    # 0.1 1.16, 0.25 1.08, 0.5 1.16). The networks' rate depends on lambda: `Schedule.at`.
    lr: float = 0.02  # the networks'
    latent_lr: float = 0.25
    final: float = 0.1  # share of the steps trained with hard rounding at the end
    final_lr: float = 1e-4
    t0: float = 0.35  # soft-round temperature, start -> end
    t1: float = 0.08
    n0: float = 0.22  # noise std, start -> end
    n1: float = 0.15
    init: str = "zero"  # "pyramid": latents start as a luma Laplacian pyramid (measured
    # worse: 2.04 against 1.08 on that crop, from a grey start that colour must undo)
    unit: float = 1 / 16  # the pyramid's latent unit on the [0, 1] pixel scale
    # The networks: SOAP (soap.py) as Cool-chic 5 trains them, with their gradient's norm
    # clipped to `clip` on Cool-chic's loss scale (MSE + bpp / (lambda 255^2)). Measured on
    # 256x256 crops of kodim09, 1,000 steps, final RD loss against Adam (0.01 at q67 and
    # q100, 0.02 at q1): q1 0.0545 -> 0.0245, q67 0.488 -> 0.350, q100 1.858 -> 1.391.
    # Cool-chic's bound 0.1 failed at q100 (3.72); tighter was never worse: q100 at
    # 0.02 / 0.005 / 0.0025: 1.688 / 1.396 / 1.391, q67 at 0.1 / 0.02 / 0.005: 0.370 /
    # 0.355 / 0.350, q1 at 1 / 0.1 / 0.02: 0.0246 / 0.0249 / 0.0245. At 0.003 the whole
    # kodim21 at lambda 0.68 ran away (3.08 bpp, 37.33 dB); at 0.001 it gave 2.51 bpp,
    # 40.39 dB (crops at 0.003 / 0.001: kodim09 q1 0.0248 / 0.0242, kodim01 q67 2.689 / 2.702).
    optimizer: str = "soap"  # or "adam"
    clip: float = 0.001  # 0: none
    betas: tuple[float, float] = (0.95, 0.95)
    weight_decay: float = 0.01

    @classmethod
    def at(cls, steps: int, lam: float) -> Schedule:
        """The schedule for a trade-off: the networks' learning rate 0.02 up to lambda 0.025,
        0.01 from 0.18, log-linear between. Measured with SOAP on 256x256 crops, 1,000 steps,
        final RD loss at 0.02 / 0.01: kodim01 at lambda 0.0035 (q34) 0.818 / 0.839 and
        kodim09 at 0.025 (q67) 0.370 / 0.394 (both bounded at 0.1), kodim09 at 0.18 (q100)
        1.416 / 1.396 (bounded at 0.005): high rates want the slower networks."""
        a = min(max(math.log(lam / 0.025) / math.log(0.18 / 0.025), 0.0), 1.0)
        return cls(steps, lr=0.02 * 0.5**a)


def _pyramid_init(net: Net, lat: list[torch.Tensor], x: torch.Tensor, unit: float) -> None:
    """A head start: the grids hold a luma Laplacian pyramid (closed loop: each level codes
    what the upsampled coarser ones miss, in latent units of `unit`), and the synthesis starts
    as the sum of the upsampled grids (relu(u) - relu(-u) pairs), grey. Training then adds
    colour and trades rate for distortion from there instead of from a flat image."""
    import torch
    import torch.nn.functional as F

    g = len(lat)
    with torch.no_grad():
        luma = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[:, None, None]).sum(
            1, keepdim=True)
        pyr = [luma]
        for y in lat[1:]:
            p = pyr[-1]
            p = F.pad(p, (0, p.shape[3] % 2, 0, p.shape[2] % 2), mode="replicate")
            pyr.append(F.avg_pool2d(p, 2)[:, :, : y.shape[2], : y.shape[3]])
        rec = None
        for k in range(g - 1, -1, -1):
            base = 0.0 if rec is None else net.upsample([torch.zeros_like(lat[k]), rec])[:, 1:]
            lat[k].copy_(torch.round((pyr[k] - base) / unit))
            rec = base + lat[k] * unit
        s = net.t["syn.w1"].shape[0]
        w1 = torch.zeros(s, g)
        w1[:g] = torch.eye(g)
        w1[g:2 * g] = -torch.eye(g)
        w1[2 * g:] = net.t["syn.w1"][2 * g:]
        net.t["syn.w1"].copy_(w1)
        net.t["syn.b1"][: 2 * g] = 0.0
        w2 = torch.randn(3, s, generator=torch.Generator().manual_seed(1)) * 1e-3
        w2[:, :g] = unit
        w2[:, g:2 * g] = -unit
        net.t["syn.w2"].copy_(w2)
        net.t["syn.b2"].zero_()


@dataclass
class Fitted:
    """A trained image: integer grids and the networks' float parameters (before quantising)."""

    grids: list[np.ndarray]
    params: dict[str, np.ndarray]
    log: list[dict]


def _optimizer(net: Net, lat: list[Any], schedule: Schedule) -> Any:
    """Adam for the latents; Adam or SOAP (soap.py) for the networks. Each group keeps its
    base learning rate in "base", which the schedule scales."""
    import torch

    from .soap import Soap

    nets = {"params": list(net.parameters()), "base": schedule.lr, "lr": schedule.lr,
            "betas": schedule.betas, "weight_decay": schedule.weight_decay}
    lats = {"params": lat, "base": schedule.latent_lr, "lr": schedule.latent_lr}
    if schedule.optimizer == "soap":
        return Soap([{**nets, "precondition": True, "every": 10}, lats])
    if schedule.optimizer == "adam":
        return torch.optim.AdamW([nets, {**lats, "weight_decay": 0.0}])
    raise ValueError(f"unknown optimizer {schedule.optimizer!r}")


def _step(net: Net, opt: Any, yq: list[Any], x: Any, k: float, clip: float
          ) -> tuple[Any, Any, Any]:
    """One optimiser step on k * MSE + bpp with the networks' gradient norm bounded at
    `clip * k` (Cool-chic's loss is this one over k; 0: no bound): (loss, bits, MSE)."""
    import torch

    bits, sse = net.fused_terms(yq, x)
    mse = sse / x.numel()
    loss = k * mse + bits / (x.shape[2] * x.shape[3])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip * k)
    opt.step()
    return loss, bits, mse


def _target(image: np.ndarray, device: str) -> torch.Tensor:
    import torch

    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)), device=device
                           )[None].float() / 255.0


def fit(image: np.ndarray, arch: Arch, lam: float, schedule: Schedule, seed: int = 0,
        device: str = "cpu", progress=None) -> Fitted:
    """Train latents and networks for one H x W x 3 uint8 image at the RD trade-off `lam`
    (the loss is lam * 255**2 * MSE + bits per pixel, the other models' scale)."""
    import torch

    from .arch import grid_shapes

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = _target(image, device)
    h, w = image.shape[:2]
    net = Net(arch, gen, device)
    lat = [torch.zeros(1, 1, gh, gw, device=device).requires_grad_(True)
           for gh, gw in grid_shapes(h, w, arch.grids)]
    if schedule.init == "pyramid":
        _pyramid_init(net, lat, x, schedule.unit)
    opt = _optimizer(net, lat, schedule)
    k = lam * 255.0**2
    main = int(schedule.steps * (1 - schedule.final))
    log = []
    for step in range(schedule.steps):
        if step < main:
            a = step / max(main - 1, 1)
            t = schedule.t0 + (schedule.t1 - schedule.t0) * a
            sd = schedule.n0 + (schedule.n1 - schedule.n0) * a
            lr = 0.5 * (1 + math.cos(math.pi * a))
            yq = [softround(softround(y, t) + sd * torch.randn_like(y), t) for y in lat]
        else:
            a = (step - main) / max(schedule.steps - main, 1)
            lr = schedule.final_lr / schedule.lr * 0.5 * (1 + math.cos(math.pi * a))
            yq = [torch.round(y.detach()) for y in lat]  # the networks adapt to the rounding
        for g in opt.param_groups:
            g["lr"] = g["base"] * lr
        loss, bits, mse = _step(net, opt, yq, x, k, schedule.clip)
        if progress is not None:
            progress(step)
        if step % 100 == 0 or step == schedule.steps - 1:
            log.append({"step": step, "loss": float(loss.detach()),
                        "bpp": float(bits.detach()) / (h * w),
                        "psnr": -10 * math.log10(max(float(mse.detach()), 1e-12))})
    with torch.no_grad():
        grids = [torch.round(y)[0, 0].cpu().numpy().astype(np.int32) for y in lat]
        params = {n: t.detach().cpu().double().numpy() for n, t in net.named_tensors().items()}
    return Fitted(grids, params, log)


def rd_cost(arch: Arch, image: np.ndarray, grids: list[np.ndarray],
            params: dict[str, np.ndarray], lam: float, device: str = "cpu") -> tuple[float, float]:
    """(latent bits, MSE) of hard-rounded grids under float networks holding `params`."""
    import torch

    gen = torch.Generator().manual_seed(0)
    net = Net(arch, gen, device)
    with torch.no_grad():
        for n, t in net.named_tensors().items():
            t.copy_(torch.as_tensor(params[n], dtype=torch.float32))
        yq = [torch.as_tensor(g, dtype=torch.float32, device=device)[None, None] for g in grids]
        bits = float(net.bits(yq))
        mse = float(torch.mean((net.synthesis(net.upsample(yq)) - _target(image, device)) ** 2))
    return bits, mse


def time_step_parts(image: np.ndarray, arch: Arch, threads: int, repeats: int
                    ) -> dict[str, float]:
    """Seconds per call of each part of one training step, side by side in this process
    (`aecodec tools overfit-step`): random latents of a trained image's spread, the networks'
    zero-initialised layers perturbed so every unit works as mid-run."""
    import time

    import torch

    from .arch import grid_shapes

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    net = Net(arch, gen)
    with torch.no_grad():
        for t in net.parameters():
            t.add_(torch.randn(t.shape, generator=gen) * 0.05)
    h, w = image.shape[:2]
    x = _target(image, "cpu")
    lat = [(torch.randn(1, 1, a, b, generator=gen) * 2).requires_grad_(True)
           for a, b in grid_shapes(h, w, arch.grids)]
    opt = _optimizer(net, lat, Schedule(1, lr=1e-4, latent_lr=1e-4))
    arm_bits, synth_sse = fused.functions()
    t = net.named_tensors()
    arm = [t[n] for n in ("arm.w1", "arm.b1", "arm.w2", "arm.b2", "arm.w3", "arm.b3", "arm.ws")]
    syn = [t[f"syn.{k}"] for k in ("w1", "b1", "w2", "b2", "w3", "b3", "w4", "b4")]
    a = arch
    u = net.upsample(lat).detach().requires_grad_(True)

    def quantised():
        return [softround(softround(y, 0.2) + 0.2 * torch.randn_like(y), 0.2)
                for y in lat]

    def step():
        _step(net, opt, quantised(), x, 0.01 * 255**2, Schedule(1).clip)

    def arm_part():
        arm_bits.apply(a.log_scale_min, a.log_scale_max, len(lat), *lat, *arm).backward()

    def synth_part():
        synth_sse.apply(u, x, *syn).backward()

    def upsample_part():
        net.upsample(lat).sum().backward()

    def softround_part():
        with torch.no_grad():
            quantised()

    def optimizer_part():
        for g in opt.param_groups:
            for p in g["params"]:
                if p.grad is None:  # the warm-up call's, reused
                    p.grad = torch.randn(p.shape, generator=gen) * 1e-3
        opt.step()

    def plain_part():
        bits = net.bits(lat)
        sse = ((net.synthesis(net.upsample(lat)) - x) ** 2).sum()
        (bits + sse).backward()

    parts = {"ARM term, fused (forward + backward)": arm_part,
             "synthesis term, fused (forward + backward)": synth_part,
             "upsampling (forward + backward)": upsample_part,
             "soft rounding and noise": softround_part,
             "SOAP (the networks) and Adam (the latents)": optimizer_part,
             "whole step": step,
             "the two terms and upsampling unfused (plain autograd)": plain_part}
    def timed(fn) -> float:
        fn()  # warm-up: allocations, oneDNN primitive caches
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t0) / repeats

    return {name: timed(fn) for name, fn in parts.items()}


def check_device(device: str) -> None:
    """A clear error for a device torch cannot use here."""
    import torch

    from ..errors import AecodecError

    if device == "cpu":
        return
    if device.startswith("cuda") and torch.cuda.is_available():
        return
    raise AecodecError(f"device {device!r} is not available here (torch sees "
                       f"{'CUDA' if torch.cuda.is_available() else 'no CUDA'}); use cpu")
