"""The `aecodec` command line: compress, decompress, info, models, demo (+ lazy extras).

`bench`, `train` and `mnist` live in optional packages; they are imported only when invoked,
so `aecodec --help` and the codec commands never import torch.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .errors import AecodecError
from .output_options import check_stream_name
from .top_end import TopEndHelp

if TYPE_CHECKING:
    from .batch import Runner

LAZY = {  # name: (module:attribute, one-line help, extra that provides it)
    "bench": ("aecodec.bench.cli:bench", "Compare aecodec with other codecs on Kodak.", "bench"),
    "train": ("aecodec.export.cli:train", "Train a model and export it (needs torch).", "train"),
    "mnist": ("aecodec.mnist_cli:mnist", "Train and evaluate the MNIST models.", "train"),
    "tools": ("aecodec.bench.tools:tools", "The bench's tools: fuzzers, large images, profiles.",
              "bench"),
}


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`aecodec --version`: the package, the ONNX Runtime it runs on and the default model
    (read only when asked, so other commands do not pay for it)."""
    if not value or ctx.resilient_parsing:
        return
    import onnxruntime

    from . import __version__
    from .model import default_info

    try:
        default = default_info()
        model = f"{default.name} ({default.id})"
    except AecodecError as e:
        model = f"none ({e})"
    click.echo(f"aecodec {__version__}\nonnxruntime {onnxruntime.__version__}\n"
               f"default model {model}")
    ctx.exit()


def missing_extra(name: str, extra: str, e: ImportError) -> str:
    """One line for a command whose optional packages are not installed."""
    module = getattr(e, "name", None) or str(e)
    return (f"'aecodec {name}' needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'aecodec[{extra}]', or from a checkout pip install -e '.[{extra}]'")


class LazyGroup(click.Group):
    """A click group whose optional subcommands are imported on first use only."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in LAZY:
            return super().get_command(ctx, name)
        target, _, extra = LAZY[name]
        module, attr = target.split(":")
        try:
            command = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise click.ClickException(missing_extra(name, extra, e)) from None
        invoke = command.invoke

        def guarded(sub_ctx: click.Context):  # torch etc. are imported when the command runs
            try:
                return invoke(sub_ctx)
            except ModuleNotFoundError as e:
                raise click.ClickException(missing_extra(name, extra, e)) from None

        command.invoke = guarded
        return command

    def invoke(self, ctx: click.Context):
        """Ctrl-C outside a folder job's loop (opening the model, listing folders, training)
        also exits 130, as a shell expects, not click's 'Aborted!' with status 1."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except click.ClickException as e:  # one line, whatever a file name holds
            from .cli_report import one_line

            e.message = one_line(e.message)
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY:
                rows.append((name, LAZY[name][1]))
            else:
                rows.append((name, self.commands[name].get_short_help_str(80)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version, ONNX Runtime's, the default model.")
def main() -> None:
    """aecodec: a learned lossy image codec (autoencoders run with ONNX Runtime)."""


# ---- shared plumbing ------------------------------------------------------------------------


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)


def _run(inputs: tuple[str, ...], output: str | None, settings, suffixes: set[str],
         jobs: int | None, skip_existing: bool, ray: bool, ray_address: str | None,
         verbose: bool = False, quiet: bool = False) -> None:
    """The shared body of compress and decompress: plan, pick the runner, run (aecodec.batch),
    report (cli_report). Exit status: 0, 1 if any file failed, 130 after Ctrl-C (with what
    was done)."""
    from . import batch
    from .cli_report import Report, summary_line

    if skip_existing and settings.force:
        raise click.UsageError("give either --skip-existing or --force, not both")
    try:
        if settings.model is not None:  # a bad --model is one error, not one per file
            from .model import find

            find(settings.model)
        suffix = batch.SUFFIX[settings.mode]
        if settings.fmt:
            from .imageio import FORMAT_SUFFIX

            suffix = FORMAT_SUFFIX[settings.fmt]
        mark = batch.DECODED if settings.mode == "decompress" else ""
        pairs = batch.plan(batch.expand(inputs, suffixes), output, suffix, mark)
        batch.check_writable(pairs)
    except AecodecError as e:
        raise click.ClickException(str(e)) from None
    to_stdout = any(dst == "-" for _, dst in pairs)
    if to_stdout and click.get_binary_stream("stdout").isatty():
        raise click.ClickException("refusing to write binary data to a terminal: redirect "
                                   "stdout (> file) or give -o FILE")

    from .progress import listening

    report = Report(len(pairs), verbose, quiet, to_stdout)
    batch.exit_on_sigterm()
    try:
        with listening(report.progress):  # one input, coded here: its own steps
            summary = batch.run(pairs, settings, choose_runner(jobs, ray, ray_address),
                                skip_existing, report=report, started=report.started)
    except AecodecError as e:
        raise click.ClickException(str(e)) from None
    finally:
        report.close()
    if summary.interrupted:
        click.echo(summary_line(summary), err=True)
        sys.exit(130)
    if len(pairs) > 1 and not quiet:
        click.echo(summary_line(summary), err=to_stdout)
    if summary.failed:
        sys.exit(1)


def choose_runner(jobs: int | None, ray: bool = False,
                  ray_address: str | None = None) -> Runner:
    """The runner a folder job gets: Ray actors with --ray or --ray-address, this process
    with -j 1, else worker processes (-j N, default one per CPU; a single file or
    stdin/stdout still runs in this process)."""
    from . import batch

    if ray or ray_address:
        from .ray import RayRunner

        return RayRunner(jobs, ray_address)
    if jobs == 1:
        return batch.InProcess()
    return batch.ProcessPool(jobs)


OUTPUT_FORMATS = ["png", "jpeg", "webp", "avif", "jxl", "tiff", "bmp"]
model_option = click.option("--model", "model_name", metavar="NAME|PATH",
                            help="Shipped model name or model folder (default: shipped default).")
force_option = click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="CPU threads for ONNX Runtime, per worker "
                              "(default: all, shared among the workers).")


