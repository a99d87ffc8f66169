"""Train one MNIST codec: loss per digit = bits + lambda_k * SSE (+ model-specific terms).

Each training digit gets a random rate level k (of K); lambda_k is that level's weight, and the
level's gain vector scales the latent before quantization. Time-boxed (``minutes``) with a
cosine learning-rate schedule over the time budget, so a run takes a known few minutes on a CPU.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aecodec.bench.mnist_data import load_mnist

from .models import RD_WIDTH, MnistCodec

# bits per unit of SSE (x in [0,1]) for the K=5 levels, lowest rate first
DEFAULT_LAMBDAS = (2.0, 4.0, 8.0, 16.0, 32.0)
SPARSE_L1 = 0.3           # L1 activity penalty (per unit of |y*gain|), sparse model
VAE_ELBO_WEIGHT = 1.0     # weight of the ELBO (BCE sum + KL, nats) for the VAE
NOISE_SIGMA = (0.3, 0.5)  # denoiser: Gaussian noise std drawn per digit


def add_noise(x: torch.Tensor, sigma=NOISE_SIGMA, generator=None) -> torch.Tensor:
    """Noisy digits as the codec will see them: clipped to [0,1] and rounded to 8 bits."""
    s = torch.empty(x.shape[0], 1, 1, 1).uniform_(*sigma, generator=generator) \
        if isinstance(sigma, tuple) else torch.full((x.shape[0], 1, 1, 1), float(sigma))
    noisy = x + s * torch.randn(x.shape, generator=generator)
    return torch.round(noisy.clamp(0, 1) * 255) / 255


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    mse = (x_hat - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def evaluate(model: MnistCodec, x: torch.Tensor, noisy: torch.Tensor | None = None) -> list[dict]:
    """Per level: mean ideal bits (untrimmed density) and mean per-digit PSNR."""
    model.eval()
    out = []
    x_in = noisy if noisy is not None else x
    for k in range(model.K):
        x_hat, bits, sym = model.codec_roundtrip(x_in, k)
        out.append({"level": k, "bits": float(bits.mean()), "psnr": float(psnr(x_hat, x).mean()),
                    "active": int((sym != 0).any(0).sum())})
    model.train()
    return out


def train(kind: str, data: str | None = None, out: str | Path | None = None,
          minutes: float = 3.0, batch: int = 128, lr: float = 1e-3,
          lambdas=DEFAULT_LAMBDAS, latent: int = 32, seed: int = 0,
          threads: int = 1, l1: float = SPARSE_L1, log=print, resume: bool = False,
          save_every: float = 120.0, width: tuple[int, int] = RD_WIDTH,
          warmup: int = 0) -> dict:
    """Time-boxed training. With `out`, a partial checkpoint (`<out>.partial`: weights,
    optimizer, step and elapsed time) is written every `save_every` seconds; `resume=True`
    continues from it within the same time budget. `warmup` steps ramp the learning rate up
    linearly: with lambdas up to 1024 a cold Adam start can drive the output sigmoid into
    saturation (every pixel 0, no gradient left), from which training never recovers."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    imgs, _ = load_mnist("train", data)
    test, _ = load_mnist("test", data, limit=2000)
    x_all = torch.from_numpy(imgs).float().div_(255).unsqueeze(1)
    x_test = torch.from_numpy(test).float().div_(255).unsqueeze(1)
    gen = torch.Generator().manual_seed(1234)
    noisy_test = add_noise(x_test, 0.4, generator=gen) if kind == "denoise" else None

    model = MnistCodec(kind, latent=latent, levels=len(lambdas), width=width)
    lam = torch.tensor(lambdas, dtype=torch.float32)
    fast = [p for n, p in model.named_parameters() if n.startswith(("density", "log_"))]
    slow = [p for n, p in model.named_parameters() if not n.startswith(("density", "log_"))]
    opt = torch.optim.Adam([{"params": slow, "lr": lr}, {"params": fast, "lr": lr * 5}])
    base = [g["lr"] for g in opt.param_groups]

    budget = minutes * 60.0
    t0 = time.time()
    step = epoch = 0
    partial = Path(f"{out}.partial") if out is not None else None
    if resume and partial is not None and partial.exists():
        state = torch.load(partial, map_location="cpu", weights_only=False)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        step, epoch = state["step"], state["epoch"]
        t0 -= state["elapsed"]
        torch.manual_seed(seed + step)
        log(f"[{kind}] resumed from {partial} at step {step}, {state['elapsed']:.0f}s")
    last_save = time.time()
    n = x_all.shape[0]
    last_log = t0
    done = False
    while not done:
        perm = torch.randperm(n)
        for i in range(0, n - batch + 1, batch):
            frac = (time.time() - t0) / budget
            if frac >= 1.0:
                done = True
                break
            for g, b in zip(opt.param_groups, base, strict=True):
                ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
                g["lr"] = b * ramp * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
            x = x_all[perm[i : i + batch]]
            x_in = add_noise(x) if kind == "denoise" else x
            level = torch.randint(0, model.K, (x.shape[0],))
            x_hat, bits, y, extra = model(x_in, level)
            sse = (x_hat - x).pow(2).flatten(1).sum(1)
            warm = min(1.0, 0.1 + frac / 0.15)  # rate weight ramps up over the first 15 %
            loss = warm * bits + lam[level] * sse
            if kind == "sparse":
                loss = loss + l1 * extra["yg"].abs().sum(1)
            if kind == "vae":
                bce = F.binary_cross_entropy(extra["x_sample"].clamp(1e-6, 1 - 1e-6), x,
                                             reduction="none").flatten(1).sum(1)
                loss = loss + VAE_ELBO_WEIGHT * (bce + extra["kl"])
            loss = loss.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if partial is not None and time.time() - last_save > save_every:
                last_save = time.time()
                partial.parent.mkdir(parents=True, exist_ok=True)
                tmp = partial.with_name(partial.name + ".tmp")  # atomic: a kill keeps the old
                torch.save({"state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                            "step": step, "epoch": epoch, "elapsed": time.time() - t0}, tmp)
                tmp.replace(partial)
            if time.time() - last_log > 30:
                last_log = time.time()
                log(f"[{kind}] {time.time() - t0:5.0f}s step {step} epoch {epoch} "
                    f"loss {loss.item():.2f} bits {bits.mean().item():.1f} "
                    f"psnr {psnr(x_hat.detach(), x).mean().item():.2f}")
        epoch += 1
    elapsed = time.time() - t0
    ev = evaluate(model, x_test, noisy_test)
    for e in ev:
        log(f"[{kind}] level {e['level']}: {e['bits']:.1f} bits ({e['bits'] / 8:.2f} B) "
            f"psnr {e['psnr']:.2f} dB, {e['active']} active channels")
    record = {
        "kind": kind, "latent": latent, "levels": len(lambdas), "lambdas": list(lambdas),
        **({"width": list(width)} if kind == "rd" else {}),
        "loss": "bits + lambda * SSE(x in [0,1])" + {
            "sparse": f" + {l1} * |y*gain|_1 (L1 activity penalty)",
            "vae": f" + {VAE_ELBO_WEIGHT} * (BCE + KL) of a sampled latent (ELBO, nats)",
            "denoise": f"; input noisy (Gaussian sigma ~ U{NOISE_SIGMA}, clipped, 8-bit)",
        }.get(kind, ""),
        "optimizer": f"Adam lr {lr} (density and gains x5), cosine over the time budget"
                     + (f", linear warm-up over {warmup} steps" if warmup else ""),
        "batch": batch, "steps": step, "epochs": round(step * batch / n, 2),
        "seconds": round(elapsed, 1), "threads": threads,
        "hardware": f"{platform.processor() or platform.machine()}, CPU, {threads} threads",
        "data": "MNIST train (60000 digits), original IDX files",
        "quantization": "noisy latent for the rate, straight-through rounding for the synthesis",
        "density": "Balle 2018 non-parametric factorized density, filters (3,3,3)",
        "seed": seed, "eval_test2000": ev, "torch": torch.__version__,
    }
    ckpt = {"state_dict": model.state_dict(), "record": record}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, out)
        if partial is not None and partial.exists():
            partial.unlink()
        log(f"[{kind}] saved {out}")
    return ckpt


def load_checkpoint(path) -> MnistCodec:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    rec = ckpt["record"]
    model = MnistCodec(rec["kind"], latent=rec["latent"], levels=rec["levels"],
                       width=tuple(rec.get("width", RD_WIDTH)))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    model.record = rec
    return model
