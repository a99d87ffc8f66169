"""The photo models (factorized, hyperprior) trained end to end: random crops, rate +
lambda * MSE with the rate level drawn per crop, Adam, and the entropy bottleneck's quantiles
on their own optimiser (the auxiliary loss, at 10x the learning rate).

From scratch (`init=None`) or from a weights file (fine-tune on one's own photos). The
integer hyper-decoder trains quantised after `qat_from` of the schedule. Validation measures
the model as it would be exported (the integer hyper-decoder quantised, real rounding) on the
held-out images, cropped to `VAL_SIDE`, so its cost is bounded; its score is the training
loss itself, averaged over the levels. Export writes `OUT/weights.pt` (model, config and
training record: what `onnx_export.export_model` and a shipped checkpoint hold).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import load_images, random_crops, split
from ..loop import Recipe, Task, save_atomic, steps_trained, unwrap
from ..models import Codec, Config, build, load_weights

VAL_SIDE = 512  # validation images are cropped to at most this side (a bounded cost)


class PhotoTask(Task):
    name = "photo"

    def __init__(self, data: Path, cfg: Config | None = None, init: Path | None = None,
                 qat_from: float = 0.5, aux_lr_scale: float = 10.0,
                 extend_low: int = 0) -> None:
        self.data, self.cfg = Path(data), cfg or Config()
        self.init = None if init is None else Path(init)
        self.qat_from, self.aux_lr_scale = qat_from, aux_lr_scale
        self.extend_low = extend_low  # the start's extra low levels, kept in what it exports
        self._train: list[torch.Tensor] | None = None
        self._val: list[tuple[str, np.ndarray]] = []
        self._record: dict = {}

    def config(self) -> dict[str, Any]:
        """The weights a run started from are not part of it: once there is a checkpoint,
        it is where the model comes from."""
        return {"data": str(self.data), "cfg": self.cfg.to_dict(), "qat_from": self.qat_from}

    def extra_state(self) -> dict:
        return {"record": self._record}  # the history of the weights it started from

    def load_extra_state(self, state: dict) -> None:
        self._record = state.get("record", {})

    def build(self, device: str) -> nn.Module:
        self._load()  # the images first: a folder without any is refused before anything
        if self.init is not None:
            model, state = load_weights(self.init, device)
            self.cfg, self._record = model.cfg, state.get("record", {})
            return model
        return build(self.cfg).to(device)

    def param_groups(self, model: nn.Module) -> dict:
        named = list(model.named_parameters())
        return {"main": ([p for n, p in named if not n.endswith("quantiles")], 1.0),
                "aux": ([p for n, p in named if n.endswith("quantiles")], self.aux_lr_scale)}

    def ddp_ignore(self, model: nn.Module) -> list[str]:
        return [n for n, _ in model.named_parameters() if n.endswith("quantiles")]

    def _load(self) -> None:
        if self._train is None:
            crop = self.recipe.crop if self.recipe else 256
            train, self._val = split(load_images(self.data, crop))
            self._train = [torch.from_numpy(a.copy()).permute(2, 0, 1) for _, a in train]

    def batch(self, step: int, gen: torch.Generator, recipe: Recipe, device: str) -> Any:
        self._load()
        x = random_crops(self._train, recipe.crop, recipe.batch, gen).to(device)
        level = torch.randint(0, len(self.cfg.lambdas), (recipe.batch,), generator=gen)
        return x, level.to(device)

    def losses(self, model: nn.Module, batch: Any, frac: float):
        x, level = batch
        inner = unwrap(model)
        if hasattr(inner, "h_s"):
            inner.h_s.quantize = frac >= self.qat_from
        lambdas = torch.tensor(self.cfg.lambdas, device=x.device)
        loss, mse, bpp = rd_loss(model, x, level, lambdas)
        aux = inner.aux_loss()
        psnr = float(torch.mean(-10 * torch.log10(mse.detach().clamp(min=1e-10))))
        return ({"main": loss, "aux": aux},
                {"loss": float(loss.detach()), "bpp": float(bpp.detach().mean()), "psnr": psnr,
                 "aux": float(aux.detach())})

    def validate(self, model: nn.Module, device: str) -> dict[str, float]:
        """Mean estimated bpp and PSNR (real rounding) over the held-out images, per level,
        with the hyper-decoder as exported (quantised); `cost`: the loss, mean over levels."""
        self._load()
        inner = unwrap(model)
        quantize = getattr(getattr(inner, "h_s", None), "quantize", None)
        if quantize is not None:
            inner.h_s.quantize = True
        rows = evaluate(inner, [a for _, a in self._val], device, limit=VAL_SIDE)
        if quantize is not None:
            inner.h_s.quantize = quantize
        point = {f"{k}_level{r['level']}": r[k] for r in rows for k in ("bpp", "psnr")}
        costs = [lam * 255**2 * r["mse"] + r["bpp"]
                 for lam, r in zip(self.cfg.lambdas, rows, strict=True)]
        return point | {"cost": float(np.mean(costs))}

    @property
    def val_images(self) -> int:
        """How many held-out images the validation measures."""
        return len(self._val)

    def score(self, point: dict[str, float]) -> float | None:
        return point.get("cost")

    def trained_start(self) -> bool:
        return self.init is not None

    def export(self, model: nn.Module, out: Path) -> Path:
        """OUT/weights.pt: the model with its config and training record. A run that trained
        no step keeps the 8-bit synthesis fine-tuned into the file before (it still fits)."""
        path = out / "weights.pt"
        loop = self.record or {"runs": [], "validation": []}
        steps = steps_trained(loop)
        chosen = loop.get("exported_step")  # the best validated point's, when not the last
        points = [p for p in loop["validation"] if p.get("step") == chosen]
        if chosen is not None and loop["runs"]:
            steps = chosen - loop["runs"][0]["start_step"]
        record = {"iterations": int(self._record.get("iterations", 0)) + steps,
                  "runs": [*self._record.get("runs", []), *loop["runs"]],
                  "validation": (points or loop["validation"] or [{}])[-1],
                  "extend_low": self.extend_low}
        state = {"config": self.cfg.to_dict(), "model": model.state_dict(), "record": record}
        last = loop["runs"][-1] if loop["runs"] else {}
        sources = []
        if last.get("end_step", 0) == last.get("start_step", 0):  # this run left it as it was
            sources.append(path)
        if steps == 0 and self.init is not None:  # the weights it started from, untouched
            sources.append(self.init)
        for src in sources:
            if src.is_file():
                kept = torch.load(src, map_location="cpu", weights_only=False)
                if "int_synthesis" in kept:
                    state["int_synthesis"] = kept["int_synthesis"]
                    break
        save_atomic(state, path)
        return path


def rd_loss(model, x: torch.Tensor, level: torch.Tensor, lambdas: torch.Tensor):
    out = model(x, level)
    mse = torch.mean((out["x_hat"].float() - x) ** 2, dim=(1, 2, 3))
    bpp = out["bits"] / (x.shape[2] * x.shape[3])
    loss = torch.mean(lambdas[level] * 255**2 * mse + bpp)
    return loss, mse, bpp


def image_tensor(a: np.ndarray, device: str, limit: int | None = None) -> torch.Tensor:
    """An H x W x 3 uint8 image as [1, 3, h, w] in [0, 1], cropped to multiples of 64 (the
    models' stride), each side at most `limit`."""
    h, w = a.shape[0] // 64 * 64, a.shape[1] // 64 * 64
    if limit is not None:
        h, w = min(h, limit), min(w, limit)
    return torch.from_numpy(a[:h, :w].copy()).permute(2, 0, 1)[None].float().to(device) / 255


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR of pixels rounded to 8 bits, as decoding makes them."""
    p = torch.round(x_hat.float().clamp(0, 1) * 255)
    mse = torch.mean((p - torch.round(x * 255)) ** 2).item()
    return 10 * math.log10(255**2 / max(mse, 1e-10))


def _mse(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """MSE in [0, 1] units of pixels rounded to 8 bits, as decoding makes them."""
    p = torch.round(x_hat.float().clamp(0, 1) * 255)
    return torch.mean((p - torch.round(x * 255)) ** 2).item() / 255**2


@torch.no_grad()
def evaluate(model: Codec, images: list[np.ndarray], device: str,
             limit: int | None = None) -> list[dict]:
    """Per rate level: mean estimated bpp, PSNR with real rounding and MSE (images cropped to
    /64, each side at most `limit`)."""
    model.eval()
    rows = []
    for k in range(len(model.cfg.lambdas)):
        bpps, psnrs, mses = [], [], []
        for a in images:
            x = image_tensor(a, device, limit)
            out = model(x, torch.tensor([k], device=device))
            psnrs.append(psnr(out["x_hat"], x))
            mses.append(_mse(out["x_hat"], x))
            bpps.append(out["bits"].item() / (x.shape[2] * x.shape[3]))
        rows.append({"level": k, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs)),
                     "mse": float(np.mean(mses))})
    model.train()
    return rows
