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

    Every training is a task of the one loop (aecodec.export.loop) and takes the same
    options for the same things: --out (the run folder: checkpoint, log, export), --steps,
    --minutes, --batch, --lr, --device, --resume, ... The same command on the same --out
    resumes the run. docs/training.md has the commands and what each costs."""


def loop_options(steps: int, batch: int, crop: int, lr: float | None, bf16: bool = True,
                 validate_every: int = 0, schedule: str = "step", skip: tuple[str, ...] = (),
                 lr_help: str | None = None):
    """The options every subcommand on the one loop shares, with the task's own defaults:
    the same name for the same thing everywhere (`skip`: those a task has no use for)."""
    option = click.option
    opts = {
        "out": option("--out", "-o", type=click.Path(path_type=Path), required=True,
                      help="Run folder: checkpoint.pt, log.jsonl and the export (resumed when "
                           "it holds a checkpoint)."),
        "steps": option("--steps", "--iterations", "steps", type=int, default=steps,
                        show_default=True, help="Length of the schedule, in steps."),
        "minutes": option("--minutes", type=float, default=None,
                          help="Time budget of the whole run, its validations included "
                               "(the schedule follows the clock)."),
        "batch": option("--batch", type=int, default=batch, show_default=True,
                        help="Global batch (split over torchrun's processes)."),
        "crop": option("--crop", type=int, default=crop, show_default=True,
                       help="Crop side in pixels."),
        "lr": option("--lr", type=float, default=lr, show_default=lr is not None,
                     help=lr_help),
        "schedule": option("--schedule", type=click.Choice(["step", "cosine"]),
                           default=schedule, show_default=True,
                           help="step: lr x0.1 after 85 %; cosine: to zero."),
        "device": option("--device", default="cpu", show_default=True,
                         help="cpu, cuda, cuda:1, ..."),
        "threads": option("--threads", type=int, default=None, help="CPU threads for torch."),
        "bf16": option("--bf16/--no-bf16", default=bf16, show_default=True,
                       help="bfloat16 autocast (rates and losses stay float32)."),
        "compile_": option("--compile/--no-compile", "compile_", default=None,
                           help="torch.compile the forward pass (default: on CUDA only)."),
        "validate_every": option("--validate-every", type=int, default=validate_every,
                                 show_default=True, help="Steps between validation points "
                                                         "(0: at the start and end only; "
                                                         "the start is always one)."),
        "checkpoint_minutes": option("--checkpoint-minutes", type=float, default=5.0,
                                     show_default=True),
        "seed": option("--seed", type=int, default=0, show_default=True),
        "resume": option("--resume", type=click.Path(exists=True, path_type=Path),
                         default=None, help="A checkpoint.pt of this loop to start from when "
                                            "OUT holds none (e.g. one kept outside the "
                                            "checkout)."),
    }

    def decorate(fn):
        for name, option in reversed(opts.items()):
            if name not in skip:
                fn = option(fn)
        return fn

    return decorate


def run_loop(task, out: Path, o: dict, log=click.echo, fit_args: dict | None = None,
             **recipe) -> dict:
    """`fit` with the shared options `o` (the keyword arguments of a loop subcommand), a
    task's own recipe fields and `fit`'s own arguments (`fit_args`). A fine-tune that made
    the model worse raises `loop.NoGain` for the command to report."""
    import torch

    from .loop import NoGain, Recipe, fit

    if o["threads"]:
        torch.set_num_threads(o["threads"])
    recipe = Recipe(steps=o["steps"], batch=o["batch"], crop=o["crop"], lr=o["lr"],
                    schedule=o["schedule"], bf16=o["bf16"], compile=o["compile_"],
                    validate_every=o["validate_every"],
                    checkpoint_minutes=o["checkpoint_minutes"], seed=o["seed"], **recipe)
    try:
        return fit(task, recipe, out, device=o["device"], minutes=o["minutes"], log=log,
                   start=o["resume"], **(fit_args or {}))
    except NoGain:
        raise
    except (ValueError, FileNotFoundError) as e:  # a refused checkpoint, no images: one line
        raise click.ClickException(str(e)) from None


def _is_loop_checkpoint(path: Path) -> bool:
    import torch

    from .loop import FORMAT

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same bad input
        raise click.BadParameter(f"{path}: not a checkpoint or weights file ({e})",
                                 param_hint="--resume") from None
    return isinstance(state, dict) and state.get("format") == FORMAT and "task" in state


class WeightsParam(click.ParamType):
    """A weights file, or a shipped model's name (its weights ship with aecodec)."""

    name = "WEIGHTS"

    def convert(self, value, param, ctx) -> Path:
        from .start import resolve

        try:
            return resolve(value)
        except FileNotFoundError as e:
            self.fail(str(e), param, ctx)


