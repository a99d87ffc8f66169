"""Quantization-aware fine-tuning of the 8-bit synthesis (`IntSynthesis`) of a trained model.

Only the synthesis learns: the encoder, hyperprior and gains stay as trained, so the streams
and their rates do not change and the loss is the distortion alone, mean log-MSE over rate
levels sampled continuously between the trained ones (as quality 1..100 interpolates them).
Stored inside the model's weights file, under "int_synthesis" (one file per model, as shipped):
written every minute, and a later call resumes from it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data import Crops, load_images, split
from .int_synthesis import IntSynthesis, activation_ranges
from .loop import hardware, save_atomic
from .models import Hyperprior, at_positions, frozen
from .train import image_tensor, load_weights, psnr


@torch.no_grad()
def synthesis_input(model: Hyperprior, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """y_hat as decoding makes it, at continuous rate positions t in [0, levels - 1]."""
    g = at_positions(model.gains.log_gain, t)[:, :, None, None]
    ig = at_positions(model.gains.log_inv_gain, t)[:, :, None, None]
    y = model.g_a(x).float() * g
    z_hat = torch.round(model.h_a(y).float())
    mean, _ = model.h_s(z_hat)
    return torch.round(y - mean) * ig + mean * ig


def build(weights: Path, images: list[np.ndarray], device: str) -> tuple[Hyperprior, IntSynthesis]:
    """The trained model and its 8-bit synthesis, activation ranges calibrated on `images`."""
    model, _ = load_weights(weights, device)
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


def finetune(weights: Path, data: Path, minutes: float, device: str = "cpu", batch: int = 16,
             crop: int = 256, lr: float = 3e-5, scale_lr: float = 1e-3) -> dict:
    """Train the 8-bit synthesis for `minutes` (cosine decay over them) and store it in
    `weights`; returns its training record."""
    torch.manual_seed(0)
    items = load_images(data, crop)
    train_items, val_items = split(items)
    model, net = build(weights, [a for _, a in train_items[::10]], device)
    record: dict = {"iterations": 0, "runs": []}
    state = torch.load(weights, map_location="cpu", weights_only=False).get("int_synthesis")
    if state is not None:
        net.load_state_dict({k: v.float() for k, v in state["net"].items()})
        record = state["record"]
    scales = [p for n, p in net.named_parameters() if n.startswith("log_s")]
    others = [p for n, p in net.named_parameters() if not n.startswith("log_s")]
    opt = torch.optim.Adam([{"params": others, "lr": lr}, {"params": scales, "lr": scale_lr}])
    base = [g["lr"] for g in opt.param_groups]
    crops = iter(Crops([a for _, a in train_items], crop, batch, device))
    val = [a for _, a in val_items]
    run = {"hardware": hardware(device), "device": device, "batch": batch, "crop": crop,
           "lr": lr, "scale_lr": scale_lr, "start_iteration": record["iterations"],
           "data": f"{data.name}: {len(train_items)} training images",
           "before": validate(model, net, val, device)}
    print("before", run["before"], flush=True)
    record["runs"].append(run)
    levels = len(model.cfg.lambdas)
    t0 = last = time.time()
    it = record["iterations"]
    bar = tqdm(dynamic_ncols=True, mininterval=5)
    while (elapsed := time.time() - t0) < minutes * 60:
        frac = elapsed / (minutes * 60)
        for g, b in zip(opt.param_groups, base, strict=True):
            g["lr"] = b * 0.5 * (1 + math.cos(math.pi * frac))
        x = next(crops)
        t = torch.rand(x.shape[0], device=device) * (levels - 1)
        y = synthesis_input(model, x, t)
        mse = torch.mean((net(y).clamp(0, 1) - x) ** 2, dim=(1, 2, 3))
        loss = torch.log(mse.clamp_min(1e-10)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        it += 1
        bar.update()
        bar.set_postfix(psnr=f"{-10 * loss.item() / math.log(10):.2f}")
        if time.time() - last > 60:
            record["iterations"] = it
            run["seconds"] = time.time() - t0
            attach(weights, net, record)
            last = time.time()
    run["after"] = validate(model, net, val, device)
    print("after", run["after"], flush=True)
    record["iterations"] = it
    run["seconds"] = time.time() - t0
    run["end_iteration"] = it
    attach(weights, net, record)
    return record
