"""The `aecodec` command line: compress, decompress, info, models, demo (+ lazy extras).

`bench`, `train` and `mnist` live in optional packages; they are imported only when invoked,
so `aecodec --help` and the codec commands never import torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from .errors import AecodecError

LAZY = {  # name: (module:attribute, one-line help, extra that provides it)
    "bench": ("aecodec.bench.cli:bench", "Compare aecodec with other codecs on Kodak.", "bench"),
    "train": ("aecodec.export.cli:train", "Train a model and export it (needs torch).", "train"),
    "mnist": ("aecodec.export.mnist.cli:mnist", "Train and evaluate the MNIST models.", "train"),
}


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
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise click.ClickException(
                f"'aecodec {name}' is not available here ({e}); "
                f"install it with: pip install 'aecodec[{extra}]'"
            ) from None

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
@click.version_option(package_name="aecodec")
def main() -> None:
    """aecodec: a learned lossy image codec (autoencoders run with ONNX Runtime)."""


# ---- shared plumbing ------------------------------------------------------------------------


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)


def _expand(inputs: tuple[str, ...], suffixes: set[str]) -> list[str]:
    """Files named directly, plus the matching files inside named folders (sorted)."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if item != "-" and p.is_dir():
            out += [str(f) for f in sorted(p.iterdir()) if f.suffix.lower() in suffixes]
        else:
            out.append(item)
    if not out:
        raise click.ClickException("no input files found")
    return out


def _targets(files: list[str], output: str | None, suffix: str) -> list[str]:
    """Where each input goes: next to it by default; -o is a file for one input, else a folder."""
    if output == "-" and len(files) > 1:
        raise click.ClickException("-o - (stdout) takes a single input")
    if output is None:
        return ["-" if f == "-" else str(Path(f).with_suffix(suffix)) for f in files]
    if len(files) == 1 and not Path(output).is_dir() and not output.endswith(("/", "\\")):
        return [output]
    names = ["stdin" if f == "-" else Path(f).stem for f in files]
    return [str(Path(output) / (n + suffix)) for n in names]


def _read(src: str) -> bytes:
    if src == "-":
        return click.get_binary_stream("stdin").read()
    try:
        return Path(src).read_bytes()
    except OSError as e:
        raise AecodecError(f"cannot read: {e.strerror or e}") from None


def _write(dst: str, data: bytes, force: bool) -> None:
    from .imageio import write_atomic

    if dst == "-":
        click.get_binary_stream("stdout").write(data)
        return
    write_atomic(dst, data, force)