@train.command("photo")
@click.argument("data", type=click.Path(exists=True, path_type=Path), nargs=-1, required=True)
@loop_options(steps=200_000, batch=16, crop=256, lr=None,
              lr_help="Learning rate [default: 1e-4; 1e-5 for a fine-tune (--init)].")
@click.option("--warmup", type=int, default=None,
              help="Steps of a linear rise of the learning rate [default: 0; 100 for a "
                   "fine-tune].")
@click.option("--family", type=click.Choice(["hyperprior", "factorized"]), default="hyperprior")
@click.option("--n", type=int, default=128, help="Transform channels.")
@click.option("--m", type=int, default=192, help="Latent channels.")
@click.option("--nz", type=int, default=128, help="Hyper-latent channels.")
@click.option("--upsample", type=click.Choice(["subpel", "deconv"]), default="subpel")
@click.option("--qat-from", type=float, default=None,
              help="Fraction of the run after which the hyper-decoder trains quantized "
                   "[default: 0.5; 0 for a fine-tune].")
@click.option("--init", type=WeightsParam(), default=None,
              help="Weights to fine-tune: a shipped model's name (hyperprior: its weights "
                   "ship with aecodec), a checkpoint or a run's weights.pt; --resume takes "
                   "them too.")
@click.option("--force", is_flag=True,
              help="Export even when the fine-tune made the model worse on the validation "
                   "images (the last weights); without it such a run exports nothing.")
@click.option("--pack", is_flag=True,
              help="Only pack DATA folders into OUT/train.tar and exit: crops of the photos "
                   "(downscaled to 1024) up to --pack-mib.")
@click.option("--pack-mib", type=float, default=20.0, show_default=True,
              help="Size of the archive --pack writes; 0: every whole photo instead.")
@click.option("--pack-crop", type=int, default=256, show_default=True,
              help="Side of the crops --pack cuts.")
@click.option("--export", "export_to", type=click.Path(path_type=Path), default=None,
              help="After training, export the model folder here (ONNX + tables + "
                   "manifest; within --minutes: about a minute is kept for it).")
@click.option("--eval", "eval_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of images to measure the exported model on (written to its manifest).")
@click.option("--name", default=None,
              help="Model name in the manifest [default: <start or family>-<OUT's name>].")
@click.option("--int-minutes", type=float, default=0.0,
              help="Then fine-tune the exact 8-bit synthesis this long (decoder only; its own "
                   "task, in OUT/int8/<digest of the float model>).")
@click.option("--int8-analysis", is_flag=True,
              help="Export the analysis in 8 bits, calibrated on DATA (faster encoding).")
@click.option("--extend-low", type=int, default=None,
              help="Rate levels to add below the lowest trained one (log-linear gains) "
                   "[default: the start's; 0 from scratch].")
