"""Training loop: random crops, rate + lambda * MSE with lambda sampled per image, Adam.

Data-parallel under `torchrun --nproc-per-node N` (DistributedDataParallel; gloo on the CPU,
nccl on CUDA): `batch` stays the global batch, every process draws the same crops and levels
and trains on its own 1/N of them, so N processes make the same update as one process on the
whole batch. On CUDA the forward pass is compiled (`Recipe.compile`).

Checkpoints every few minutes (`checkpoint.pt`, with optimizer state, for --resume) and writes
`weights.pt` (model only, what a shipped model keeps). Every run appends its iterations and
hardware to the record inside the weights, so the manifest can tell the whole history.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data import Crops, load_images, split
from .loop import agreed_time, distributed, hardware, save_atomic
from .models import Codec, Config, build


@dataclass
class Recipe:
    iterations: int = 200_000
    batch: int = 16
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    decay_at: float = 0.85  # lr drops 10x after this fraction of the iterations
    qat_from: float = 0.5  # the integer hyper-decoder trains quantized after this fraction
    bf16: bool = True
    clip: float = 1.0
    compile: bool | None = None  # torch.compile the forward pass; None: on CUDA only


def load_weights(path: Path, device: str = "cpu") -> tuple[Codec, dict]:
    """A model from `weights.pt` or `checkpoint.pt`, with its training record."""
    state = torch.load(path, map_location=device, weights_only=False)
    model = build(Config(**state["config"])).to(device)
    model.load_state_dict(state["model"])
    return model, state


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


@torch.no_grad()
def evaluate(model: Codec, images: list[np.ndarray], device: str) -> list[dict]:
    """Per rate level: mean estimated bpp and PSNR with real rounding (images cropped to /64)."""
    model.eval()
    rows = []
    for k in range(len(model.cfg.lambdas)):
        bpps, psnrs = [], []
        for a in images:
            x = image_tensor(a, device)
            out = model(x, torch.tensor([k], device=device))
            psnrs.append(psnr(out["x_hat"], x))
            bpps.append(out["bits"].item() / (x.shape[2] * x.shape[3]))
        rows.append({"level": k, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))})
    model.train()
    return rows


def train(
    data: Path,
    out: Path,
    cfg: Config,
    recipe: Recipe,
    device: str = "cpu",
    resume: Path | None = None,
    minutes: float | None = None,
    checkpoint_minutes: float = 5.0,
    seed: int = 0,
) -> Path:
    """Train (or continue) a model; returns the path of the final weights.pt."""
    rank, world, device = distributed(device)
    if recipe.batch % world:
        raise ValueError(f"batch {recipe.batch} does not split over {world} processes")
    local = recipe.batch // world
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)  # the same initial model everywhere (DDP also broadcasts rank 0's)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    items = load_images(data, recipe.crop)
    train_items, val_items = split(items)
    crops = iter(Crops([a for _, a in train_items], recipe.crop, recipe.batch, device, seed))
    levels = torch.Generator().manual_seed(seed)  # the same levels in every process

    record: dict = {"runs": [], "iterations": 0}
    state = None
    if resume is not None and resume.exists():
        model, state = load_weights(resume, device)
        cfg = model.cfg
        record = state.get("record", record)
    else:
        model = build(cfg).to(device)
    main_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=recipe.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=recipe.aux_lr)
    if state is not None and "optimizer" in state:
        opt.load_state_dict(state["optimizer"])
        aux_opt.load_state_dict(state["aux_optimizer"])
    start_it = int(record["iterations"])
    torch.manual_seed(seed + 1000 * rank + start_it)  # each process its own noise
    forward = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # The quantiles learn from the auxiliary loss only, the same in every process.
        DDP._set_params_and_buffers_to_ignore_for_model(
            model, [n for n, _ in model.named_parameters() if n.endswith("quantiles")])
        forward = DDP(model)
    use_compile = recipe.compile if recipe.compile is not None else device.startswith("cuda")
    if use_compile:
        forward = torch.compile(forward)
    lambdas = torch.tensor(cfg.lambdas, device=device)
    run = {
        "hardware": hardware(device),
        "device": device,
        "processes": world,
        "start_iteration": start_it,
        "recipe": recipe.__dict__,
        "torch": torch.__version__,
        "train_images": len(train_items),
        "val_images": [n for n, _ in val_items],
        "seconds": 0.0,
    }
    if start_it < recipe.iterations and rank == 0:  # an export-only call adds no run
        record["runs"].append(run)

    def snapshot(it: int, with_opt: bool) -> dict:
        record["iterations"] = it
        s = {"config": cfg.to_dict(), "model": model.state_dict(), "record": record}
        if it == start_it and state is not None and "int_synthesis" in state:
            s["int_synthesis"] = state["int_synthesis"]  # still matches the unchanged model
        if with_opt:
            s |= {"optimizer": opt.state_dict(), "aux_optimizer": aux_opt.state_dict()}
        return s

    t0 = agreed_time(time.time(), device, world)
    last_ckpt = clock = t0
    done = start_it
    bar = tqdm(range(start_it, recipe.iterations), initial=start_it, total=recipe.iterations,
               dynamic_ncols=True, mininterval=5, disable=rank > 0)
    for it in bar:
        # With a time budget the schedule follows the clock, so a short run still decays.
        frac = it / recipe.iterations
        if minutes is not None:
            frac = max(frac, (clock - t0) / (minutes * 60))
        for g in opt.param_groups:
            g["lr"] = recipe.lr * (0.1 if frac >= recipe.decay_at else 1.0)
        if hasattr(model, "h_s"):
            model.h_s.quantize = frac >= recipe.qat_from
        part = slice(rank * local, (rank + 1) * local)
        x = next(crops)[part]
        level = torch.randint(0, len(cfg.lambdas), (recipe.batch,), generator=levels)
        level = level[part].to(device)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                            enabled=recipe.bf16):
            loss, mse, bpp = rd_loss(forward, x, level, lambdas)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, recipe.clip)
        opt.step()
        aux = model.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
        done = it + 1
        if it % 50 == 0:
            psnr = float(torch.mean(-10 * torch.log10(mse.detach().clamp(min=1e-10))))
            bar.set_postfix(loss=f"{loss.item():.3f}", bpp=f"{bpp.mean().item():.3f}",
                            psnr=f"{psnr:.2f}", aux=f"{aux.item():.1f}")
        now = time.time()
        if world > 1:  # every process decays, checkpoints and stops at the same step
            now = agreed_time(now, device, world)
        clock = now
        if now - last_ckpt > checkpoint_minutes * 60:
            if rank == 0:
                run["seconds"] = now - t0
                save_atomic(snapshot(done, True), out / "checkpoint.pt")
                save_atomic(snapshot(done, False), out / "weights.pt")
            last_ckpt = now
        if minutes is not None and now - t0 > minutes * 60:
            break
    run["seconds"] = time.time() - t0
    run["end_iteration"] = done
    if rank == 0:
        if done > start_it or "validation" not in record:
            record["validation"] = evaluate(model, [a for _, a in val_items], device)
        save_atomic(snapshot(done, True), out / "checkpoint.pt")
        save_atomic(snapshot(done, False), out / "weights.pt")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return out / "weights.pt"