def _codec(model_name: str | None, threads: int | None, profile: str = "full"):
    from .codec import get_codec

    try:
        return get_codec(model_name, threads, profile)
    except AecodecError as e:
        raise click.ClickException(str(e)) from None


# ---- commands -------------------------------------------------------------------------------


def batch_options(short_quiet: bool = False) -> Callable[[Callable], Callable]:
    """The options compress and decompress share for many files (`short_quiet`: -q also
    means --quiet, for decompress, whose quality has no short form; compress's -q is its
    quality)."""
    quiet = ("-q", "--quiet") if short_quiet else ("--quiet",)
    return lambda f: _batch_options(f, quiet)


def _batch_options(f: Callable, quiet: tuple[str, ...]) -> Callable:
    for option in reversed([
        click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
                     help="Worker processes (default: the CPU count); with --ray, actors "
                     "(default: the cluster's CPUs)."),
        click.option("--skip-existing", is_flag=True,
                     help="Skip inputs whose output exists (resume a stopped run)."),
        click.option("--ray", "use_ray", is_flag=True,
                     help="Run on Ray (a local one unless --ray-address or RAY_ADDRESS)."),
        click.option("--ray-address", metavar="ADDR", default=None,
                     help="Join the Ray cluster at ADDR (implies --ray)."),
        click.option("-v", "--verbose", is_flag=True,
                     help="One line per file, also for many files."),
        click.option(*quiet, "quiet", is_flag=True,
                     help="No progress bar, per-file lines or summary (errors and warnings "
                     "still go to stderr)."),
    ]):
        f = option(f)
    return f


def _check_trainer(model_name: str | None) -> None:
    """The overfit family trains with torch at every effort: one clear error up front."""
    from . import effort as E
    from .model import find

    try:
        info = find(model_name)
    except AecodecError:
        return  # said per file by the job
    if info.family == "overfit" and not E.has_torch():
        raise click.ClickException(f"the overfit family trains each image with torch: "
                                   f"{E.INSTALL}")


def _check_effort(model_name: str | None, effort: int) -> None:
    """One error line before any file: a model that cannot be optimised, or no torch."""
    from . import effort as E
    from .model import find

    try:
        info = find(model_name)
        E.check_model(info, effort)
    except AecodecError as e:
        raise click.ClickException(str(e)) from None
    if info.fixed_size is None and not E.has_torch():
        raise click.ClickException(f"--effort {effort} needs torch: {E.INSTALL}")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file (one input) or folder; - for stdout.")
@click.option("-q", "--quality", type=click.FloatRange(1, 100), default=None, cls=TopEndHelp,
              help="Quality 1..100, higher is better (default 75).")
@click.option("--bpp", type=click.FloatRange(0, min_open=True), default=None,
              help="Target bits per pixel: picks the highest quality that fits.")
@click.option("--strict-bpp", is_flag=True,
              help="With --bpp: fail (exit 1, nothing written) when even quality 1 is over "
              "the target, or quality 100 under it, instead of writing it with a warning.")
@click.option("--strip", is_flag=True,
              help="Leave out the ICC profile, EXIF, XMP and DPI (the orientation is still "
              "applied).")
@click.option("--profile", type=click.Choice(["full", "compact"]), default="full",
              show_default=True, help="Stream profile: compact = 1-3 byte header and a "
              "byte-granular coder, for the fixed-size digit models (integer qualities).")
