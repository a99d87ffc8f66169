"""Encoder-side fine-tune: the analysis and hyper-analysis alone, against the shipped decoder.

The amortised share of what `effort=N` finds per image (docs/effort.md): the float analysis
g_a and hyper-analysis h_a of a trained photo model (its weights file) learn to give latents
that suit the decoder a stream will meet — the shipped model's exact 8-bit synthesis and
integer hyper-decoder, run through their differentiable twins (`aecodec.effort._Twin`, from
the model folder's own files), the rate from the model's own tables. Decoder, tables, gains
and stream format are frozen: streams of the fine-tuned encoder decode with today's decoder.

Loss per step, at one rate level drawn per step: lambda_k * MSE(0..255) + bits / pixel, with
y rounded about the integer hyper-decoder's mean and z rounded, both straight-through, for the
distortion (the decoder sees exactly the symbols a stream would carry), and for the rate the
model's own continuous densities (the Gaussian of each scale index, the z bottleneck) of the
symbols plus uniform noise, as the model was trained (mixed quantisation, Minnen & Singh
2020). Two first runs went the wrong way: the tables' interpolated code lengths have one-sided
slopes at integers (rounded symbols) and overstate the rate of noisy ones 2.2x.
Export: the new analysis (8-bit, calibrated on training images) and hyper-analysis in a model
folder holding copies of the shipped model's synthesis, hyper-decoder and tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import load_images, random_crops, split
from ..entropy import gaussian_likelihood, scale_from_index
from ..loop import Recipe, Task

# The rate proxies: the densities' mass at symbols plus uniform noise (as the model was
# trained), or at the rounded symbols a stream carries (straight-through; the Gaussian's mass
# is smooth in its centre, unlike the tables' interpolated code lengths).
RATES = ("noisy", "rounded")
PARTS = ("all", "hyper", "gains")  # what trains: analysis and hyper-analysis, the latter
# alone, or the encoder's own gains alone


class Encoder(nn.Module):
    """The trainable half: analysis and hyper-analysis (float, as trained)."""

    def __init__(self, g_a: nn.Module, h_a: nn.Module, levels: int = 0, m: int = 0) -> None:
        super().__init__()
        self.g_a, self.h_a = g_a, h_a
        # the encoder's own gains: a log-scale per level and channel on top of the shipped
        # ones (the decoder's inverse gains stay), trained with --parts gains only
        self.log_scale = nn.Parameter(torch.zeros(levels, m), requires_grad=False)


class EncoderTask(Task):
    name = "encoder"

    def __init__(self, data: Path, weights: Path, model: str = "hyperprior-fast",
                 levels: tuple[int, ...] | None = None, val_images: int = 4,
                 rate: str = "noisy", parts: str = "all") -> None:
        if rate not in RATES:
            raise ValueError(f"rate proxy {rate!r}: expected one of {', '.join(RATES)}")
        if parts not in PARTS:
            raise ValueError(f"parts {parts!r}: expected one of {', '.join(PARTS)}")
        self.parts = parts
        self.data, self.weights, self.model_name = Path(data), Path(weights), model
        self.levels, self.val_images, self.rate = levels, val_images, rate
        self._images: list[torch.Tensor] | None = None
        self._val: list[np.ndarray] | None = None

    def config(self) -> dict[str, Any]:
        return {"data": str(self.data), "weights": str(self.weights), "model": self.model_name,
                "levels": self.levels, "val_images": self.val_images, "rate": self.rate,
                "parts": self.parts}

    # -- the frozen decoder side, from the shipped model folder --------------------------------

    def _runtime(self):
        import aecodec
        from aecodec import effort

        codec = aecodec.Codec(self.model_name, threads=1)
        return codec, effort._twin(codec.model)

    def build(self, device: str) -> nn.Module:
        from ..models import load_weights

        base, _ = load_weights(self.weights, device)
        self.bottleneck = base.bottleneck.requires_grad_(False)  # z's density, frozen
        self.codec, self.twin = self._runtime()
        m = self.codec.model
        self.gain = torch.as_tensor(np.asarray(m.gain, np.float32))
        self.inv_gain = torch.as_tensor(np.asarray(m.inv_gain, np.float32))
        self.lambdas = [float(v) for v in m.info.manifest["rate"]["lambdas"]]
        n = len(self.lambdas)
        self.level_set = list(self.levels) if self.levels else list(range(n))
        enc = Encoder(base.g_a, base.h_a, len(self.gain), self.gain.shape[1]).to(device).train()
        if self.parts == "hyper":  # the hyper-analysis alone: the rate side, y as analysed
            enc.g_a.requires_grad_(False)
        if self.parts == "gains":  # the encoder's gains alone: level-aware, 10 x 192 numbers
            enc.g_a.requires_grad_(False)
            enc.h_a.requires_grad_(False)
            enc.log_scale.requires_grad_(True)
        return enc

    def param_groups(self, model: nn.Module) -> dict:
        return {"main": ([p for p in model.parameters() if p.requires_grad], 1.0)}

    def _load(self) -> None:
        """The images at least a crop a side (the run's recipe), once; every 50th held out."""
        if self._images is None:
            items = load_images(self.data, self.recipe.crop if self.recipe else 256)
            train, val = split(items)
            self._images = [torch.from_numpy(a.copy()).permute(2, 0, 1) for _, a in train]
            self._val = [a for _, a in val][: self.val_images]

    def batch(self, step: int, gen: torch.Generator, recipe: Recipe, device: str) -> Any:
        self._load()
        x = random_crops(self._images, recipe.crop, recipe.batch, gen).to(device)
        k = self.level_set[int(torch.randint(0, len(self.level_set), (1,), generator=gen))]
        return x, k

    # -- the loss through the deployed decoder's twin --------------------------------------------

    def rd(self, model: nn.Module, x: torch.Tensor, k: int, hard_synthesis: bool = False):
        """(loss, mse, bpp) of crops x [B, 3, H, W] in [0, 1] at rate level k."""
        tw, F = self.twin, torch.nn.functional
        gain = self.gain[k] * torch.exp(model.log_scale[k])
        y = model.g_a(x).float() * gain[None, :, None, None]
        z = model.h_a(y).float()
        with torch.autocast(x.device.type, enabled=False):  # integer grids stay exact
            z_hat = z + (z.round() - z).detach()
            mu, idx = tw.hyper_decode(z_hat)
            mu, idx = mu[..., : y.shape[2], : y.shape[3]], idx[..., : y.shape[2], : y.shape[3]]
            v = y - mu
            s = v + (v.round() - v).detach()
            y_hat = (s + mu) * self.inv_gain[k][None, :, None, None]
            y_hat = y_hat.contiguous(memory_format=torch.channels_last)
            pix = tw.synthesize(y_hat) if hard_synthesis else tw.synthesize_grad(y_hat)
            mse = F.mse_loss(pix.float(), x * 255)
            nz = torch.arange(z.shape[1], device=z.device)[None, :, None, None].float()
            if hard_synthesis:  # validation: the code lengths of the real symbols
                bits = tw.bits(tw.y_logp, s, idx.clamp(0, tw.y_logp[0].shape[0] - 1))
                bits = bits + tw.bits(tw.z_logp, z_hat, nz.expand_as(z_hat))
            else:  # training: the model's own densities, of noisy or of rounded symbols
                ny, nz_ = ((torch.rand_like(v) - 0.5, torch.rand_like(z) - 0.5)
                           if self.rate == "noisy" else (s - v, z_hat - z))
                y_lik = gaussian_likelihood(v + ny, scale_from_index(idx))
                z_lik = self.bottleneck.likelihood(z + nz_)
                bits = -torch.log2(y_lik).sum() - torch.log2(z_lik).sum()
            bpp = bits / (x.shape[0] * x.shape[2] * x.shape[3])
            return self.lambdas[k] * mse + bpp, mse, bpp

    def losses(self, model: nn.Module, batch: Any, frac: float):
        x, k = batch
        loss, mse, bpp = self.rd(model, x, k)
        psnr = float(10 * torch.log10(255**2 / mse.detach().clamp(min=1e-6)))
        return {"main": loss}, {"loss": float(loss.detach()), "bpp": float(bpp.detach()),
                                "psnr": psnr}

    def validate(self, model: nn.Module, device: str) -> dict[str, float]:
        """Mean RD cost over the held-out training images (cropped to /64) at four levels,
        hard rounding through the twin: the number the fine-tune lowers."""
        self._load()
        levels = self.level_set[:: max(1, len(self.level_set) // 4)]
        costs, out = [], {}
        for k in levels:
            c = []
            for a in self._val:
                h, w = a.shape[0] // 64 * 64, a.shape[1] // 64 * 64
                x = torch.from_numpy(a[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255
                loss, mse, bpp = self.rd(model, x.to(device), k, hard_synthesis=True)
                c.append(float(loss))
            out[f"cost_level{k}"] = float(np.mean(c))
            costs.append(float(np.mean(c)))
        out["cost"] = float(np.mean(costs))
        return out

    def export(self, model: nn.Module, out: Path) -> Path:
        """A model folder `OUT/model`: the new 8-bit analysis and hyper-analysis beside the
        shipped model's other files (copied here so the folder stands alone)."""
        import shutil

        from ..folder import write_model_folder
        from ..layers import freeze_gdn
        from ..onnx_export import export_analysis, export_hyper_analysis

        src = self.codec.model.info
        manifest = json.loads((src.path / "manifest.json").read_text())
        model.eval()
        freeze_gdn(model)
        images = [a for _, a in load_images(self.data, 64)][::20]  # calibration

        def build(tmp: Path) -> dict:
            example = torch.from_numpy(images[0][:256, :256].copy()).permute(2, 0, 1)[None]
            example = example.float() / 255
            export_analysis(model.g_a, example, images, tmp / "analysis.onnx")
            with torch.no_grad():
                y = model.g_a(example) * self.gain[-1][None, :, None, None]
            export_hyper_analysis(model.h_a, y, tmp / "hyper_analysis.onnx")
            for name in ("synthesis.onnx", "hyper_synthesis.npz", "tables.npz"):
                shutil.copyfile(self.codec.model.file(name), tmp / name)
            if self.parts == "gains":  # the encoder's gains as trained (inv_gain as shipped)
                with np.load(tmp / "tables.npz") as f:
                    tables = {k: f[k] for k in f.files}
                scale = np.exp(model.log_scale.detach().double().numpy())
                tables["gain"] = (tables["gain"] * scale).astype(tables["gain"].dtype)
                np.savez(tmp / "tables.npz", **tables)
            keep = {k: v for k, v in manifest.items()
                    if k not in ("files", "sha256", "id", "shares_files_with", "default",
                                 "results", "format")}
            return keep | {
                "description": manifest["description"] + "; encoder (analysis, "
                               "hyper-analysis) fine-tuned against this decoder",
                "training": {**manifest.get("training", {}),
                             "encoder_finetune": {"from": str(self.weights),
                                                  "decoder": src.id}},
                "results": {},
            }

        folder = out / "model"
        write_model_folder(folder, build)
        return folder
