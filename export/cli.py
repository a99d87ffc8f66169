"""`aecodec train`: train a model on a folder or archive of images, resume, export."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
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
def train(data: tuple[Path, ...], out: Path, family: str, n: int, m: int, upsample: str,
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
        if eval_dir is not None:
            from .evaluate import evaluate_folder, record_results

            res = evaluate_folder(folder, eval_dir)
            record_results(folder, eval_dir.name, res)
            click.echo(f"{eval_dir.name}: BD-rate vs JPEG {res['bd_rate_vs_jpeg']:+.1%}")


if __name__ == "__main__":
    train()
