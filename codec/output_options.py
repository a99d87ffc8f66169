"""Checks of the output options before any coding: decompress's --format against -o's name
and a --quality that no lossless output would use; compress's -o against the stream it writes."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import AecodecError


def named_format(output: str | None) -> str | None:
    """The format -o's file name says (x.bmp: BMP), or None for stdout, a folder or a name
    without a known image suffix (out.dat, a folder to be made)."""
    if not output or output == "-" or Path(output).is_dir() or not Path(output).suffix:
        return None
    from .imageio import format_for

    try:
        return format_for(output)
    except AecodecError:
        return None


def check_output_options(output: str | None, fmt: str | None, quality: int | None) -> None:
    """Refuse `-o x.bmp --format jpeg` (a file whose name says one format and holds another is
    a trap for whoever opens it later); warn when --quality would change nothing."""
    named = named_format(output)
    if fmt and named and named != fmt.upper():
        raise click.UsageError(f"-o {output} names a {named} file but --format is {fmt}: "
                               "give one of them, or matching ones")
    from .imageio import LOSSY_FORMATS

    unknown = named is None and output not in (None, "-") and bool(Path(output).suffix) \
        and not Path(output).is_dir()  # out.dat, or x.jxl without its plugin: said later
    written = fmt.upper() if fmt else named or "PNG"
    if quality is not None and not unknown and written not in LOSSY_FORMATS:
        click.echo(f"Warning: --quality {quality} is unused: {written} outputs are lossless "
                   "(it applies to JPEG, WebP, AVIF and JXL)", err=True)


def check_stream_name(output: str | None) -> None:
    """`compress x.png -o out.webp` would put a stream in a file whose name says WebP: a trap
    for whoever opens it. An image suffix on -o is refused; .aec or any other name is kept."""
    from .batch import FILE_SUFFIXES

    if output and output != "-" and not Path(output).is_dir():
        suffix = Path(output).suffix.lower()
        fmt = named_format(output)
        if suffix != ".aec" and (fmt is not None or suffix in FILE_SUFFIXES):
            raise click.UsageError(f"-o {output} names a {fmt or suffix} image, but compress "
                                   "writes .aec streams: name the output .aec (decompress "
                                   "writes images)")
