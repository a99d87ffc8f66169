"""The `light-synthesis` task: a lighter exact 8-bit synthesis, pruned from the shipped one and
fine-tuned decoder-only on frozen latents (the method: export/light_synthesis.py).

Build prunes stage `stage` of the 8-bit synthesis in `weights` to `width` channels (a warm
start) and freezes the stages before `train_from`; a batch is y_hat crops as the runtime
decodes them, at a random quality each, and the photo's interior pixels; the loss is mean
log-MSE; Adam at lr (weights) and `scale_lr` times it (the log-scales), cosine decay, float32.
Export: `OUT/light.pt`, what `aecodec train light-synthesis-export` makes a model folder of.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..light_synthesis import (
    LatentCrops,
    decoded_latents,
    levels_span,
    load_pairs,
    prune,
    run_frozen,
    shipped_int_synthesis,
    validate,
)
from ..loop import Recipe, Task, save_atomic, steps_trained, unwrap


class LightSynthesisTask(Task):
    name = "light-synthesis"

    def __init__(self, latents: Path, folders: list[Path], weights: Path, base: str = "hyperprior",
                 stage: int = 2, width: int = 80, train_from: int | None = None,
                 scale_lr: float = 10.0, halo: int = 2) -> None:
        self.latents, self.folders, self.weights = Path(latents), [Path(f) for f in folders], \
            Path(weights)
        self.base, self.stage, self.width, self.scale_lr = base, stage, width, scale_lr
        self.first = stage if train_from is None else train_from
        self.halo = halo

    def config(self) -> dict[str, Any]:
        return {"latents": str(self.latents), "folders": [str(f) for f in self.folders],
                "weights": str(self.weights), "base": self.base, "stage": self.stage,
                "width": self.width, "train_from": self.first, "scale_lr": self.scale_lr,
                "halo": self.halo}

    def build(self, device: str) -> nn.Module:
        size = self.recipe.crop if self.recipe else 16
        self.model, self.teacher = shipped_int_synthesis(self.weights)
        self.span = levels_span(self.model)
        pairs = load_pairs(self.latents, self.folders)
        self._val, train = pairs[::50], [p for i, p in enumerate(pairs) if i % 50]
        ys = [decoded_latents(self.model, torch.from_numpy(y)[None, :, :16, :16].float(),
                              torch.tensor([t])) for _, y, _ in train[::20] for t in self.span]
        net = prune(self.teacher, self.stage, self.width, ys)
        for n, p in net.named_parameters():
            p.requires_grad_(int(n.split(".")[1]) >= self.first)
        self._crops = LatentCrops(train, size, self.halo, model=self.base)
        self._train_photos = len(train)
        return net.to(device)

    def param_groups(self, net: nn.Module) -> dict:
        named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        return {"main": [([p for n, p in named if not n.startswith("log_s")], 1.0),
                         ([p for n, p in named if n.startswith("log_s")], self.scale_lr)]}

    def batch(self, step: int, gen: torch.Generator, recipe: Recipe, device: str) -> Any:
        y_hat, x = self._crops.draw(recipe.batch, gen)
        return y_hat.to(device), x.to(device)

    def losses(self, net: nn.Module, batch: Any, frac: float):
        y_hat, x = batch
        inner = unwrap(net)
        out = run_frozen(inner, y_hat, self.first)
        e = 16 * self.halo
        mse = torch.mean((out[:, :, e:-e, e:-e].float().clamp(0, 1) - x) ** 2, dim=(1, 2, 3))
        loss = torch.log(mse.clamp_min(1e-10)).mean()
        return {"main": loss}, {"psnr": float(-10 * loss.detach() / torch.log(torch.tensor(10.)))}

    def validate(self, net: nn.Module, device: str) -> dict[str, float]:
        """PSNR of the light and the shipped synthesis on whole held-out photos at the lowest,
        middle and top rate position."""
        rows = validate(self.model, {"light": net, "shipped": self.teacher}, self._val[:4],
                        self.span)
        return {f"{k}_t{r['t']:g}": v for r in rows for k, v in r.items() if k != "t"}

    def export(self, net: nn.Module, out: Path) -> Path:
        """OUT/light.pt: the network, its widths, and the record the manifest keeps."""
        loop = self.record or {"runs": [], "validation": []}
        recipe = self.recipe or Recipe()
        record = {"iterations": steps_trained(loop),
                  "stage": self.stage, "width": self.width, "batch": recipe.batch,
                  "crop": 16 * recipe.crop, "loss_halo": 16 * self.halo, "lr": recipe.lr,
                  "scale_lr": recipe.lr * self.scale_lr, "weights": str(self.weights),
                  "data": f"{self.latents.name}: {self._train_photos} training photos, "
                          f"{len(self._val)} held out",
                  "runs": loop["runs"], "validation": loop["validation"]}
        path = out / "light.pt"
        save_atomic({"net": net.state_dict(), "widths": net.widths, "train_from": self.first,
                     "record": record}, path)
        return path
