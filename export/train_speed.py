"""Compare float32 and bfloat16-autocast training on this machine: steps per second and the loss
reached after the same number of steps from the same start, measured in interleaved blocks.

Usage: `python -m aecodec.export.train_speed DATA [--family hyperprior] [--steps 40]`.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import click
import torch

from .data import Crops, load_images
from .models import Config, build
from .train import rd_loss


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--family", default="hyperprior")
@click.option("--steps", type=int, default=40, help="Steps per precision, in blocks of 10.")
@click.option("--batch", type=int, default=8)
@click.option("--crop", type=int, default=128)
@click.option("--device", default="cpu")
def main(data: Path, family: str, steps: int, batch: int, crop: int, device: str) -> None:
    torch.manual_seed(0)
    base = build(Config(family=family)).to(device)
    images = [a for _, a in load_images(data, crop)]
    runs = {}
    for name in ("float32", "bfloat16"):
        model = copy.deepcopy(base)
        runs[name] = {
            "model": model,
            "opt": torch.optim.Adam(model.parameters(), lr=1e-4),
            "crops": iter(Crops(images, crop, batch, device, seed=1)),  # same batches for both
            "seconds": 0.0,
            "loss": [],
        }
    lambdas = torch.tensor(base.cfg.lambdas, device=device)
    gen = torch.Generator().manual_seed(2)
    levels = [torch.randint(0, len(lambdas), (batch,), generator=gen) for _ in range(steps)]
    for block in range(0, steps, 10):
        for name, r in runs.items():
            t0 = time.perf_counter()
            for i in range(block, min(block + 10, steps)):
                x = next(r["crops"])
                with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                                    enabled=name == "bfloat16"):
                    loss, _, _ = rd_loss(r["model"], x, levels[i].to(device), lambdas)
                r["opt"].zero_grad()
                loss.backward()
                r["opt"].step()
                r["loss"].append(loss.item())
            r["seconds"] += time.perf_counter() - t0
    for name, r in runs.items():
        tail = sum(r["loss"][-10:]) / len(r["loss"][-10:])
        click.echo(f"{name}: {steps / r['seconds']:.2f} steps/s, mean loss of last 10 steps "
                   f"{tail:.3f} ({torch.get_num_threads()} threads, batch {batch}, {crop}px)")
    ratio = runs["float32"]["seconds"] / runs["bfloat16"]["seconds"]
    click.echo(f"bfloat16 speed-up: {ratio:.2f}x")


if __name__ == "__main__":
    main()