def _batch(
    pairs: list[tuple[str, str]], force: bool, work: Callable[[str, str], str]
) -> None:
    """Run `work(src, dst) -> summary` per file with a progress bar; errors are one line each."""
    from tqdm import tqdm

    _exit_on_sigterm()
    seen: dict[str, str] = {}
    for src, dst in pairs:
        key = dst if dst == "-" else str(Path(dst).resolve())
        if dst != "-" and key in seen:
            raise click.ClickException(f"{seen[key]} and {src} would both write {dst}")
        seen[key] = src
    to_stdout = any(dst == "-" for _, dst in pairs)
    failed = 0
    bar: Iterator = tqdm(pairs, unit="img", disable=len(pairs) < 2 or None, file=sys.stderr)
    for src, dst in bar:
        try:
            if dst != "-" and Path(dst).exists() and not force:
                raise FileExistsError(f"{dst} exists (use --force to overwrite)")
            line = work(src, dst)
            if len(pairs) == 1:
                click.echo(line, err=to_stdout)
        except (AecodecError, OSError) as e:
            failed += 1
            msg = str(e) if isinstance(e, AecodecError | FileExistsError) else (e.strerror or e)
            tqdm.write(f"Error: {src}: {msg}", file=sys.stderr)
    if failed:
        sys.exit(1)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into an exception so a named temporary output is cleaned up (the
    unnamed O_TMPFILE outputs used on Linux need no cleanup, even on SIGKILL)."""
    import signal
    import threading

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


model_option = click.option("--model", "model_name", metavar="NAME|PATH",
                            help="Shipped model name or model folder (default: shipped default).")
force_option = click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="CPU threads for ONNX Runtime (default: all).")


def _codec(model_name: str | None, threads: int | None, profile: str = "full"):
    from .codec import get_codec

    try:
        return get_codec(model_name, threads, profile)
    except AecodecError as e:
        raise click.ClickException(str(e)) from None


# ---- commands -------------------------------------------------------------------------------


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file (one input) or folder; - for stdout.")
@click.option("-q", "--quality", type=click.FloatRange(1, 100), default=None,
              help="Quality 1..100, higher is better (default 75).")
@click.option("--bpp", type=click.FloatRange(0, min_open=True), default=None,
              help="Target bits per pixel: picks the highest quality that fits.")
@click.option("--profile", type=click.Choice(["full", "compact"]), default="full",
              show_default=True, help="Stream profile: compact = 1-3 byte header and a "
              "byte-granular coder, for the fixed-size digit models (integer qualities).")
@model_option
@threads_option
@force_option
def compress(inputs, output, quality, bpp, profile, model_name, threads, force) -> None:
    """Compress images (files, folders, or - for stdin) to .aec streams."""
    from .codec import DEFAULT_QUALITY
    from .imageio import IMAGE_SUFFIXES, read_image

    if quality is not None and bpp is not None:
        raise click.UsageError("give either --quality or --bpp, not both")
    files = _expand(inputs, IMAGE_SUFFIXES)
    codec = _codec(model_name, threads, profile)

    def work(src: str, dst: str) -> str:
        image = read_image(_read(src) if src == "-" else src)
        if bpp is not None:
            enc = codec.encode_to_bpp(image, bpp)
        else:
            enc = codec.encode(image, DEFAULT_QUALITY if quality is None else quality)
        _write(dst, enc.data, force)
        q = "-" if enc.quality is None else f"{enc.quality:g}"
        return f"{src} -> {dst}: {len(enc.data)} bytes, {enc.bpp:.4f} bpp, quality {q}"

    _batch(list(zip(files, _targets(files, output, ".aec"), strict=True)), force, work)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image (format from its extension, PNG by default) "
              "or folder; - for stdout.")
@model_option
@threads_option
@force_option
def decompress(inputs, output, model_name, threads, force) -> None:
    """Decode .aec streams to images (PNG unless -o names another format)."""
    from . import container
    from .imageio import encode_image, format_for
    from .model import find_by_id

    files = _expand(inputs, {".aec"})

    def work(src: str, dst: str) -> str:
        data = _read(src)
        if model_name:
            codec = _codec(model_name, threads)
        else:
            header, _ = container.unpack(data)
            codec = _codec(str(find_by_id(header.model_id).path), threads)
        pixels = codec.decompress(data)
        _write(dst, encode_image(pixels, "PNG" if dst == "-" else format_for(dst)), force)
        return f"{src} -> {dst}: {pixels.shape[1]}x{pixels.shape[0]}"

    _batch(list(zip(files, _targets(files, output, ".png"), strict=True)), force, work)


@main.command()
@click.argument("file")
def info(file) -> None:
    """Show a stream's header: model, size, quality, sections, bits per pixel."""
    from .codec import stream_info

    try:
        fields = stream_info(_read(file))
    except AecodecError as e:
        raise click.ClickException(f"{file}: {e}") from None
    for key, value in fields.items():
        if key == "bpp":
            value = f"{value:.4f}"
        elif key == "model" and value is None:
            value = "(not installed)"
        click.echo(f"{key:15} {value}")


@main.command()
def models() -> None:
    """List the shipped models."""
    from .model import default_info, shipped

    infos = shipped()
    if not infos:
        click.echo("no models installed")
        return
    try:
        default = default_info().name
    except AecodecError:
        default = None
    for i in infos:
        size = f"{i.fixed_size[1]}x{i.fixed_size[0]}" if i.fixed_size else "any size"
        rng = f"{i.bpp_range[0]:g}-{i.bpp_range[1]:g} bpp" if i.bpp_range else "-"
        mark = " (default)" if i.name == default else ""
        click.echo(f"{i.name}{mark}: {i.family}, id {i.id}, {i.channels} channel(s), {size}, "
                   f"{i.levels} rate level(s), {rng}")
        if i.description:
            click.echo(f"    {i.description}")
        for key, value in i.results.items():
            click.echo(f"    {key}: {_summary(value)}")


def _summary(value: object) -> str:
    """One line for a manifest result: its BD-rate and image count when it is a bench entry."""
    if isinstance(value, dict) and "bd_rate_vs_jpeg" in value:
        bd = value["bd_rate_vs_jpeg"]
        bd_text = f"{bd:+.1%}" if isinstance(bd, float) else "n/a"
        return f"BD-rate vs JPEG {bd_text} (PSNR, {value.get('images')} images)"
    return str(value)


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".",
              help="Folder for the outputs (default: current folder).")
@click.option("-q", "--quality", type=click.FloatRange(1, 100), default=None,
              help="Quality 1..100 (default 75).")
@model_option
@threads_option
@force_option
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


if __name__ == "__main__":
    main(prog_name="aecodec")