def photo(data: tuple[Path, ...], warmup: int | None, family: str, n: int, m: int, nz: int,
          upsample: str, qat_from: float | None, init: Path | None, force: bool, pack: bool,
          pack_mib: float, pack_crop: int, export_to: Path | None, eval_dir: Path | None,
          name: str | None, int_minutes: float, int8_analysis: bool, extend_low: int | None,
          **o) -> None:
    """Train a learned codec on DATA (folders of images, or one .tar made by --pack).

    From scratch, or a fine-tune of weights (--init hyperprior: the shipped model's). A
    validation point at the start and the end (log.jsonl), a before/after table at the end;
    the best validated weights are exported, and a fine-tune that made the model worse
    exports nothing unless --force. --minutes is the whole run's budget, export included.

    Runs data-parallel under `torchrun --nproc-per-node N -m aecodec.export.cli ...`
    (--batch is the global batch)."""
    import time

    from .data import build_archive

    out = o["out"]
    if pack:
        try:
            size = build_archive(list(data), out / "train.tar",
                                 max_bytes=int(pack_mib * 2**20) if pack_mib else None,
                                 crop=pack_crop)
        except ValueError as e:  # an unreadable image: one line naming it
            raise click.ClickException(str(e)) from None
        click.echo(f"{out / 'train.tar'}: {size / 2**20:.1f} MiB")
        return
    from . import finetune
    from .loop import NoGain
    from .models import Config
    from .tasks.photo import PhotoTask

    if len(data) != 1:
        raise click.UsageError("train takes one DATA folder or archive")
    if o["resume"] is not None and not _is_loop_checkpoint(o["resume"]):
        init, o["resume"] = init or o["resume"], None  # weights (or an old run's checkpoint)
    start_name, start_low = _start(init)
    tuned = init is not None
    chosen = finetune.recipe_defaults(tuned, o["lr"], warmup, qat_from)
    o["lr"] = chosen["lr"]
    low = start_low if extend_low is None else extend_low
    task = PhotoTask(data[0], Config(family=family, n=n, m=m, nz=nz, upsample=upsample),
                     init=init, qat_from=chosen["qat_from"], extend_low=low)
    t0 = time.time()
    reserve = finetune.EXPORT_RESERVE_S if export_to is not None else 0.0
    try:
        record = run_loop(task, out, o, warmup=chosen["warmup"],
                          fit_args={"reserve_s": reserve, "force": force})
    except NoGain as e:
        click.echo(finetune.table(task.record or {}, task.cfg.lambdas, low, task.val_images))
        raise click.ClickException(str(e)) from None
    weights = out / "weights.pt"
    if "export" not in record:
        return  # not the first of torchrun's processes: rank 0 exports
    click.echo(finetune.table(record, task.cfg.lambdas, low, task.val_images))
    if int_minutes > 0:  # in every process, as the photo task ran
        from .tasks.int8 import Int8Task

        int8 = Int8Task(weights, data[0], target=weights)
        run_loop(int8, out / "int8" / int8.digest,
                 o | {"minutes": int_minutes, "steps": 10**9, "lr": 3e-5, "bf16": False,
                      "schedule": "cosine", "resume": None})
    click.echo(f"weights: {weights}")
    if export_to is not None:
        from .onnx_export import export_model

        t1 = time.time()
        model_name = name or finetune.default_name(start_name, task.cfg.family, out)
        folder = export_model(weights, export_to, name=model_name, eval_dir=eval_dir,
                              extend_low=low, calib=data[0] if int8_analysis else None)
        click.echo(f"model: {folder} ({model_name}, {task.cfg.family}, "
                   f"{len(task.cfg.lambdas) + low} rate levels); export {time.time() - t1:.0f} s"
                   f", the whole run {time.time() - t0:.0f} s")
        if eval_dir is not None:  # the bench's measurement, run as its command
            import subprocess
            import sys

            subprocess.run([sys.executable, "-m", "aecodec.bench.evaluate", "--folder",
                            str(folder), str(eval_dir)], check=True)


def _start(init: Path | None) -> tuple[str | None, int]:
    """The shipped model `init` holds the weights of (or None), and its extra low levels."""
    if init is None:
        return None, 0
    import torch

    from .start import extended_low, shipped_name

    record = torch.load(init, map_location="cpu", weights_only=False).get("record", {})
    return shipped_name(init, record), extended_low(init, record)


@train.command("int8")
@click.argument("weights", type=click.Path(exists=True, path_type=Path))
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@loop_options(steps=10_000, batch=16, crop=256, lr=3e-5, bf16=False, schedule="cosine")
@click.option("--scale-lr", type=float, default=33.3, show_default=True,
              help="The log-scales' learning rate, as a multiple of --lr.")
@click.option("--in-place", is_flag=True,
              help="Store the 8-bit synthesis in WEIGHTS itself, not in OUT/weights.pt.")
def int8(weights: Path, data: Path, scale_lr: float, in_place: bool, **o) -> None:
    """Fine-tune the exact 8-bit synthesis of WEIGHTS (decoder only: streams and rates stay
    as they are); export then ships it in place of the float one."""
    from .tasks.int8 import Int8Task

    task = Int8Task(weights, data, target=weights if in_place else None, scale_lr=scale_lr)
    record = run_loop(task, o["out"], o)
    click.echo(f"weights: {record.get('export')}")


@train.command("encoder")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@loop_options(steps=20_000, batch=8, crop=256, lr=2e-5, validate_every=50)
@click.option("--weights", type=click.Path(exists=True, path_type=Path),
              default=Path(__file__).resolve().parents[1] / "checkpoints" / "hyperprior.pt",
              show_default=True, help="Float weights whose analysis and hyper-analysis train.")
@click.option("--model", "model_name", default="hyperprior-fast", show_default=True,
              help="The shipped model whose decoder (8-bit synthesis, tables) stays fixed.")
@click.option("--val-images", type=int, default=4, show_default=True,
              help="Held-out training photos the validation cost is measured on.")
@click.option("--rate", "rate_proxy", type=click.Choice(["noisy", "rounded"]), default="noisy",
              show_default=True, help="Rate trained on: densities of noisy or of rounded symbols.")
