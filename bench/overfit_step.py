"""Where one training step of the overfit family spends its time (docs/overfit.md).

Times each part of the step on one image size, side by side in one process: the fused ARM
term (context, MLP, Laplace bits, forward and backward), the fused synthesis term, the
upsampling, the soft rounding, Adam, the whole step, and the same two terms unfused (plain
autograd over whole images) for the ratio. The latents are random (a trained image's spread),
the networks' zero-initialised layers are perturbed so every unit works as it does mid-run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from .images import load_image, synthetic_image
from .load import describe, machine_load


def _timer(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, oneDNN primitive caches
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def profile(image: np.ndarray, threads: int, repeats: int) -> dict[str, float]:
    """Seconds per call of each part of the step (median-free mean over `repeats`)."""
    import torch

    import aecodec
    from aecodec.overfit import fit
    from aecodec.overfit.arch import Arch, grid_shapes

    torch.set_num_threads(threads)
    arch = Arch.from_manifest({"architecture": json.loads(
        aecodec.Codec("overfit").model.blob("arch.json"))})
    gen = torch.Generator().manual_seed(0)
    net = fit.Net(arch, gen)
    with torch.no_grad():
        for t in net.parameters():
            t.add_(torch.randn(t.shape, generator=gen) * 0.05)
    h, w = image.shape[:2]
    x = fit._target(image, "cpu")
    lat = [(torch.randn(1, 1, a, b, generator=gen) * 2).requires_grad_(True)
           for a, b in grid_shapes(h, w, arch.grids)]
    opt = torch.optim.Adam([*net.parameters(), *lat], lr=1e-4)
    arm_bits, synth_sse = fit.fused.functions()
    t = net.named_tensors()
    arm = [t[n] for n in ("arm.w1", "arm.b1", "arm.w2", "arm.b2", "arm.w3", "arm.b3", "arm.ws")]
    syn = [t[f"syn.{k}"] for k in ("w1", "b1", "w2", "b2", "w3", "b3", "w4", "b4")]
    a = arch
    u = net.upsample(lat).detach().requires_grad_(True)

    def quantised():
        return [fit.softround(fit.softround(y, 0.2) + 0.2 * torch.randn_like(y), 0.2)
                for y in lat]

    def step():
        bits, sse = net.fused_terms(quantised(), x)
        loss = 0.01 * 255**2 * sse / x.numel() + bits / (h * w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def arm_part():
        arm_bits.apply(net.ctx_index, a.log_scale_min, a.log_scale_max, len(lat), *lat,
                       *arm).backward()

    def synth_part():
        synth_sse.apply(u, x, *syn).backward()

    def upsample_part():
        net.upsample(lat).sum().backward()

    def softround_part():
        with torch.no_grad():
            quantised()

    def adam_part():
        for p in opt.param_groups[0]["params"]:
            p.grad = torch.zeros_like(p)
        opt.step()

    def plain_part():
        bits = net.bits(lat)
        sse = ((net.synthesis(net.upsample(lat)) - x) ** 2).sum()
        (bits + sse).backward()

    parts = {"ARM term, fused (forward + backward)": arm_part,
             "synthesis term, fused (forward + backward)": synth_part,
             "upsampling (forward + backward)": upsample_part,
             "soft rounding and noise": softround_part,
             "Adam": adam_part,
             "whole step": step,
             "the two terms and upsampling unfused (plain autograd)": plain_part}
    return {name: _timer(fn, repeats) for name, fn in parts.items()}


def report(times: dict[str, float], size: str, threads: int, load: str) -> str:
    lines = [f"# One overfit training step at {size}, {threads} thread(s)", "",
             f"Machine at the start: {load}.", "", "| part | ms |", "|---|---|"]
    lines += [f"| {name} | {1000 * s:.0f} |" for name, s in times.items()]
    return "\n".join(lines) + "\n"


@click.command("overfit-step")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="An image (default: a synthetic 768x512 one).")
@click.option("--threads", default="1,2", show_default=True, help="Comma list of thread counts.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def command(image: Path | None, threads: str, repeats: int, out: Path) -> None:
    """Time each part of one overfit training step (side by side, one process)."""
    img = load_image(image) if image else synthetic_image(512, 768)
    size = f"{img.shape[1]}x{img.shape[0]}"
    out.mkdir(parents=True, exist_ok=True)
    load = describe(machine_load())
    res: dict[str, Any] = {"size": size, "load": load, "threads": {}}
    text = []
    for n in [int(s) for s in threads.split(",") if s.strip()]:
        res["threads"][n] = profile(img, n, repeats)
        text.append(report(res["threads"][n], size, n, load))
        click.echo(text[-1])
    (out / "step.json").write_text(json.dumps(res, indent=1))
    (out / "step.md").write_text("\n".join(text))


if __name__ == "__main__":
    command()
