"""`aecodec train`: one command group for the trainings; `aecodec train DATA --out RUN` is
`aecodec train photo DATA --out RUN`, as it always was."""

from __future__ import annotations

from pathlib import Path

import click

from aecodec.mnist_cli import DATA_HELP as MNIST_DATA_HELP
from aecodec.mnist_cli import data_guard as mnist_data_guard

from .mnist.recipes import MODELS as MNIST_MODELS


class DefaultGroup(click.Group):
    """A group whose first argument, when it names no subcommand, goes to `default`."""

    default = "photo"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
def train() -> None:
    """Train models (needs torch). Without a subcommand: `photo`.

    Each subcommand takes --out (the run folder: checkpoint, log, exported model); a
    subcommand on the one training loop (aecodec.export.loop) resumes a run in --out by
    itself, stops after --minutes, and runs on --device."""


@train.command("photo")
@click.argument("data", type=click.Path(exists=True, path_type=Path), nargs=-1, required=True)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Run folder: checkpoint.pt, weights.pt (and the archive with --pack).")
@click.option("--family", type=click.Choice(["hyperprior", "factorized"]), default="hyperprior")
@click.option("--n", type=int, default=128, help="Transform channels.")
@click.option("--m", type=int, default=192, help="Latent channels.")
@click.option("--upsample", type=click.Choice(["subpel", "deconv"]), default="subpel")
@click.option("--iterations", type=int, default=200_000)
@click.option("--batch", type=int, default=16)
@click.option("--crop", type=int, default=256)
@click.option("--lr", type=float, default=1e-4)
@click.option("--qat-from", type=float, default=0.5,
              help="Fraction of the run after which the hyper-decoder trains quantized.")
@click.option("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
@click.option("--bf16/--no-bf16", default=True, help="bfloat16 autocast for the transforms.")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="torch.compile the forward pass (default: on CUDA only).")
@click.option("--minutes", type=float, default=None,
              help="Stop after this long (schedule follows).")
@click.option("--checkpoint-minutes", type=float, default=5.0)
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="checkpoint.pt or weights.pt to continue from.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--pack", is_flag=True,
              help="Only pack DATA folders into OUT/train.tar (downscaled, < 64 MiB) and exit.")
@click.option("--export", "export_to", type=click.Path(path_type=Path), default=None,
              help="After training, export the model folder here (ONNX + tables + manifest).")
@click.option("--eval", "eval_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of images to measure the exported model on (written to its manifest).")
@click.option("--name", default=None, help="Model name in the manifest (default: family).")
@click.option("--int-minutes", type=float, default=0.0,
              help="After training, fine-tune the exact 8-bit synthesis for this long.")
@click.option("--int8-analysis", is_flag=True,
              help="Export the analysis in 8 bits, calibrated on DATA (faster encoding).")
@click.option("--extend-low", type=int, default=0,
              help="Rate levels to add below the lowest trained one (log-linear gains).")
def photo(data: tuple[Path, ...], out: Path, family: str, n: int, m: int, upsample: str,
          iterations: int, batch: int, crop: int, lr: float, qat_from: float, device: str,
          bf16: bool, compile_: bool | None, minutes: float | None, checkpoint_minutes: float,
          resume: Path | None, threads: int | None, pack: bool, export_to: Path | None,
          eval_dir: Path | None, name: str | None, extend_low: int, int_minutes: float,
          int8_analysis: bool) -> None:
    """Train a learned codec on DATA (folders of images, or one .tar made by --pack).

    Runs data-parallel under `torchrun --nproc-per-node N -m aecodec.export.cli ...`
    (--batch is the global batch)."""
    from .data import build_archive

    if pack:
        size = build_archive(list(data), out / "train.tar")
        click.echo(f"{out / 'train.tar'}: {size / 2**20:.1f} MiB")
        return
    import torch

    from .models import Config
    from .train import Recipe
    from .train import train as run_training

    if threads:
        torch.set_num_threads(threads)
    if len(data) != 1:
        raise click.UsageError("train takes one DATA folder or archive")
    cfg = Config(family=family, n=n, m=m, upsample=upsample)
    recipe = Recipe(iterations=iterations, batch=batch, crop=crop, lr=lr, qat_from=qat_from,
                    bf16=bf16, compile=compile_)
    weights = run_training(data[0], out, cfg, recipe, device=device, resume=resume,
                           minutes=minutes, checkpoint_minutes=checkpoint_minutes)
    if int_minutes > 0:
        from .int_train import finetune

        finetune(weights, data[0], int_minutes, device=device, batch=batch, crop=crop)
    click.echo(f"weights: {weights}")
    if export_to is not None:
        from .onnx_export import export_model

        folder = export_model(weights, export_to, name=name or family, eval_dir=eval_dir,
                              extend_low=extend_low, calib=data[0] if int8_analysis else None)
        click.echo(f"model: {folder}")
        if eval_dir is not None:  # the bench's measurement, run as its command
            import subprocess
            import sys

            subprocess.run([sys.executable, "-m", "aecodec.bench.evaluate", "--folder",
                            str(folder), str(eval_dir)], check=True)


@train.command("encoder")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Run folder (resumed when it holds a checkpoint); the model lands in OUT/model.")
@click.option("--weights", type=click.Path(exists=True, path_type=Path),
              default=Path(__file__).resolve().parents[1] / "checkpoints" / "hyperprior.pt",
              show_default=True, help="Float weights whose analysis and hyper-analysis train.")