@click.option("--parts", type=click.Choice(["all", "hyper", "gains"]), default="all",
              show_default=True, help="What trains: analysis and hyper-analysis, the "
                                      "hyper-analysis alone, or the encoder's gains alone.")
def encoder(data: Path, weights: Path, model_name: str, val_images: int, rate_proxy: str,
            parts: str, **o) -> None:
    """Fine-tune the encoder alone against a shipped decoder (docs/effort.md); CPU only."""
    from .tasks.encoder import EncoderTask

    task = EncoderTask(data, weights, model_name, val_images=val_images, rate=rate_proxy,
                       parts=parts)
    record = run_loop(task, o["out"], o)
    last = record["validation"][-1] if record["validation"] else {}
    click.echo(f"step {last.get('step')}: validation cost {last.get('cost', float('nan')):.4f}; "
               f"model: {record.get('export')}")


@train.command("context")
@click.argument("latents", type=click.Path(exists=True, path_type=Path))
@loop_options(steps=12_500, batch=16, crop=16, lr=5e-4, schedule="cosine", validate_every=1250)
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path),
              default=Path(__file__).resolve().parents[1] / "checkpoints" / "hyperprior.pt",
              show_default=True, help="The frozen hyperprior's weights.")
@click.option("--model", "model_name", default="hyperprior", show_default=True,
              help="The shipped model of --checkpoint (its gains).")
@click.option("--slices", type=int, default=1, show_default=True)
@click.option("--phases", type=int, default=2, show_default=True)
@click.option("--hidden", type=int, default=128, show_default=True)
@click.option("--kernel", type=int, default=5, show_default=True)
@click.option("--qat-from", type=float, default=0.7, show_default=True,
              help="Fraction of the run after which the step networks train quantized.")
@click.option("--eval-latents", type=click.Path(exists=True, path_type=Path), default=None,
              help="Latents of an evaluation set, measured at each validation (never trained on).")
@click.option("--init", type=click.Path(exists=True, path_type=Path), default=None,
              help="A context.pt to start from.")
def context(latents: Path, checkpoint: Path, model_name: str, slices: int, phases: int,
            hidden: int, kernel: int, qat_from: float, eval_latents: Path | None,
            init: Path | None, **o) -> None:
    """Train a context model on LATENTS (from `aecodec train latents`; --crop in latents);
    exports OUT/context.pt."""
    import numpy as np

    from .context import ContextConfig
    from .tasks.context import ContextTask

    with np.load(latents) as f:  # the latents' channels
        m = int(f[f.files[0]].shape[0])
    cfg = ContextConfig(m=m, slices=slices, phases=phases, hidden=hidden, kernel=kernel)
    task = ContextTask(latents, cfg, checkpoint, model_name, qat_from, eval_latents, init)
    record = run_loop(task, o["out"], o)
    click.echo(f"context: {record.get('export')}")


@train.command("context-export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--base", type=click.Path(exists=True, path_type=Path), required=True,
              help="The base hyperprior's model folder.")
@click.option("--name", required=True)
@click.option("--version", default="1.0.0", show_default=True)
@click.option("--record", type=click.Path(exists=True, path_type=Path), default=None,
              help="JSON merged into the training record.")
@click.option("--scale-only", is_flag=True, help="Ship the scale refinements only.")
def context_export(checkpoint: Path, folder: Path, base: Path, name: str, version: str,
                   record: Path | None, scale_only: bool) -> None:
    """Export a trained context model (CHECKPOINT: OUT/context.pt) as the model FOLDER."""
    import json

    from .context_export import export_context_model

    rec = json.loads(record.read_text()) if record else None
    click.echo(export_context_model(checkpoint, folder, base, name, version, rec, scale_only))


@train.command("light-synthesis")
@click.argument("latents", type=click.Path(exists=True, path_type=Path))
@click.argument("folders", type=click.Path(exists=True, path_type=Path), nargs=-1,
                required=True)
@loop_options(steps=1000, batch=8, crop=16, lr=3e-5, bf16=False, schedule="cosine")
@click.option("--weights", type=click.Path(exists=True, path_type=Path),
              default=Path(__file__).resolve().parents[1] / "checkpoints" / "hyperprior.pt",
              show_default=True, help="Weights holding the 8-bit synthesis to prune.")
@click.option("--base", default="hyperprior", show_default=True,
              help="The exported model of --weights (its runtime makes the y_hat).")
@click.option("--stage", type=int, default=2, show_default=True)
@click.option("--width", type=int, default=80, show_default=True)
@click.option("--train-from", type=int, default=None, help="First stage that trains.")
@click.option("--scale-lr", type=float, default=10.0, show_default=True,
              help="The log-scales' learning rate, as a multiple of --lr.")
