"""SOAP for the overfit family's networks: Adam run in the eigenbasis of each weight tensor's
gradient covariance (Vyas et al. 2024, "SOAP: improving and stabilizing Shampoo using Adam"),
the optimiser Cool-chic 5 trains its networks with. The networks here are tiny (16 x 16, 40 x 7,
3 x 3 x 3 x 3), so a full eigendecomposition per dimension costs microseconds, and rotating
Adam into the gradient's own axes lets the few hundred weights move together instead of each
on its own scale. The latent grids keep plain Adam (a preconditioner over a grid's dimensions
would mix distant pixels).

torch is imported inside the methods: this module loads with the runtime, torch-free.
"""

from __future__ import annotations

import math
from typing import Any


class Soap:
    """An optimiser over parameter groups (dicts: params, lr, betas, eps, weight_decay,
    every, precondition). A group with `precondition` false is Adam with decoupled weight
    decay; one with it true preconditions every dimension of size 2..max_dim of its tensors
    of two or more dimensions (1-D tensors: Adam), refreshing the eigenbases every `every`
    steps."""

    def __init__(self, groups: list[dict[str, Any]], max_dim: int = 256):
        defaults = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "every": 10,
                    "precondition": False}
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.max_dim = max_dim
        self.state: dict[int, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def step(self) -> None:
        import torch

        with torch.no_grad():
            for g in self.param_groups:
                for p in g["params"]:
                    if p.grad is not None:
                        self._update(p, g)

    def _update(self, p: Any, g: dict[str, Any]) -> None:
        import torch

        b1, b2 = g["betas"]
        s = self.state.setdefault(id(p), {})
        grad = p.grad
        if not s:
            s["step"] = 0
            s["m"] = torch.zeros_like(p)
            s["v"] = torch.zeros_like(p)
            pre = g["precondition"] and p.ndim >= 2
            s["gg"] = [torch.zeros(n, n, dtype=p.dtype, device=p.device)
                       if pre and 2 <= n <= self.max_dim else None for n in p.shape]
            s["q"] = [None] * p.ndim
        s["step"] += 1
        t = s["step"]
        rotated = any(x is not None for x in s["gg"])
        if rotated:  # the covariance first, so the first step already has a basis
            self._covariance(s, grad, b2)
            if t == 1 or t % g["every"] == 0:
                s["q"] = [None if c is None else _eigenbasis(c) for c in s["gg"]]
        s["m"].lerp_(grad, 1 - b1)
        gr = _project(grad, s["q"]) if rotated else grad
        s["v"].mul_(b2).addcmul_(gr, gr, value=1 - b2)
        m = _project(s["m"], s["q"]) if rotated else s["m"]
        step = m / (s["v"].sqrt() / math.sqrt(1 - b2**t) + g["eps"])
        if rotated:
            step = _project(step, s["q"], back=True)
        if g["weight_decay"]:
            p.mul_(1 - g["lr"] * g["weight_decay"])
        p.add_(step, alpha=-g["lr"] / (1 - b1**t))

    @staticmethod
    def _covariance(s: dict[str, Any], grad: Any, beta: float) -> None:
        for d, c in enumerate(s["gg"]):
            if c is not None:
                x = grad.movedim(d, 0).reshape(grad.shape[d], -1)
                c.lerp_(x @ x.T, 1 - beta)


def _eigenbasis(c: Any) -> Any:
    """Orthonormal eigenvectors of a covariance, by decreasing eigenvalue (float64 for the
    near-degenerate ones a zero-initialised layer starts with)."""
    import torch

    _, q = torch.linalg.eigh(c.double())
    return q.flip(1).to(c.dtype)


def _project(x: Any, qs: list[Any], back: bool = False) -> Any:
    """x expressed in the eigenbases (each dimension contracted with its Q, or Q^T back);
    every pass moves dimension 0 to the end, so after all of them the order is restored."""
    import torch

    for q in qs:
        if q is None:
            x = x.movedim(0, -1)
        else:
            x = torch.tensordot(x, q, dims=([0], [1 if back else 0]))
    return x