@click.option("--effort", type=click.IntRange(0, 4), default=0, show_default=True,
              help="Encoder effort: 1-4 optimise each image's latents for its decoder "
              "(smaller streams, same decoder; seconds to minutes per image, docs/effort.md; "
              "photo models need the 'effort' extra). 0 is the fast encoder. For the "
              "overfit model, the training length: 2k, 4k, 8k, 16k, 32k steps "
              "(docs/overfit.md).")
@click.option("--device", default=None, metavar="cpu|cuda",
              help="Where the overfit family trains each image (default cpu; cuda when "
              "torch sees a GPU). Other models ignore it.")
@model_option
@threads_option
@force_option
@batch_options()
def compress(inputs, output, quality, bpp, strict_bpp, strip, profile, effort, device,
             model_name, threads, force, jobs, skip_existing, use_ray, ray_address, verbose,
             quiet) -> None:
    """Compress images (files, folders, or - for stdin) to .aec streams.

    Folders are searched recursively; with -o their tree is mirrored in the output folder.
    Alpha, ICC profile, EXIF, XMP and DPI are kept; what cannot be (16-bit samples, frames
    after the first) is said on stderr.
    """
    from .batch import Settings
    from .imageio import IMAGE_SUFFIXES

    if quality is not None and bpp is not None:
        raise click.UsageError("give either --quality or --bpp, not both")
    if profile == "compact":  # one clear error up front, not one per file
        from .container import compact_index
        from .model import find

        try:
            info = find(model_name)
        except AecodecError as e:
            raise click.ClickException(str(e)) from None
        if compact_index(info.id) is None:
            raise click.ClickException(f"model '{info.name}' has no compact-profile index "
                                       "(only the shipped digit models have one)")
    if strict_bpp and bpp is None:
        raise click.UsageError("--strict-bpp goes with --bpp")
    check_stream_name(output)
    if effort:
        _check_effort(model_name, effort)
    if device is not None:  # read by the overfit family's encoder, in workers too
        os.environ["AECODEC_DEVICE"] = device
    _check_trainer(model_name)
    settings = Settings("compress", model_name, quality, bpp, threads, force, strip, profile,
                        strict_bpp=strict_bpp, effort=effort)
    _run(inputs, output, settings, IMAGE_SUFFIXES, jobs, skip_existing, use_ray, ray_address,
         verbose, quiet)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image (format from its extension, PNG by default) "
              "or folder; - for stdout.")
@click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS, case_sensitive=False),
              default=None, help="Output format (default: from -o's extension, else PNG); "
              "sets the suffix of a folder's outputs. JXL needs pillow-jxl-plugin.")
@click.option("--quality", "out_quality", type=click.IntRange(1, 100), default=None,
              help="Quality of lossy outputs (JPEG, WebP, AVIF, JXL) [default: 95].")
@model_option
@threads_option
@force_option
@batch_options(short_quiet=True)
def decompress(inputs, output, fmt, out_quality, model_name, threads, force, jobs,
               skip_existing, use_ray, ray_address, verbose, quiet) -> None:
    """Decode .aec streams to images (PNG unless -o names another format).

    Without -o, photo.aec is written as photo.decoded.png, beside it (never over the photo
    it was made from). Alpha comes back; ICC profile, EXIF, XMP and DPI are written where
    the output format holds them (docs/cli.md), and a warning says what it cannot hold.

    Folders are searched recursively; with -o their tree is mirrored in the output folder.
    """
    from .batch import Settings
    from .output_options import check_output_options

    if fmt == "jxl":
        from .imageio import register_plugins

        try:
            register_plugins("JXL")
        except AecodecError as e:
            raise click.ClickException(str(e)) from None
    check_output_options(output, fmt, out_quality)
    if output and not Path(output).is_dir() and Path(output).suffix.lower() == ".aec":
        raise click.UsageError(f"-o {output} names a stream, but decompress writes images: "
                               "give an image name (x.png) or a folder")
    settings = Settings("decompress", model_name, threads=threads, force=force,
                        fmt=fmt.upper() if fmt else None, out_quality=out_quality)
    _run(inputs, output, settings, {".aec"}, jobs, skip_existing, use_ray, ray_address,
         verbose, quiet)


