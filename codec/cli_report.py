"""How the CLI shows a folder job: the progress bar, a line per file, the summary line.

Kept out of `aecodec.batch`, which only reports outcomes, so a job run from Python or on
Ray draws nothing on the terminal; click and tqdm are the CLI's.
"""

from __future__ import annotations

import sys

import click

from .batch import Outcome, Summary

PROGRESS_DELAY = 1.0  # seconds before one file's bar shows: a fast file draws nothing


def one_line(text: str) -> str:
    """A report line that stays one line: control characters (a newline in a file name, say,
    which could split an `Error:` line or forge another) are written as escapes (\\n,
    \\x1b, \\u2028)."""
    import unicodedata

    if text.isprintable():
        return text
    out = []
    for c in text:
        if c != " " and unicodedata.category(c) in ("Cc", "Zl", "Zp"):
            out.append(repr(c)[1:-1] if c in "\n\r\t" else
                       f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


class Report:
    """The `report` and `started` of `batch.run` for one CLI job: errors and loss warnings
    always (stderr), a line per file for one input or `verbose`, a progress bar on stderr for
    more than one input unless `quiet`. With stdout taken by the data (`to_stdout`), the
    lines go to stderr."""

    def __init__(self, total: int, verbose: bool, quiet: bool, to_stdout: bool) -> None:
        self.total, self.verbose, self.quiet, self.to_stdout = total, verbose, quiet, to_stdout
        self.bar = None
        self.step_bar = None  # one input's own stages (progress)

    def started(self, skipped: int) -> None:
        """Show the bar, with the inputs left out by --skip-existing already counted."""
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=skipped, unit="img", file=sys.stderr,
                        disable=self.quiet or self.total < 2 or None)

    def __call__(self, o: Outcome) -> None:
        from tqdm import tqdm

        if self.bar is not None:
            self.bar.update()
        if self.step_bar is not None:  # the file's own stages end with it
            self.step_bar.close()
            self.step_bar = None
        if o.notes:  # what the image lost (LossWarning), one line
            tqdm.write(one_line(f"Warning: {o.src}: {'; '.join(o.notes)}"), file=sys.stderr)
        if o.status == "failed":
            tqdm.write(one_line(f"Error: {o.src}: {o.error}"), file=sys.stderr)
        elif (self.total == 1 or self.verbose) and not self.quiet:
            line = one_line(o.line or f"{o.src}: skipped, {o.dst} exists")
            if self.total == 1:
                click.echo(line, err=self.to_stdout)
            else:
                tqdm.write(line, file=sys.stderr if self.to_stdout else sys.stdout)

    def progress(self, stage: str, done: int, total: int) -> None:
        """One input's own progress (aecodec.progress): a bar per stage on stderr (effort's
        steps, a large image's squares), shown once the file has taken PROGRESS_DELAY."""
        from tqdm import tqdm

        if self.quiet or self.total != 1:
            return
        if done == 0:
            if self.step_bar is not None:
                self.step_bar.close()
            self.step_bar = tqdm(total=total, desc=stage, unit="step", file=sys.stderr,
                                 delay=PROGRESS_DELAY, leave=False)
        elif self.step_bar is not None:
            self.step_bar.update(done - self.step_bar.n)

    def close(self) -> None:
        if self.step_bar is not None:
            self.step_bar.close()
        if self.bar is not None:
            self.bar.close()


def summary_line(summary: Summary) -> str:
    """The line a job of several files ends with (and an interrupted one, on stderr)."""
    verb = "compressed" if summary.mode == "compress" else "decompressed"
    if summary.interrupted:
        verb = f"interrupted: {verb}"
    return (f"{verb} {summary.done} files ({summary.failed} failed, {summary.skipped} "
            f"skipped): {summary.bytes_in:,} bytes in, {summary.bytes_out:,} bytes out, "
            f"mean {summary.bpp:.4f} bpp, {summary.seconds:.1f} s")
