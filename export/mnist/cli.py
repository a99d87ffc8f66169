"""`aecodec mnist train|export`: the MNIST commands that need torch (the group, with the
runtime's `figures`, `sample` and `bench`, is `aecodec.mnist_cli`).

`aecodec mnist train --model K` is `aecodec train mnist --model K` (the one loop) with the
shipped model's time box, run folder RUNS/K and its model folder EXPORT_TO/mnist-K.
"""

from __future__ import annotations

from pathlib import Path

import click

from aecodec.mnist_cli import DATA_HELP, data_guard
from aecodec.model import MODELS_DIR

from .recipes import MODELS

BUDGETS = ", ".join(f"{v['minutes']:g} {k}" for k, v in MODELS.items())


@click.command()
@click.option("--model", "keys", type=click.Choice([*MODELS, "all"]), multiple=True,
              default=("all",), show_default=True, help="which model(s)")
@click.option("--minutes", type=float, default=None, help="time budget per model "
              f"(default: {BUDGETS}); a run resumes from its folder's checkpoint")
@click.option("--data", default=None, help=DATA_HELP)
@click.option("--runs", default="runs/mnist", show_default=True,
              help="run folders, one per model (RUNS/<model>: checkpoint.pt, log.jsonl)")
@click.option("--export-to", default=str(MODELS_DIR), show_default=True,
              help="write the model folders mnist-<model>/ here")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.pass_context
@data_guard
def train(ctx: click.Context, keys: tuple[str, ...], minutes: float | None, data: str | None,
          runs: str, export_to: str, seed: int, threads: int) -> None:
    """Train (time-boxed, CPU) and export the models."""
    from ..cli import mnist as train_one

    for key in MODELS if "all" in keys else keys:
        ctx.invoke(train_one, model_key=key, data=data, out=Path(runs) / key,
                   export_to=Path(export_to) / f"mnist-{key}", seed=seed, threads=threads,
                   minutes=minutes or MODELS[key]["minutes"], steps=10**9)


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, help="model folder to write")
@click.option("--name", default=None, help="model name (default mnist-<kind>)")
@click.option("--data", default=None, help=DATA_HELP)
@data_guard
def export_cmd(checkpoint: str, out: str, name: str | None, data: str | None) -> None:
    """Export a checkpoint written by `train` as a model folder."""
    from ..tasks.mnist import export_checkpoint

    man = export_checkpoint(checkpoint, out, name=name, data=data)
    click.echo(f"exported {man['name']} (id {man['id']}) to {out}; "
               f"ONNX parity {man['training']['onnx_parity']}")
