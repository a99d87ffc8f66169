"""The `int8` task: quantization-aware fine-tuning of a trained model's 8-bit synthesis.

Only the synthesis (`IntSynthesis`) learns: the encoder, hyperprior and gains stay as trained,
so the streams and their rates do not change and the loss is the distortion alone, mean
log-MSE over rate levels sampled continuously between the trained ones (as quality 1..100
interpolates them). Adam at lr (weights) and 33x lr (the log-scales), cosine decay, float32
(the fake quantisation's grids are not bf16's). The export stores it inside a weights file,
under "int_synthesis" (one file per model, as shipped): `target`, by default OUT/weights.pt,
a copy of the input weights; a weights file that already holds one starts from it.
"""

from __future__ import annotations

import hashlib
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import load_images, random_crops, split
from ..int_synthesis import IntSynthesis, activation_ranges
from ..loop import Recipe, Task, save_atomic, steps_trained, unwrap
from ..models import Hyperprior, at_positions, frozen, model_from_state
from .photo import image_tensor, psnr


@torch.no_grad()
def synthesis_input(model: Hyperprior, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """y_hat as decoding makes it, at continuous rate positions t in [0, levels - 1]."""
    g = at_positions(model.gains.log_gain, t)[:, :, None, None]
    ig = at_positions(model.gains.log_inv_gain, t)[:, :, None, None]
    y = model.g_a(x).float() * g
    z_hat = torch.round(model.h_a(y).float())
    mean, _ = model.h_s(z_hat)
    return torch.round(y - mean) * ig + mean * ig


def build(state: dict, images: list[np.ndarray], device: str) -> tuple[Hyperprior, IntSynthesis]:
    """The trained model of a weights file's contents and its 8-bit synthesis, activation
    ranges calibrated on `images`."""
    model = model_from_state(state, device)
    assert isinstance(model, Hyperprior) and model.cfg.upsample == "subpel"
    frozen(model)
    levels = len(model.cfg.lambdas)
    ys = []
    for a in images:
        x = image_tensor(a, device, limit=256)
        for t in (0.0, (levels - 1) / 2, levels - 1.0):
            ys.append(synthesis_input(model, x, torch.tensor([t], device=device)))
    ins, outs = activation_ranges(model.g_s, ys)
    net = IntSynthesis(model.g_s, ins, outs).to(device)
    for p in net.parameters():
        p.requires_grad_(True)
    return model, net


@torch.no_grad()
def validate(model: Hyperprior, net: IntSynthesis, images: list[np.ndarray], device: str):
    """Mean PSNR of the float and the 8-bit synthesis at the lowest, middle and top level.
    They share their float weights, which the fine-tune moves: the trained float synthesis
    is "float" before the first run only."""
    levels = len(model.cfg.lambdas)
    rows = []
    for t in (0.0, float(levels // 2), levels - 1.0):
        pf, pq = [], []
        for a in images:
            x = image_tensor(a, device)
            y = synthesis_input(model, x, torch.tensor([t], device=device))
            pf.append(psnr(model.g_s(y), x))
            pq.append(psnr(net(y), x))
        rows.append({"level": t, "float": float(np.mean(pf)), "int8": float(np.mean(pq))})
    return rows


def attach(weights: Path, net: IntSynthesis, record: dict) -> None:
    """Store the 8-bit synthesis in the weights file; large tensors as float16, as the float
    transforms are (they are quantized to 8 bits on export in any case)."""
    state = torch.load(weights, map_location="cpu", weights_only=False)
    state["int_synthesis"] = {"net": half_state(net.state_dict()), "record": record}
    save_atomic(state, weights)


def half_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().half() if v.numel() >= 4096 else v.detach().cpu()
            for k, v in sd.items()}


def model_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a weights file's float model (its state dict; not of the file, which the
    export rewrites)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


class Int8Model(nn.Module):
    """The frozen float model beside the 8-bit synthesis that trains."""

    def __init__(self, model: Hyperprior, net: IntSynthesis) -> None:
        super().__init__()
        self.model, self.net = model, net


class Int8Task(Task):
    name = "int8"

    def __init__(self, weights: Path, data: Path, target: Path | None = None,
                 scale_lr: float = 33.3) -> None:
        self.weights, self.data, self.scale_lr = Path(weights), Path(data), scale_lr
        self.target = target
        self._train: list[torch.Tensor] | None = None
        self._val: list[np.ndarray] = []
        self._calib: list[np.ndarray] = []

    @cached_property
    def stored(self) -> dict:
        """The weights file as it was when the task began, read once (the export may rewrite
        it in place)."""
        return torch.load(self.weights, map_location="cpu", weights_only=False)

    @cached_property
    def digest(self) -> str:
        return model_digest(self.stored["model"])

    def config(self) -> dict[str, Any]:
        """With the float model's digest: a fine-tune is not resumed over other weights."""
        return {"weights": str(self.weights), "model": self.digest, "data": str(self.data),
                "scale_lr": self.scale_lr}

    def _load(self) -> None:
        if self._train is None:
            crop = self.recipe.crop if self.recipe else 256
            train, val = split(load_images(self.data, crop))
            self._train = [torch.from_numpy(a.copy()).permute(2, 0, 1) for _, a in train]
            self._val, self._calib = [a for _, a in val], [a for _, a in train[::10]]

    def build(self, device: str) -> nn.Module:
        self._load()
        model, net = build(self.stored, self._calib, device)
        self._levels = len(model.cfg.lambdas)
        prior = self.stored.get("int_synthesis")
        self._before = {"iterations": 0, "runs": []}
        if prior is not None:  # continue the fine-tune the weights already hold
            net.load_state_dict({k: v.float() for k, v in prior["net"].items()})
            self._before = {k: prior["record"].get(k, d) for k, d in self._before.items()}
        return Int8Model(model, net)

    def extra_state(self) -> dict:
        return {"before": self._before}  # the weights may be this run's own export by now

    def load_extra_state(self, state: dict) -> None:
        self._before = state["before"]

    def param_groups(self, m: nn.Module) -> dict:
        named = list(m.net.named_parameters())
        return {"main": [([p for n, p in named if not n.startswith("log_s")], 1.0),
                         ([p for n, p in named if n.startswith("log_s")], self.scale_lr)]}

    def batch(self, step: int, gen: torch.Generator, recipe: Recipe, device: str) -> Any:
        self._load()
        x = random_crops(self._train, recipe.crop, recipe.batch, gen).to(device)
        return x, (torch.rand(recipe.batch, generator=gen) * (self._levels - 1)).to(device)

    def losses(self, m: nn.Module, batch: Any, frac: float):
        x, t = batch
        inner = unwrap(m)
        y = synthesis_input(inner.model, x, t)
        mse = torch.mean((inner.net(y).float().clamp(0, 1) - x) ** 2, dim=(1, 2, 3))
        loss = torch.log(mse.clamp_min(1e-10)).mean()
        return {"main": loss}, {"psnr": float(-10 * loss.detach() / np.log(10))}

    def validate(self, m: nn.Module, device: str) -> dict[str, float]:
        rows = validate(m.model, m.net, self._val, device)
        return {f"{k}_level{r['level']:g}": r[k] for r in rows for k in ("float", "int8")}

    def export(self, m: nn.Module, out: Path) -> Path:
        """The weights file with this 8-bit synthesis in it (and its record: the steps of
        every run, before this task's ones included)."""
        target = self.target or out / "weights.pt"
        if target.resolve() != self.weights.resolve():
            shutil.copyfile(self.weights, target)
        loop = self.record or {"runs": [], "validation": []}
        steps = steps_trained(loop)
        record = {"iterations": int(self._before["iterations"]) + steps,
                  "runs": [*self._before["runs"], *loop["runs"]],
                  "validation": (loop["validation"] or [{}])[-1]}
        attach(target, m.net, record)
        return target
