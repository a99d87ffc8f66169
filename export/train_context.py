"""Train a context model (export/context.py) on frozen latents of the shipped hyperprior.

Rate-only: y is fixed, so the bits of y are the whole objective and pixels do not change. The
loss is each crop's bits relative to what the frozen hyperprior spends on it, so every rate
level counts the same (BD-rate is relative). Qualities are drawn uniformly in 1..100 and
turned into gains as the runtime does. Checkpoints (`ckpt.pt`, with optimizer state) every few
minutes; a second call with the same --out resumes. Every `--eval-every` crops the rate saved
on held-out latents is appended to `curve.jsonl` (the learning curve).

python -m aecodec.export.train_context runs/latents.npz --out runs/ctx-cb --slices 1 --phases 2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from .context import ContextConfig, ContextModel
from .latents import load_latents
from .loop import save_atomic
from .models import at_positions, frozen, quality_position
from .train import load_weights

EVAL_QUALITIES = (1, 15, 30, 45, 60, 75, 90, 100)


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
        from .entropy import gaussian_likelihood, scale_from_index

        y_g = y.float() * self.gains(quality)[:, :, None, None]
        z_hat = torch.round(self.hp.h_a(y_g).float())
        z_bits = -torch.log2(self.hp.bottleneck.likelihood(z_hat)).sum(dim=(1, 2, 3))
        mean, idx = self.hp.h_s(z_hat)
        lik = gaussian_likelihood(torch.round(y_g - mean), scale_from_index(idx))
        return y_g, mean, idx, z_bits, -torch.log2(lik).sum(dim=(1, 2, 3))


def random_crops(lat: list[np.ndarray], size: int, batch: int, rng: np.random.Generator):
    out = []
    for i in rng.integers(0, len(lat), batch):
        a = lat[i]
        r = int(rng.integers(0, a.shape[1] - size + 1))
        c = int(rng.integers(0, a.shape[2] - size + 1))
        out.append(a[:, r : r + size, c : c + size])
    return torch.from_numpy(np.stack(out).astype(np.float32))


@torch.no_grad()
def evaluate(model: ContextModel, hyper: FrozenHyper, images: list[np.ndarray],
             qualities=EVAL_QUALITIES, quantize: bool = True) -> list[dict]:
    """Per quality: total bits (z + y) of the hyperprior and with the context, rate saved."""
    was = model.quantize
    model.quantize = quantize
    rows = []
    for q in qualities:
        base = ctx = 0.0
        for a in images:
            y = torch.from_numpy(a.astype(np.float32))[None]
            y_g, mean, idx, zb, yb = hyper(y, torch.tensor([float(q)]))
            out = model(y_g, mean, idx, train=False)
            base += float(zb + yb)
            ctx += float(zb + out["bits"])
        rows.append({"quality": q, "bits_base": base, "bits_ctx": ctx,
                     "saved": 1 - ctx / base})
    model.quantize = was
    return rows


def train(latents: Path, out: Path, cfg: ContextConfig, checkpoint: Path, crops: int,
          batch: int = 16, size: int = 16, lr: float = 5e-4, qat_from: float = 0.7,
          bf16: bool = True, eval_every: int = 20000, ckpt_minutes: float = 3.0,
          eval_images: Path | None = None, threads: int = 1, seed: int = 0,
          init: Path | None = None) -> None:
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    lat_all = load_latents(latents)
    names = sorted(lat_all)
    val = [lat_all[n] for n in names[::50]]
    train_lat = [lat_all[n] for i, n in enumerate(names) if i % 50 and
                 min(lat_all[n].shape[1:]) >= size]
    kodak = list(load_latents(eval_images).values())[::2] if eval_images else []
    hyper = FrozenHyper(checkpoint)
    model = ContextModel(cfg)
    model.bf16 = bf16
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    seen, rng = 0, np.random.default_rng(seed)
    ck = out / "ckpt.pt"
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        seen = st["seen"]
        rng = np.random.default_rng(seed + seen)
    elif init is not None:
        st = torch.load(init, weights_only=False)
        model.load_state_dict(st["model"])
    (out / "config.json").write_text(json.dumps(cfg.to_dict()))

    def save() -> None:
        save_atomic({"config": cfg.to_dict(), "model": model.state_dict(),
                     "optimizer": opt.state_dict(), "seen": seen}, ck)

    def log_eval() -> None:
        row = {"crops": seen, "time": time.time(), "qat": model.quantize}
        row["val"] = evaluate(model, hyper, val, (1, 50, 100))
        if kodak:
            row["kodak"] = evaluate(model, hyper, kodak, (1, 30, 60, 100))
        with open(out / "curve.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"crops {seen}: val saved " + " ".join(f"{r['saved'] * 100:+.2f}%" for r in
              row["val"]) + (" kodak " + " ".join(f"{r['saved'] * 100:+.2f}%" for r in
                                                     row.get("kodak", []))), flush=True)

    if seen == 0:
        log_eval()
    last_ck, t0, run_loss = time.time(), time.time(), []
    next_eval = (seen // eval_every + 1) * eval_every
    while seen < crops:
        frac = seen / crops
        model.quantize = frac >= qat_from
        for g in opt.param_groups:
            g["lr"] = lr * (0.5 * (1 + math.cos(math.pi * frac)) * 0.9 + 0.1)
        y = random_crops(train_lat, size, batch, rng)
        qual = torch.from_numpy(rng.uniform(1, 100, batch)).float()
        y_g, mean, idx, _, base = hyper(y, qual)
        res = model(y_g, mean, idx, train=True)
        loss = torch.mean(res["bits"] / base.clamp(min=1.0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += batch
        run_loss.append(loss.item())
        if seen >= next_eval:
            print(f"crops {seen} loss {np.mean(run_loss):.4f} "
                  f"{seen / (time.time() - t0):.1f} crops/s", flush=True)
            run_loss = []
            t0 = time.time()
            log_eval()
            next_eval += eval_every
        if time.time() - last_ck > ckpt_minutes * 60:
            save()
            last_ck = time.time()
    save()
    log_eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("latents", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/hyperprior.pt"))
    p.add_argument("--eval-latents", type=Path, default=None)
    p.add_argument("--slices", type=int, default=1)
    p.add_argument("--phases", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--crops", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--qat-from", type=float, default=0.7)
    p.add_argument("--eval-every", type=int, default=20000)
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--init", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cfg = ContextConfig(slices=a.slices, phases=a.phases, hidden=a.hidden, kernel=a.kernel)
    train(a.latents, a.out, cfg, a.checkpoint, a.crops, a.batch, a.size, a.lr, a.qat_from,
          not a.no_bf16, a.eval_every, eval_images=a.eval_latents, threads=a.threads,
          init=a.init, seed=a.seed)


if __name__ == "__main__":
    main()
