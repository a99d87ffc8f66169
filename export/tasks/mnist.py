"""The MNIST codecs (docs/mnist.md) on the one loop: loss per digit = bits + lambda_k * SSE,
plus the kind's own term (an L1 activity penalty for `sparse`, the ELBO for `vae`; noisy
inputs and clean targets for `denoise`).

Each digit of a batch draws a rate level k; the level's gain vector scales the latent before
quantisation. The batch of step s is the s-th slice of its epoch's permutation (seeded by the
epoch), so every digit is seen once per epoch and a resumed run draws what it would have.
Adam, the density and gains at 5x the learning rate, a cosine schedule, as the shipped models
were trained. Export writes a `factorized` model folder (OUT/model, or the folder asked for).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aecodec.idx import load_mnist

from ..loop import Recipe, Task
from ..mnist.models import RD_WIDTH, MnistCodec
from ..mnist.recipes import MODELS

DEFAULT_LAMBDAS = (2.0, 4.0, 8.0, 16.0, 32.0)  # bits per unit of SSE (x in [0,1]), lowest first
SPARSE_L1 = 0.3  # L1 activity penalty (per unit of |y*gain|), sparse model
VAE_ELBO_WEIGHT = 1.0  # weight of the ELBO (BCE sum + KL, nats) for the VAE
NOISE_SIGMA = (0.3, 0.5)  # denoiser: Gaussian noise std drawn per digit
FAST = ("density", "log_")  # the parameters trained at FAST_LR_SCALE x the learning rate
FAST_LR_SCALE = 5.0

def add_noise(x: torch.Tensor, sigma: float | tuple[float, float] = NOISE_SIGMA,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Noisy digits as the codec will see them: clipped to [0,1] and rounded to 8 bits."""
    n = x.shape[0]
    s = (torch.empty(n, 1, 1, 1).uniform_(*sigma, generator=generator)
         if isinstance(sigma, tuple) else torch.full((n, 1, 1, 1), float(sigma)))
    noisy = x + s * torch.randn(x.shape, generator=generator)
    return torch.round(noisy.clamp(0, 1) * 255) / 255


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    mse = (x_hat - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


@torch.no_grad()
def evaluate(model: MnistCodec, x: torch.Tensor, noisy: torch.Tensor | None = None
             ) -> list[dict]:
    """Per level: mean ideal bits (untrimmed density) and mean per-digit PSNR."""
    x_in = noisy if noisy is not None else x
    out = []
    for k in range(model.K):
        x_hat, bits, sym = model.codec_roundtrip(x_in, k)
        out.append({"level": k, "bits": float(bits.mean()), "psnr": float(psnr(x_hat, x).mean()),
                    "active": int((sym != 0).any(0).sum())})
    return out


def _digits(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).float().div_(255).unsqueeze(1)


class MnistTask(Task):
    """One MNIST codec of a kind (MnistCodec's architectures); `folder`/`model_name`: where
    the export goes and what it is called (not part of the configuration: a resumed run may
    export elsewhere)."""

    name = "mnist"

    def __init__(self, kind: str, data: str | Path | None = None, latent: int = 32,
                 lambdas: tuple[float, ...] = DEFAULT_LAMBDAS, width: tuple[int, int] = RD_WIDTH,
                 l1: float = SPARSE_L1, val_digits: int = 2000,
                 folder: Path | None = None, model_name: str | None = None) -> None:
        self.kind, self.data, self.latent = kind, data, latent
        self.lambdas, self.width = tuple(float(v) for v in lambdas), tuple(width)
        self.l1, self.val_digits = l1, val_digits
        self.folder, self.model_name = folder, model_name
        self._train: torch.Tensor | None = None
        self._perm: tuple[int, torch.Tensor] | None = None

    @classmethod
    def shipped(cls, key: str, data: str | Path | None = None, **kw: Any) -> MnistTask:
        """The task of a shipped model's recipe (MODELS[key]), exported as mnist-<key>. Its
        time box and warm-up (rd-hq's) are the recipe's (`aecodec train mnist` passes them)."""
        spec = {k: v for k, v in MODELS[key].items() if k not in ("minutes", "warmup")}
        return cls(data=data, model_name=f"mnist-{key}", **(spec | kw))

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "data": None if self.data is None else str(self.data),
                "latent": self.latent, "lambdas": list(self.lambdas), "width": list(self.width),
                "l1": self.l1, "val_digits": self.val_digits}

    def build(self, device: str) -> nn.Module:
        return MnistCodec(self.kind, latent=self.latent, levels=len(self.lambdas),
                          width=self.width).to(device)

    def param_groups(self, model: nn.Module) -> dict:
        named = list(model.named_parameters())
        return {"main": [([p for n, p in named if not n.startswith(FAST)], 1.0),
                         ([p for n, p in named if n.startswith(FAST)], FAST_LR_SCALE)]}

    def _load(self) -> None:
        if self._train is None:
            imgs, _ = load_mnist("train", self.data)
            test, _ = load_mnist("test", self.data, limit=self.val_digits)
            self._train, self._test = _digits(imgs), _digits(test)
            gen = torch.Generator().manual_seed(1234)  # the same noisy test digits every time
            self._noisy = (add_noise(self._test, 0.4, generator=gen)
                           if self.kind == "denoise" else None)

    def batch(self, step: int, gen: torch.Generator, recipe: Recipe, device: str) -> Any:
        """The step's slice of its epoch's permutation, the digits' levels and (denoise) noise."""
        self._load()
        n, b = self._train.shape[0], min(recipe.batch, self._train.shape[0])
        epoch, i = divmod(step, n // b)
        if self._perm is None or self._perm[0] != epoch:
            seed = recipe.seed * 1_000_003 + epoch
            self._perm = epoch, torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        x = self._train[self._perm[1][i * b:(i + 1) * b]]
        x_in = add_noise(x, generator=gen) if self.kind == "denoise" else x
        level = torch.randint(0, len(self.lambdas), (b,), generator=gen)
        return x.to(device), x_in.to(device), level.to(device)

    def losses(self, model: nn.Module, batch: Any, frac: float):
        x, x_in, level = batch
        x_hat, bits, _, extra = model(x_in, level)
        sse = (x_hat.float() - x).pow(2).flatten(1).sum(1)
        warm = min(1.0, 0.1 + frac / 0.15)  # the rate's weight ramps up over the first 15 %
        lam = torch.tensor(self.lambdas, device=x.device)
        loss = warm * bits.float() + lam[level] * sse
        if self.kind == "sparse":
            loss = loss + self.l1 * extra["yg"].float().abs().sum(1)
        if self.kind == "vae":
            bce = F.binary_cross_entropy(extra["x_sample"].float().clamp(1e-6, 1 - 1e-6), x,
                                         reduction="none").flatten(1).sum(1)
            loss = loss + VAE_ELBO_WEIGHT * (bce + extra["kl"].float())
        loss = loss.mean()
        return {"main": loss}, {"loss": float(loss.detach()), "bits": float(bits.detach().mean()),
                                "psnr": float(psnr(x_hat.detach().float(), x).mean())}

    def validate(self, model: nn.Module, device: str) -> dict[str, float]:
        """Ideal bits and PSNR per level on the first `val_digits` test digits."""
        self._load()
        noisy = None if self._noisy is None else self._noisy.to(device)
        rows = evaluate(model, self._test.to(device), noisy)
        return {f"{k}_level{r['level']}": r[k] for r in rows for k in ("bits", "psnr")}

    def training_record(self, model: MnistCodec) -> dict[str, Any]:
        """What the manifest's `training` says: the recipe, the steps and time of every run of
        the loop, and the test digits' bits and PSNR per level."""
        self._load()
        loop = self.record or {"runs": [], "validation": []}
        runs = loop["runs"]
        steps = max([r.get("end_step", 0) for r in runs] or [0])
        recipe = self.recipe or Recipe()
        model = model.float().cpu().eval()
        return {
            "kind": self.kind, "latent": self.latent, "levels": len(self.lambdas),
            "lambdas": list(self.lambdas),
            **({"width": list(self.width)} if self.kind == "rd" else {}),
            "loss": "bits + lambda * SSE(x in [0,1])" + {
                "sparse": f" + {self.l1} * |y*gain|_1 (L1 activity penalty)",
                "vae": f" + {VAE_ELBO_WEIGHT} * (BCE + KL) of a sampled latent (ELBO, nats)",
                "denoise": f"; input noisy (Gaussian sigma ~ U{NOISE_SIGMA}, clipped, 8-bit)",
            }.get(self.kind, ""),
            "optimizer": f"Adam lr {recipe.lr} (density and gains x{FAST_LR_SCALE:g}), "
                         f"{recipe.schedule} schedule (aecodec.export.loop)",
            "batch": recipe.batch, "steps": steps,
            "epochs": round(steps * recipe.batch / self._train.shape[0], 2),
            "seconds": round(sum(r.get("seconds", 0.0) for r in runs), 1),
            "hardware": runs[-1]["hardware"] if runs else "",
            "runs": runs,
            "data": f"MNIST train ({self._train.shape[0]} digits), original IDX files",
            "quantization": "noisy latent for the rate, straight-through rounding for the "
                            "synthesis",
            "density": "Balle 2018 non-parametric factorized density, filters (3,3,3)",
            "seed": recipe.seed, "eval_test2000": evaluate(model, self._test, self._noisy),
            "torch": torch.__version__,
        }

    def export(self, model: nn.Module, out: Path) -> Path:
        """A model folder (`folder`, default OUT/model), checked against onnxruntime and the
        runtime on 64 test digits."""
        from ..mnist.exporter import export_model

        model = model.float().cpu().eval()
        folder = Path(self.folder) if self.folder is not None else out / "model"
        record = self.training_record(model)
        export_model(model, folder, name=self.model_name or f"mnist-{self.kind}",
                     record=record, check=self._test[:64])
        return folder


def load_model(path: str | Path) -> MnistCodec:
    """The model of a checkpoint: the loop's (OUT/checkpoint.pt) or the trainer's before it
    ({"state_dict", "record"}); `.record` holds what it says of its training."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "task_config" in state:
        if state.get("task") != MnistTask.name:
            raise ValueError(f"{path}: a checkpoint of {state.get('task')}, not of mnist")
        cfg = state["task_config"]
        weights, record = state["model"], {**cfg, "levels": len(cfg["lambdas"]),
                                           "runs": state["record"]["runs"]}
    else:
        weights, record = state["state_dict"], state["record"]
    model = MnistCodec(record["kind"], latent=record["latent"], levels=record["levels"],
                       width=tuple(record.get("width", RD_WIDTH)))
    model.load_state_dict(weights)
    model.eval()
    model.record = record
    return model


def export_checkpoint(path: str | Path, folder: str | Path, name: str | None = None,
                      data: str | Path | None = None) -> dict:
    """Export a checkpoint as a model folder; returns the manifest. A checkpoint of the loop
    gets the record the loop's own export writes; an older one keeps the record it holds."""
    from ..mnist.exporter import export_model

    model = load_model(path)
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "task_config" not in state:
        test, _ = load_mnist("test", data, limit=64)
        return export_model(model, folder, name=name, record=model.record, check=_digits(test))
    cfg = {k: v for k, v in state["task_config"].items() if k != "data"}
    task = MnistTask(data=data if data is not None else state["task_config"]["data"],
                     folder=Path(folder), model_name=name, **cfg)
    task.record, task.recipe = state["record"], Recipe(**state["recipe"])
    task.export(model, Path(folder).parent)
    return json.loads((Path(folder) / "manifest.json").read_text())