def light_synthesis(latents: Path, folders: tuple[Path, ...], weights: Path, base: str,
                    stage: int, width: int, train_from: int | None, scale_lr: float,
                    **o) -> None:
    """Prune and fine-tune a lighter 8-bit synthesis on LATENTS of the photos in FOLDERS
    (--crop in latents); exports OUT/light.pt."""
    from .tasks.light import LightSynthesisTask

    task = LightSynthesisTask(latents, list(folders), weights, base, stage, width, train_from,
                              scale_lr)
    record = run_loop(task, o["out"], o)
    click.echo(f"light synthesis: {record.get('export')}")


@train.command("light-synthesis-export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--base", type=click.Path(exists=True, path_type=Path), required=True,
              help="The model folder whose other files the new one shares.")
@click.option("--name", required=True)
@click.option("--version", default="1.0.0", show_default=True)
def light_synthesis_export(checkpoint: Path, folder: Path, base: Path, name: str,
                           version: str) -> None:
    """Write the model FOLDER of a light synthesis (CHECKPOINT: OUT/light.pt)."""
    from .light_synthesis import export_folder

    click.echo(export_folder(checkpoint, folder, base, name, version)["id"])


@train.command("latents")
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("folders", type=click.Path(exists=True, path_type=Path), nargs=-1,
                required=True)
@click.option("--model", default="hyperprior", show_default=True)
@click.option("--max-side", type=int, default=1024, show_default=True, help="0: the full size.")
@click.option("--exact", is_flag=True, help="float32 instead of float16.")
@click.option("--threads", type=int, default=2, show_default=True)
def latents(out: Path, folders: tuple[Path, ...], model: str, max_side: int, exact: bool,
            threads: int) -> None:
    """Compute a shipped model's latents of the photos in FOLDERS into OUT (.npz), once: the
    entropy-model and decoder-only tasks train on them."""
    from .latents import write_latents

    click.echo(write_latents(out, list(folders), model, max_side or None, exact, threads))


# Click commands of their own modules (the bench's measurement; the context model's, which
# imports torch at once), imported when run: `aecodec train --help` lists them by name.
PASSTHROUGH = {
    "evaluate": ("aecodec.bench.evaluate:command", "Evaluate a model folder on an image folder."),
    "eval-context": ("aecodec.export.eval_context:command", "Measure a context model's saving."),
}


def _passthrough(name: str, target: str, text: str) -> None:
    @train.command(name, help=f"{text} (its own options: `aecodec train {name} --help`)",
                   short_help=text, add_help_option=False,
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.pass_context
    def command(ctx: click.Context) -> None:
        import importlib

        module, attr = target.split(":")
        real: click.Command = getattr(importlib.import_module(module), attr)
        real.main(args=list(ctx.args), prog_name=f"aecodec train {name}",
                  standalone_mode=False)


for _name, (_target, _text) in PASSTHROUGH.items():
    _passthrough(_name, _target, _text)


@train.command("mnist")
@loop_options(steps=20_000, batch=128, crop=28, lr=1e-3, bf16=False, schedule="cosine",
              skip=("crop",))
@click.option("--model", "model_key", type=click.Choice(list(MNIST_MODELS)), default="rd",
              show_default=True, help="Which recipe (docs/mnist.md), named mnist-<model>.")
@click.option("--data", default=None, help=MNIST_DATA_HELP)
@click.option("--export", "export_to", type=click.Path(path_type=Path), default=None,
              help="Model folder to write (default: OUT/model).")
@click.option("--val-digits", type=int, default=2000, show_default=True,
              help="Test digits the validation points are measured on.")
@mnist_data_guard
def mnist(model_key: str, data: str | None, export_to: Path | None, val_digits: int,
          **o) -> None:
    """Train one of the MNIST codecs (docs/mnist.md; `aecodec mnist` has the rest)."""
    from .mnist.recipes import MODELS
    from .tasks.mnist import MnistTask

    task = MnistTask.shipped(model_key, data, val_digits=val_digits, folder=export_to)
    record = run_loop(task, o["out"], o | {"crop": 28}, clip=None,
                      warmup=int(MODELS[model_key].get("warmup", 0)))
    last = record["validation"][-1] if record["validation"] else {}
    top = len(task.lambdas) - 1
    click.echo(f"step {last.get('step')}: top level {last.get(f'bits_level{top}', 0):.1f} "
               f"bits, {last.get(f'psnr_level{top}', 0):.2f} dB; model: {record.get('export')}")


if __name__ == "__main__":
    train()
