"""One job: leave out what a stopped run wrote, feed the rest to a runner, total the outcomes,
and stop cleanly on Ctrl-C with what was written counted.

No presentation here: the caller's `report` sees each outcome and `started` the count before
coding begins (the CLI draws its progress bar and lines from them, codec/cli_report.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .coder import Mode, Settings
from .outcome import Outcome
from .planning import Pair, resume
from .runners import ProcessPool, Runner


@dataclass
class Summary:
    """Totals over a job (the CLI's summary line is `cli_report.summary_line`)."""

    mode: Mode
    done: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    seconds: float = 0.0
    failures: list[Outcome] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C: the totals are what was done before

    def add(self, o: Outcome) -> None:
        if o.status == "done":
            self.done += 1
            self.bytes_in += o.bytes_in
            self.bytes_out += o.bytes_out
            self.pixels += o.pixels
        elif o.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append(o)

    @property
    def bpp(self) -> float:
        """Bits of the streams per pixel over all done files (a pixel-weighted mean)."""
        stream = self.bytes_out if self.mode == "compress" else self.bytes_in
        return stream * 8 / self.pixels if self.pixels else 0.0


def run(
    pairs: list[Pair],
    settings: Settings,
    runner: Runner | None = None,
    skip_existing: bool = False,
    report: Callable[[Outcome], None] | None = None,
    started: Callable[[int], None] | None = None,
) -> Summary:
    """Code every (input, output) pair with `runner` (default: a `ProcessPool` of one
    worker per CPU) and return the totals.

    `started(skipped)` is called once the outputs that exist are left out (`skip_existing`),
    before any coding; `report` then sees the outcome of each file coded, as it ends.
    """
    start = time.perf_counter()
    summary = Summary(settings.mode)
    todo, skipped = resume(pairs, skip_existing)
    for src, dst in skipped:
        summary.add(Outcome(src, dst, "skipped"))
    if started:
        started(summary.skipped)
    outcomes: Iterator[Outcome] = iter(())
    try:
        outcomes = (runner or ProcessPool()).outcomes(todo, settings)
        for o in outcomes:
            summary.add(o)
            if report:
                report(o)
    except KeyboardInterrupt:  # Ctrl-C: stop the workers, keep what is written, say so
        summary.interrupted = True
        for o in _drain(outcomes):
            summary.add(o)
            if report:
                report(o)
    summary.seconds = time.perf_counter() - start
    return summary


def _drain(outcomes: Iterator[Outcome]) -> Iterator[Outcome]:
    """After Ctrl-C: the outcomes of files that were in flight and still got written (a pool
    finishes them while it shuts down), so the summary counts every file on disk."""
    throw = getattr(outcomes, "throw", None)
    if throw is None:
        return
    try:
        yield throw(KeyboardInterrupt)  # a generator already ended by it re-raises at once
        yield from outcomes
    except (KeyboardInterrupt, StopIteration):  # StopIteration: nothing was left
        pass
