"""`aecodec mnist ...`: one group over two homes, each subcommand loaded by name when run.

`train` and `export` need torch (aecodec.export.mnist.cli); `figures`, `sample` and `bench`
need only the runtime (aecodec.bench.mnist_cli). The group is here, in the runtime, so that
neither side imports the other, and `aecodec mnist --help` imports neither.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import click

from .idx import MnistNotFoundError

SUBCOMMANDS = {  # name: (module:attribute, one-line help, extra that provides it)
    "train": ("aecodec.export.mnist.cli:train",
              "Train (time-boxed, CPU) and export the models.", "train"),
    "export": ("aecodec.export.mnist.cli:export_cmd",
               "Export a checkpoint written by `train` as a model folder.", "train"),
    "figures": ("aecodec.bench.mnist_cli:figures",
                "Originals vs reconstructions, t-SNE latent map, VAE samples,...", "bench"),
    "sample": ("aecodec.bench.mnist_cli:sample",
               "New digits from the VAE: synthesis(z) with z ~ N(0, I).", "bench"),
    "bench": ("aecodec.bench.mnist_cli:bench",
              "Bytes per digit and PSNR vs JPEG, WebP, PNG, AVIF; ratio at...", "bench"),
}
DATA_HELP = "folder with the MNIST IDX files (default: $AECODEC_MNIST or ../shared/data/mnist)"


def data_guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Missing IDX files are one line naming them (click's error), not a traceback."""
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except MnistNotFoundError as e:
            raise click.ClickException(str(e)) from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


class MnistGroup(click.Group):
    """The subcommands of SUBCOMMANDS, imported on first use only."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        from .cli import missing_extra

        target, _, extra = SUBCOMMANDS[name]
        module, attr = target.split(":")
        try:
            command = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            raise click.ClickException(missing_extra(f"mnist {name}", extra, e)) from None
        invoke = command.invoke

        def guarded(sub_ctx: click.Context) -> Any:  # torch, matplotlib: when it runs
            try:
                return invoke(sub_ctx)
            except ModuleNotFoundError as e:
                raise click.ClickException(missing_extra(f"mnist {name}", extra, e)) from None

        command.invoke = guarded
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SUBCOMMANDS[name][1]) for name in sorted(SUBCOMMANDS)])


@click.group(cls=MnistGroup)
def mnist() -> None:
    """The seed autoencoders on MNIST (784-32-784, deep, sparse, conv, denoising, VAE)."""
