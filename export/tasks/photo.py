"""The photo models (factorized, hyperprior) trained end to end: random crops, rate +
lambda * MSE with the rate level drawn per crop, Adam, and the entropy bottleneck's quantiles
on their own optimiser (the auxiliary loss, at 10x the learning rate).

From scratch (`init=None`) or from a weights file (fine-tune on one's own photos). The
integer hyper-decoder trains quantised after `qat_from` of the schedule. Export writes
`OUT/weights.pt` (model, config and training record: what `onnx_export.export_model` and a
shipped checkpoint hold).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import load_images, random_crops, split
from ..loop import Recipe, Task
from ..models import Config, build


class PhotoTask(Task):
    name = "photo"

    def __init__(self, data: Path, cfg: Config | None = None, init: Path | None = None,
                 qat_from: float = 0.5, aux_lr_scale: float = 10.0) -> None:
        self.data, self.cfg, self.init = Path(data), cfg or Config(), init
        self.qat_from, self.aux_lr_scale = qat_from, aux_lr_scale
        self._train: list[torch.Tensor] | None = None
        self._val: list[tuple[str, np.ndarray]] = []
        self._record: dict = {}

    def config(self) -> dict[str, Any]:
        return {"data": str(self.data), "cfg": self.cfg.to_dict(),
                "init": None if self.init is None else str(self.init), "qat_from": self.qat_from}

    def build(self, device: str) -> nn.Module:
        if self.init is not None:
            from ..train import load_weights

            model, state = load_weights(self.init, device)
            self.cfg, self._record = model.cfg, state.get("record", {})
            return model
        return build(self.cfg).to(device)

    def param_groups(self, model: nn.Module) -> dict:
        named = list(model.named_parameters())
        return {"main": ([p for n, p in named if not n.endswith("quantiles")], 1.0),
                "aux": ([p for n, p in named if n.endswith("quantiles")], self.aux_lr_scale)}

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
        from ..train import rd_loss

        x, level = batch
        inner = getattr(model, "module", getattr(model, "_orig_mod", model))
        if hasattr(inner, "h_s"):
            inner.h_s.quantize = frac >= self.qat_from
        lambdas = torch.tensor(self.cfg.lambdas, device=x.device)
        loss, mse, bpp = rd_loss(model, x, level, lambdas)
        core = getattr(inner, "module", inner)
        aux = core.aux_loss()
        psnr = float(torch.mean(-10 * torch.log10(mse.detach().clamp(min=1e-10))))
        return ({"main": loss, "aux": aux},
                {"loss": float(loss.detach()), "bpp": float(bpp.detach().mean()), "psnr": psnr,
                 "aux": float(aux.detach())})

    def validate(self, model: nn.Module, device: str) -> dict[str, float]:
        """Mean estimated bpp and PSNR (real rounding) over the held-out images, per level."""
        from ..train import evaluate

        self._load()
        rows = evaluate(model, [a for _, a in self._val], device)
        return {f"{k}_level{r['level']}": r[k] for r in rows for k in ("bpp", "psnr")}

    def export(self, model: nn.Module, out: Path) -> Path:
        """OUT/weights.pt: the model with its config and training record."""
        from ..loop import save_atomic

        path = out / "weights.pt"
        loop = self.record or {"runs": [], "validation": []}
        steps = sum(r.get("end_step", 0) - r["start_step"] for r in loop["runs"])
        record = {"iterations": int(self._record.get("iterations", 0)) + steps,
                  "runs": [*self._record.get("runs", []), *loop["runs"]],
                  "validation": (loop["validation"] or [{}])[-1]}
        save_atomic({"config": self.cfg.to_dict(), "model": model.state_dict(),
                     "record": record}, path)
        return path