@main.command()
@click.argument("files", nargs=-1, required=True)
def info(files) -> None:
    """Show streams' headers: model, size, quality, sections, bits per pixel.

    Folders are searched recursively for .aec files. The model's top quality and what it
    reaches are shown when the model is installed and measured.
    """
    from .batch import expand, read
    from .cli_report import one_line
    from .codec import stream_info

    try:
        files = [f for f, _ in expand(files, {".aec"})]
    except AecodecError as e:
        raise click.ClickException(f"{', '.join(files)}: {e} (.aec)") from None
    failed = False
    for i, file in enumerate(files):
        try:
            fields = stream_info(read(file))
        except AecodecError as e:
            click.echo(one_line(f"Error: {file}: {e}"), err=True)
            failed = True
            continue
        if len(files) > 1:
            click.echo(("\n" if i else "") + one_line(f"{'file':15} {file}"))
        for key, value in fields.items():
            if key == "bpp":
                value = f"{value:.4f}"
            elif key == "model" and value is None:
                value = "(not installed)"
            click.echo(f"{key:15} {value}")
        top = _top_end_of(fields["model_id"])
        if top is not None:
            click.echo(f"{'top_quality':15} {top.text()}")
    if failed:
        sys.exit(1)


def _top_end_of(model_id: str):
    """The installed model's measured top end, or None."""
    from .model import find_by_id
    from .top_end import top_end

    try:
        return top_end(find_by_id(model_id))
    except AecodecError:
        return None


@main.command()
def models() -> None:
    """List the shipped models, photo models and digit models apart.

    For each: its rate range, its measured results and what its top quality reaches."""
    from .model import default_info, shipped
    from .top_end import top_end

    infos = shipped()
    if not infos:
        click.echo("no models installed")
        return
    try:
        default = default_info().name
    except AecodecError:
        default = None
    groups = [("Photo models (any size, RGB or gray):", [i for i in infos if not i.fixed_size]),
              ("Digit models (fixed size, for MNIST digits; docs/mnist.md):",
               [i for i in infos if i.fixed_size])]
    for n, (title, group) in enumerate(g for g in groups if g[1]):
        click.echo(("\n" if n else "") + title)
        for i in group:
            size = f"{i.fixed_size[1]}x{i.fixed_size[0]}" if i.fixed_size else "any size"
            rng = f"{i.bpp_range[0]:g}-{i.bpp_range[1]:g} bpp" if i.bpp_range else "-"
            mark = " (default)" if i.name == default else ""
            click.echo(f"  {i.name}{mark}: {i.family}, id {i.id}, {i.channels} channel(s), "
                       f"{size}, {i.levels} rate level(s), {rng}")
            if i.description:
                click.echo(f"      {i.description}")
            top = top_end(i)
            if top is not None:
                click.echo(f"      top: {top.text()}")
            for key, value in i.results.items():
                click.echo(f"      {key}: {_summary(value)}")


def _summary(value: object) -> str:
    """One line for a manifest result: its BD-rate and image count when it is a bench entry."""
    if isinstance(value, dict) and "bd_rate_vs_jpeg" in value:
        bd = value["bd_rate_vs_jpeg"]
        bd_text = f"{bd:+.1%}" if isinstance(bd, float) else "n/a"
        return f"BD-rate vs JPEG {bd_text} (PSNR, {value.get('images')} images)"
    return str(value)


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="aecodec-demo",
              help="Folder for the outputs, made if missing (default: ./aecodec-demo); a "
              "rerun replaces the demo's own outputs there.")
@click.option("-q", "--quality", type=click.FloatRange(1, 100), default=None,
              help="Quality 1..100 (default 75).")
@model_option
@threads_option
@click.option("-f", "--force", is_flag=True,
              help="Overwrite kodim23.aec and kodim23-decoded.png in --out even when the demo "
              "did not write them.")
def demo(out_dir, quality, model_name, threads, force) -> None:
    """Compress the bundled sample photo and compare with JPEG at the same PSNR."""
    from .codec import DEFAULT_QUALITY
    from .demo import run

    try:
        report = run(_codec(model_name, threads), Path(out_dir),
                     DEFAULT_QUALITY if quality is None else quality, force)
    except (AecodecError, FileExistsError) as e:
        raise click.ClickException(str(e)) from None
    for line in report:
        click.echo(line)


@main.command("web-export")
@click.argument("model_dir")
@click.argument("out_dir", type=click.Path(file_okay=False))
def web_export(model_dir, out_dir) -> None:
    """Write what the browser decoder (web/) needs from a model folder (or a shipped model's
    name; `all`: every shipped model it decodes) into OUT_DIR/<id>/ and OUT_DIR/index.json."""
    from .model import Model, find, shipped
    from .web_export import FAMILIES, export, note_unsupported

    try:
        infos = shipped() if model_dir == "all" else [find(model_dir)]
        for info in infos:
            if model_dir == "all" and info.family not in FAMILIES:
                note_unsupported(info, Path(out_dir))
                click.echo(f"{info.name} ({info.id}): not decoded in the browser (noted)")
                continue
            folder = export(Model(info), Path(out_dir))
            click.echo(f"{info.name} ({info.id}): {folder}")
    except (AecodecError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None


if __name__ == "__main__":
    main(prog_name="aecodec")
