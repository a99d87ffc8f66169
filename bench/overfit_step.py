"""Where one training step of the overfit family spends its time (docs/overfit.md).

Times each part of the step on one image size, side by side in one process: the fused ARM
term (context, MLP, Laplace bits, forward and backward), the fused synthesis term, the
upsampling, the soft rounding, the optimisers, the whole step, and the same two terms unfused
(plain autograd over whole images) for the ratio. The latents are random (a trained image's spread),
the networks' zero-initialised layers are perturbed so every unit works as it does mid-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from .images import load_image, synthetic_image
from .load import describe, machine_load


def profile(image: np.ndarray, threads: int, repeats: int) -> dict[str, float]:
    """Seconds per call of each part of the step (mean over `repeats`, after one warm-up):
    the trainer times itself (`aecodec.overfit.fit.time_step_parts`; the bench imports no
    torch)."""
    import aecodec
    from aecodec.overfit import fit
    from aecodec.overfit.arch import Arch

    arch = Arch.from_manifest({"architecture": json.loads(
        aecodec.Codec("overfit").model.blob("arch.json"))})
    return fit.time_step_parts(image, arch, threads, repeats)


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
