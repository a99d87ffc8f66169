"""Building blocks of the transforms: GDN and convolution helpers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class NonNegative(nn.Module):
    """Stores sqrt(x + pedestal) and maps it back through a lower bound (Ballé's reparametrisation).

    Why: GDN's beta and gamma must stay positive; optimising their square roots with a floor keeps
    the normaliser away from zero and its gradient well behaved.
    """

    def __init__(self, minimum: float = 0.0, pedestal: float = 2**-18) -> None:
        super().__init__()
        self.pedestal = pedestal
        self.bound = (minimum + pedestal) ** 0.5

    def init(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(x + self.pedestal, min=self.pedestal))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        p = _lower_bound(p, self.bound)
        return p * p - self.pedestal


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp(x, min=bound)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        # Let the gradient through where it pushes x back above the bound.
        passthrough = (x >= ctx.bound) | (g < 0)
        return g * passthrough, None


def _lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or not x.requires_grad:
        return torch.clamp(x, min=bound)
    return _LowerBound.apply(x, bound)


class GDN(nn.Module):
    """Generalized divisive normalisation (Ballé et al. 2016); inverse=True gives IGDN.

    The normaliser runs in float32 even under autocast: it is a sum of squares that bfloat16
    rounds badly.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_p = NonNegative(1e-6)
        self.gamma_p = NonNegative()
        self.beta = nn.Parameter(self.beta_p.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_p.init(0.1 * torch.eye(channels)))
        self.frozen: tuple[torch.Tensor, torch.Tensor] | None = None

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frozen is not None:
            return self.frozen
        c = self.beta.shape[0]
        return self.beta_p(self.beta), self.gamma_p(self.gamma).reshape(c, c, 1, 1)

    def freeze(self) -> None:
        """Compute beta/gamma once into constants so the ONNX graph holds plain ops."""
        with torch.no_grad():
            b, g = self.params()
            self.frozen = (b.detach().clone(), g.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.params()
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            norm = torch.sqrt(F.conv2d(xf * xf, gamma, beta))
            return xf * norm if self.inverse else xf / norm


def freeze_gdn(module: nn.Module) -> None:
    """Freeze every GDN inside `module` (see GDN.freeze), before export or timing."""
    for mod in module.modules():
        if isinstance(mod, GDN):
            mod.freeze()


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class SubpelConv(nn.Sequential):
    """Upsampling by a 3x3 convolution and pixel shuffle.

    Why not ConvTranspose2d: ONNX Runtime's CPU kernels run plain convolutions several times
    faster than transposed ones (see bench/speed), at equal receptive field.
    """

    def __init__(self, cin: int, cout: int, r: int = 2, k: int = 3) -> None:
        super().__init__(nn.Conv2d(cin, cout * r * r, k, padding=k // 2), nn.PixelShuffle(r))


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1
    )


def upsample(cin: int, cout: int, kind: str) -> nn.Module:
    """The decoder's 2x upsampling step, by name: 'subpel' or 'deconv'."""
    if kind == "subpel":
        return SubpelConv(cin, cout)
    if kind == "deconv":
        return deconv(cin, cout)
    raise ValueError(f"unknown upsampling kind {kind!r}")