@click.option("--model", "model_name", default="hyperprior-fast", show_default=True,
              help="The shipped model whose decoder (8-bit synthesis, tables) stays fixed.")
@click.option("--minutes", type=float, default=None, help="Time budget of this run.")
@click.option("--steps", type=int, default=20_000, show_default=True, help="Schedule length.")
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--crop", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=2e-5, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Only cpu for this task.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--validate-every", type=int, default=50, show_default=True)
@click.option("--checkpoint-minutes", type=float, default=5.0, show_default=True)
def encoder(data: Path, out: Path, weights: Path, model_name: str, minutes: float | None,
            steps: int, batch: int, crop: int, lr: float, device: str, threads: int | None,
            validate_every: int, checkpoint_minutes: float) -> None:
    """Fine-tune the encoder alone against a shipped decoder (docs/effort.md)."""
    import torch

    from .loop import Recipe, fit
    from .tasks.encoder import EncoderTask

    if threads:
        torch.set_num_threads(threads)
    task = EncoderTask(data, weights, model_name)
    recipe = Recipe(steps=steps, batch=batch, crop=crop, lr=lr, validate_every=validate_every,
                    checkpoint_minutes=checkpoint_minutes)
    record = fit(task, recipe, out, device=device, minutes=minutes, log=click.echo)
    last = record["validation"][-1] if record["validation"] else {}
    click.echo(f"step {last.get('step')}: validation cost {last.get('cost', float('nan')):.4f}; "
               f"model: {record.get('export')}")


# The trainings not yet moved onto the one loop keep their own options for now (their --help
# is their own); listed here so that `aecodec train --help` shows every training there is.
PASSTHROUGH = {
    "context": ("aecodec.export.train_context:main", "Train the context model (latents in)."),
    "context-export": ("aecodec.export.context_export:main",
                       "Export a trained context model as a model folder."),
    "light-synthesis": ("aecodec.export.light_synthesis:main",
                        "Prune and fine-tune a lighter 8-bit synthesis."),
    "latents": ("aecodec.export.latents:main", "Compute a shipped model's training latents."),
    "evaluate": ("aecodec.bench.evaluate:main", "Evaluate a model folder on an image folder."),
    "eval-context": ("aecodec.export.eval_context:main", "Measure a context model's saving."),
}


def _passthrough(name: str, target: str, text: str) -> None:
    @train.command(name, help=f"{text} (its own options: `aecodec train {name} --help`)",
                   short_help=text, add_help_option=False,
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.pass_context
    def command(ctx: click.Context) -> None:
        import importlib

        module, attr = target.split(":")
        getattr(importlib.import_module(module), attr)(list(ctx.args))


for _name, (_target, _text) in PASSTHROUGH.items():
    _passthrough(_name, _target, _text)


@train.command("mnist")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Run folder: checkpoint.pt, log.jsonl and the export (resumed when it "
                   "holds a checkpoint).")
@click.option("--model", "model_key", type=click.Choice(list(MNIST_MODELS)), default="rd",
              show_default=True, help="Which recipe (docs/mnist.md), named mnist-<model>.")
@click.option("--data", default=None, help=MNIST_DATA_HELP)
@click.option("--steps", type=int, default=20_000, show_default=True,
              help="Length of the schedule, in steps.")
@click.option("--minutes", type=float, default=None,
              help="Stop after this long (the schedule follows the clock).")
@click.option("--batch", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="torch.compile the forward pass (default: on CUDA only).")
@click.option("--validate-every", type=int, default=0, show_default=True,
              help="Steps between validation points (0: at the end only).")
@click.option("--checkpoint-minutes", type=float, default=5.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--export", "export_to", type=click.Path(path_type=Path), default=None,
              help="Model folder to write (default: OUT/model).")
@click.option("--val-digits", type=int, default=2000, show_default=True,
              help="Test digits the validation points are measured on.")
@mnist_data_guard
def mnist(out: Path, model_key: str, data: str | None, steps: int, minutes: float | None,
          batch: int, lr: float, device: str, threads: int | None, compile_: bool | None,
          validate_every: int, checkpoint_minutes: float, seed: int, export_to: Path | None,
          val_digits: int) -> None:
    """Train one of the MNIST codecs (docs/mnist.md; `aecodec mnist` has the rest)."""
    import torch

    from .loop import Recipe, fit
    from .tasks.mnist import MnistTask

    if threads:
        torch.set_num_threads(threads)
    task = MnistTask.shipped(model_key, data, val_digits=val_digits, folder=export_to)
    recipe = Recipe(steps=steps, batch=batch, lr=lr, schedule="cosine", bf16=False, clip=None,
                    compile=compile_, validate_every=validate_every,
                    checkpoint_minutes=checkpoint_minutes, seed=seed)
    record = fit(task, recipe, out, device=device, minutes=minutes, log=click.echo)
    last = record["validation"][-1] if record["validation"] else {}
    top = len(task.lambdas) - 1
    click.echo(f"step {last.get('step')}: top level {last.get(f'bits_level{top}', 0):.1f} "
               f"bits, {last.get(f'psnr_level{top}', 0):.2f} dB; model: {record.get('export')}")


if __name__ == "__main__":
    train()
