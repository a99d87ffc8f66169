"""The `context` task: a context model (export/context.py) on frozen latents of the shipped
hyperprior.

Rate-only: y is fixed, so the bits of y are the whole objective and pixels do not change. The
loss is each crop's bits relative to what the frozen hyperprior spends on it, so every rate
level counts the same (BD-rate is relative). Qualities are drawn uniformly in 1..100 and
turned into gains as the runtime does. The step networks train quantized after `qat_from` of
the run. Validation: the rate saved on held-out latents at qualities 1, 50 and 100 (and on an
evaluation set's latents when given). Export: `OUT/context.pt` (config and model), what
`aecodec train context-export` turns into a model folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..context import ContextConfig, ContextModel
from ..latents import load_latents
from ..loop import Recipe, Task, save_atomic, steps_trained, unwrap
from ..models import at_positions, frozen, load_weights, quality_position


class FrozenHyper:
    """The shipped hyperprior's h_a, integer h_s and z bottleneck, frozen, with the runtime's
    gains (interpolated by quality as codec/model.py does)."""

    def __init__(self, checkpoint: Path, model: str = "hyperprior") -> None:
        import aecodec

        hp, _ = load_weights(checkpoint)
        frozen(hp)
        self.hp = hp
        self.gain = torch.from_numpy(aecodec.Codec(model).model.gain).float()

    def gains(self, quality: torch.Tensor) -> torch.Tensor:
        return at_positions(torch.log(self.gain), quality_position(quality, len(self.gain)))

    @torch.no_grad()
    def __call__(self, y: torch.Tensor, quality: torch.Tensor):
        """y [B,M,h,w] before gain -> y_g, mean_h, idx_h, z bits [B], hyperprior y bits [B]."""
        from ..entropy import gaussian_likelihood, scale_from_index

        with torch.autocast(device_type=y.device.type, enabled=False):  # as the runtime
            y_g = y.float() * self.gains(quality)[:, :, None, None]
            z_hat = torch.round(self.hp.h_a(y_g).float())
            z_bits = -torch.log2(self.hp.bottleneck.likelihood(z_hat)).sum(dim=(1, 2, 3))
            mean, idx = self.hp.h_s(z_hat)
            lik = gaussian_likelihood(torch.round(y_g - mean), scale_from_index(idx))
            return y_g, mean, idx, z_bits, -torch.log2(lik).sum(dim=(1, 2, 3))


@torch.no_grad()
def evaluate(model: ContextModel, hyper: FrozenHyper, latents: list[np.ndarray],
             qualities=(1, 15, 30, 45, 60, 75, 90, 100), quantize: bool = True) -> list[dict]:
    """Per quality: total bits (z + y) of the hyperprior and with the context, rate saved."""
    was = model.quantize
    model.quantize = quantize
    rows = []
    for q in qualities:
        base = ctx = 0.0
        for a in latents:
            y = torch.from_numpy(a.astype(np.float32))[None]
            y_g, mean, idx, zb, yb = hyper(y, torch.tensor([float(q)]))
            out = model(y_g, mean, idx, train=False)
            base += float(zb + yb)
            ctx += float(zb + out["bits"])
        rows.append({"quality": q, "bits_base": base, "bits_ctx": ctx,
                     "saved": 1 - ctx / base})
    model.quantize = was
    return rows


class ContextTask(Task):
    name = "context"

    def __init__(self, latents: Path, cfg: ContextConfig, checkpoint: Path,
                 model: str = "hyperprior", qat_from: float = 0.7,
                 eval_latents: Path | None = None, init: Path | None = None) -> None:
        self.latents, self.cfg, self.checkpoint = Path(latents), cfg, Path(checkpoint)
        self.model_name, self.qat_from, self.init = model, qat_from, init
        self.eval_latents = eval_latents

    def config(self) -> dict[str, Any]:
        return {"latents": str(self.latents), "cfg": self.cfg.to_dict(),
                "checkpoint": str(self.checkpoint), "model": self.model_name,
                "qat_from": self.qat_from}

    def build(self, device: str) -> nn.Module:
        size = self.recipe.crop if self.recipe else 16
        lat = load_latents(self.latents)
        names = sorted(lat)
        self._val = [lat[n] for n in names[::50]]
        self._train = [torch.from_numpy(lat[n].astype(np.float32))
                       for i, n in enumerate(names) if i % 50 and min(lat[n].shape[1:]) >= size]
        if not self._train:
            raise ValueError(f"{self.latents}: no latents of at least {size} a side to train on")
        self._eval = (list(load_latents(self.eval_latents).values())[::2]
                      if self.eval_latents else [])
        self.hyper = FrozenHyper(self.checkpoint, self.model_name)
        model = ContextModel(self.cfg)
        model.bf16 = self.recipe.bf16 if self.recipe else True
        if self.init is not None:
            model.load_state_dict(torch.load(self.init, weights_only=False)["model"])
        return model.to(device)

    def batch(self, step: int, gen: torch.Generator, recipe: Recipe, device: str) -> Any:
        """Crops of `recipe.crop` latents a side, and a quality in 1..100 each."""
        s, out = recipe.crop, []
        for i in torch.randint(0, len(self._train), (recipe.batch,), generator=gen).tolist():
            a = self._train[i]
            r = int(torch.randint(0, a.shape[1] - s + 1, (1,), generator=gen))
            c = int(torch.randint(0, a.shape[2] - s + 1, (1,), generator=gen))
            out.append(a[:, r: r + s, c: c + s])
        quality = 1 + 99 * torch.rand(recipe.batch, generator=gen)
        return torch.stack(out).to(device), quality.to(device)

    def losses(self, model: nn.Module, batch: Any, frac: float):
        y, quality = batch
        inner = unwrap(model)
        inner.quantize = frac >= self.qat_from
        y_g, mean, idx, _, base = self.hyper(y, quality)
        res = model(y_g, mean, idx, train=True)
        loss = torch.mean(res["bits"] / base.clamp(min=1.0))
        return {"main": loss}, {"rel_bits": float(loss.detach())}

    def validate(self, model: nn.Module, device: str) -> dict[str, float]:
        out = {f"saved_q{r['quality']}": r["saved"]
               for r in evaluate(model, self.hyper, self._val, (1, 50, 100))}
        if self._eval:
            out |= {f"eval_saved_q{r['quality']}": r["saved"]
                    for r in evaluate(model, self.hyper, self._eval, (1, 30, 60, 100))}
        return out

    def export(self, model: nn.Module, out: Path) -> Path:
        """OUT/context.pt: what `context-export` and `eval-context` read."""
        path = out / "context.pt"
        loop = self.record or {"runs": [], "validation": []}
        steps = steps_trained(loop)
        batch = self.recipe.batch if self.recipe else 0
        save_atomic({"config": self.cfg.to_dict(), "model": model.state_dict(),
                     "seen": steps * batch, "record": loop}, path)
        return path
