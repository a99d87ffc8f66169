"""One file coded and put in place: the checks before, the atomic write, the `Outcome`.

Every runner ends a file here (`finish`), in whichever process writes it, so a file is
reported the same way and written whole or not at all however the job runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from ..errors import AecodecError
from .coder import Coded, Coder, Mode, error_text
from .fileio import occupied, read, write


@dataclass(frozen=True)
class Outcome:
    """What happened to one input: done, skipped (output exists) or failed (with why)."""

    src: str
    dst: str
    status: Literal["done", "skipped", "failed"]
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    line: str = ""  # the CLI's one-line report of a done file
    error: str = ""
    notes: tuple[str, ...] = ()  # what the image lost (LossWarning messages)


def output_format(dst: str, mode: Mode, fmt: str | None = None) -> str:
    """The image format a decompressed file is written in: `fmt` (--format), else from its
    name (PNG for stdout or no extension)."""
    from ..imageio import format_for

    if mode == "compress":
        return "PNG"
    return fmt or ("PNG" if dst == "-" else format_for(dst))


def done_line(src: str, dst: str, mode: Mode, coded: Coded) -> str:
    """The one line a done file gets (made where the quality chosen is known)."""
    if mode == "compress":
        q = "-" if coded.quality is None else f"{coded.quality:g}"
        bpp = len(coded.data) * 8 / coded.pixels
        return f"{src} -> {dst}: {len(coded.data)} bytes, {bpp:.4f} bpp, quality {q}"
    return f"{src} -> {dst}: {coded.width}x{coded.height}"


def finish(src: str, dst: str, mode: Mode, coded: Coded, bytes_in: int, force: bool) -> Outcome:
    """Write a coded file into place (atomically) and describe it."""
    write(dst, coded.data, force)
    return Outcome(src, dst, "done", bytes_in, len(coded.data), coded.pixels,
                   done_line(src, dst, mode, coded), notes=coded.notes)


def code_file(coder: Coder, src: str, dst: str) -> Outcome:
    """Code one file with `coder` in this process and write the output; any error becomes a
    failed `Outcome` (one bad file must not stop the others)."""
    s = coder.settings
    try:
        if dst != "-" and occupied(dst) and not s.force:
            raise FileExistsError(f"{dst} exists (use --force to overwrite)")
        if s.mode == "compress" and src != "-":
            try:
                size = os.stat(src).st_size
            except OSError as e:
                raise AecodecError(f"cannot read: {e.strerror or e}") from None
            source: bytes | str = src
        else:
            source = read(src)
            size = len(source)
        coded = coder.transform(source, output_format(dst, s.mode, s.fmt))
        return finish(src, dst, s.mode, coded, size, s.force)
    except Exception as e:
        return Outcome(src, dst, "failed", error=error_text(e))
