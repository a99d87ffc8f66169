"""Many files as one job: the folder walk, worker processes, resume, one summary.

The CLI's `compress` and `decompress` hand their inputs here. Each worker process opens its
model once (an initializer) and codes whole files; outputs are written atomically by
`imageio.write_atomic`, so a killed run leaves only complete files and `skip_existing` resumes
it. One bad file becomes one failed `Outcome` and the rest carry on. Workers are started with
the `spawn` method: forking a process whose ONNX Runtime threads are running can deadlock
(see `aecodec.bench.fuzz`). `aecodec.ray` runs the same `Coder` on Ray actors.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import AecodecError

Mode = Literal["compress", "decompress"]
SUFFIX = {"compress": ".aec", "decompress": ".png"}  # output suffix when -o is a folder


def _file_suffixes() -> set[str]:
    from .imageio import FORMAT_SUFFIX, IMAGE_SUFFIXES

    return {".aec", ".jxl", ".avif", *IMAGE_SUFFIXES, *FORMAT_SUFFIX.values()}


FILE_SUFFIXES = _file_suffixes()  # an -o with one of these names a file, not a folder


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to open its model and code one file (picklable)."""

    mode: Mode
    model: str | None = None  # name or folder; None: the default (compress) or by stream id
    quality: float | None = None
    bpp: float | None = None
    threads: int | None = None  # ONNX Runtime threads per worker
    force: bool = False
    strip: bool = False  # compress: leave out ICC profile, EXIF, XMP and DPI
    profile: str = "full"  # compress: "compact" for the fixed-size digit models
    strict_bpp: bool = False  # compress: a --bpp target that cannot be met fails the file
    fmt: str | None = None  # decompress: output format (default: from the name, else PNG)
    out_quality: int | None = None  # decompress: lossy outputs' quality (imageio's default)
    effort: int = 0  # compress: encoder-side optimisation level (docs/effort.md)


@dataclass(frozen=True)
class Coded:
    """One coded file: its output bytes, pixel count and (compress) the quality chosen."""

    data: bytes
    pixels: int
    width: int
    height: int
    quality: float | None = None
    notes: tuple[str, ...] = ()  # what the image lost on the way (LossWarning messages)


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


@dataclass
class Summary:
    """Totals over a job; `line()` is the summary the CLI prints."""

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

    def line(self) -> str:
        verb = "compressed" if self.mode == "compress" else "decompressed"
        if self.interrupted:
            verb = f"interrupted: {verb}"
        return (f"{verb} {self.done} files ({self.failed} failed, {self.skipped} skipped): "
                f"{self.bytes_in:,} bytes in, {self.bytes_out:,} bytes out, "
                f"mean {self.bpp:.4f} bpp, {self.seconds:.1f} s")


# ---- which files, written where ----------------------------------------------------------------


def expand(
    inputs: tuple[str, ...] | list[str], suffixes: set[str]
) -> list[tuple[str, Path | None]]:
    """Each input file with its path relative to the folder it was found in (None for files
    named directly): folders are walked recursively, sorted, hidden names left out."""
    out: list[tuple[str, Path | None]] = []
    for item in inputs:
        root = Path(item)
        if item == "-" or not root.is_dir():
            out.append((item, None))
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                f = Path(folder) / name
                if not name.startswith(".") and f.suffix.lower() in suffixes:
                    out.append((str(f), f.relative_to(root)))
    if not out:
        raise AecodecError("no input files found")
    return out


def plan(
    found: list[tuple[str, Path | None]], output: str | None, suffix: str
) -> list[tuple[str, str]]:
    """(input, output) pairs: outputs next to the inputs by default; with -o, one input named
    directly may go to a file, otherwise -o is a folder that mirrors the input folders' trees."""
    if sum(f == "-" for f, _ in found) > 1:  # the second read would get nothing
        raise AecodecError("- (stdin) can be read only once: give it once")
    if output == "-" and len(found) > 1:
        raise AecodecError("-o - (stdout) takes a single input")
    several = len(found) > 1 or found[0][1] is not None  # a folder's files: -o is a folder
    if (several and output not in (None, "-") and Path(output).suffix.lower() in FILE_SUFFIXES
            and not Path(output).is_dir()):
        raise AecodecError(f"-o {output} names one file, but there are {len(found)} inputs "
                           "(a folder's files): give a folder for -o")
    if output is None:
        dsts = ["-" if f == "-" else str(Path(f).with_suffix(suffix)) for f, _ in found]
    elif (len(found) == 1 and found[0][1] is None and not Path(output).is_dir()
          and not output.endswith(("/", "\\"))):
        dsts = [output]
    else:
        dsts = []
        for f, rel in found:
            stem = "stdin" if f == "-" else str(rel.with_suffix("") if rel else Path(f).stem)
            dsts.append(str(Path(output) / (stem + suffix)))
    pairs = list(zip((f for f, _ in found), dsts, strict=True))
    seen: dict[str, str] = {}
    for src, dst in pairs:
        key = dst if dst == "-" else str(Path(dst).resolve())
        if dst != "-" and key in seen:
            raise AecodecError(f"{seen[key]} and {src} would both write {dst}")
        seen[key] = src
    return pairs


# ---- coding one file ---------------------------------------------------------------------------


class Coder:
    """One worker's open model(s): codes file bytes (or arrays) to output bytes.

    Compression opens its model at once; decompression opens each stream's model (by its id,
    or `settings.model`) on first use and keeps it.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.mode == "compress":
            self._codec(settings.model)

    def _codec(self, model):
        from .codec import get_codec

        return get_codec(model, self.settings.threads, self.settings.profile)

    def encode(self, image: np.ndarray | bytes | str):
        """An image array, image file bytes or path -> `Encoded` (quality or bpp target).
        Files are opened, not decoded, here: alpha, ICC, EXIF and bit depth reach the codec."""
        from .codec import DEFAULT_QUALITY
        from .errors import LossWarning, RateWarning
        from .imageio import open_image

        s = self.settings
        if isinstance(image, str):
            image = read(image)
        if isinstance(image, bytes):
            image = open_image(image)
        if getattr(image, "format", None) == "AEC":
            warnings.warn("the input is itself an aecodec stream: decoded and coded again, "
                          "losing quality a second time (decompress it instead?)", LossWarning,
                          stacklevel=2)
        codec = self._codec(s.model)
        if s.bpp is None:
            return codec.encode(image, DEFAULT_QUALITY if s.quality is None else s.quality,
                                s.strip, s.effort)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            enc = codec.encode_to_bpp(image, s.bpp, s.strip, s.effort)
        for w in caught:
            if not issubclass(w.category, RateWarning):
                warnings.warn(w.message, stacklevel=2)
            elif s.strict_bpp:
                raise AecodecError(f"{w.message} (--strict-bpp: nothing written)")
            else:
                warnings.warn(str(w.message), LossWarning, stacklevel=2)
        return enc

    def decode(self, data: bytes) -> np.ndarray:
        """A stream -> pixels, with the model it names unless one was given (the API's lookup,
        which keeps the codec open)."""
        from .codec import decompress

        return decompress(data, self.settings.model, self.settings.threads)

    def transform(self, source: bytes | str, fmt: str = "PNG") -> Coded:
        """Input file bytes (or a path, for images) -> the output file's bytes."""
        from .extras import stream_metadata
        from .imageio import encode_image

        compress = self.settings.mode == "compress"
        with loss_notes() as notes:  # filled when the block ends
            if compress:
                enc = self.encode(source)
            else:
                data = Path(source).read_bytes() if isinstance(source, str) else source
                pixels = self.decode(data)
                out = encode_image(pixels, fmt, stream_metadata(data),
                                   self.settings.out_quality)
        if compress:
            h, w = enc.height, enc.width
            return Coded(enc.data, h * w, w, h, enc.quality, tuple(notes))
        h, w = pixels.shape[:2]
        return Coded(out, h * w, w, h, notes=tuple(notes))

    def try_transform(self, source: bytes | str, fmt: str = "PNG") -> tuple[Coded | None, str]:
        """`transform`, with a bad input's error as a message (for remote callers)."""
        try:
            return self.transform(source, fmt), ""
        except (AecodecError, OSError) as e:
            return None, error_text(e)


@contextmanager
def loss_notes() -> Iterator[list[str]]:
    """Collect the LossWarnings raised inside (what an image loses on the way) as messages,
    so the CLI can say them once per file from any process; other warnings pass on."""
    from .errors import LossWarning

    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossWarning)
        try:
            yield notes
        finally:
            notes += [str(w.message) for w in caught if issubclass(w.category, LossWarning)]
    for w in caught:
        if not issubclass(w.category, LossWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def error_text(e: BaseException) -> str:
    if isinstance(e, AecodecError | FileExistsError):
        return str(e)
    if isinstance(e, OSError):
        return str(e.strerror or e)
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"  # not a bad input: a bug, memory, a lost worker


def output_format(dst: str, mode: Mode, fmt: str | None = None) -> str:
    """The image format a decompressed file is written in: `fmt` (--format), else from its
    name (PNG for stdout or no extension)."""
    from .imageio import format_for

    if mode == "compress":
        return "PNG"
    return fmt or ("PNG" if dst == "-" else format_for(dst))


def done_line(src: str, dst: str, mode: Mode, coded: Coded) -> str:
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


def occupied(dst: str) -> bool:
    """Whether writing `dst` would replace something: anything but a character device or a
    FIFO (`-o /dev/null`), which are written through instead (imageio.write_atomic)."""
    from .imageio import writes_through

    return Path(dst).exists() and not writes_through(dst)


def check_writable(pairs: list[tuple[str, str]]) -> None:
    """Fail before any coding when an output folder cannot be written (read-only, a file in
    the way, no permission), naming the output, not the input."""
    import tempfile

    for folder in sorted({Path(dst).parent for _, dst in pairs if dst != "-"}):
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            if not probe.is_dir():
                raise NotADirectoryError(f"{probe} is not a folder")
            with tempfile.TemporaryFile(dir=probe):
                pass
        except OSError as e:
            raise AecodecError(f"cannot write outputs into {folder}: "
                               f"{e.strerror or e}") from None


def read(src: str) -> bytes:
    if src == "-":
        import click

        return click.get_binary_stream("stdin").read()
    try:
        return Path(src).read_bytes()
    except OSError as e:
        raise AecodecError(f"cannot read: {e.strerror or e}") from None


def write(dst: str, data: bytes, force: bool) -> None:
    from .imageio import write_atomic

    if dst == "-":
        import click

        click.get_binary_stream("stdout").write(data)
        return
    write_atomic(dst, data, force)


_CODER: Coder | None = None  # the worker process's own
_INIT_ERROR = ""  # why a pool worker could not open its model: each of its files fails so


def _init_worker(settings: Settings, pool: bool = True) -> None:
    global _CODER, _INIT_ERROR
    exit_on_sigterm()
    try:
        _CODER, _INIT_ERROR = Coder(settings), ""
    except Exception as e:  # in a pool an initializer's exception breaks the whole pool
        if not pool:
            raise
        _CODER, _INIT_ERROR = None, error_text(e)


def process(src: str, dst: str) -> Outcome:
    """Code one file in this process (its worker's `Coder`) and write the output."""
    if _CODER is None:
        return Outcome(src, dst, "failed", error=_INIT_ERROR or "worker not initialised")
    s = _CODER.settings
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
        coded = _CODER.transform(source, output_format(dst, s.mode, s.fmt))
        return finish(src, dst, s.mode, coded, size, s.force)
    except Exception as e:  # one bad file must not stop the others
        return Outcome(src, dst, "failed", error=error_text(e))


# ---- running a job -----------------------------------------------------------------------------


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run(
    pairs: list[tuple[str, str]],
    settings: Settings,
    jobs: int | None = None,
    skip_existing: bool = False,
    ray: bool = False,
    ray_address: str | None = None,
    report: Callable[[Outcome], None] | None = None,
    progress: bool = True,
) -> Summary:
    """Code every (input, output) pair and return the totals; `report` sees each outcome.

    `jobs` worker processes (default: the CPU count; one input or stdin/stdout runs in this
    process), or Ray actors with `ray`. A progress bar goes to stderr for more than one input.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    summary = Summary(settings.mode)
    todo: list[tuple[str, str]] = []
    for src, dst in pairs:
        if skip_existing and dst != "-" and occupied(dst):
            summary.add(Outcome(src, dst, "skipped"))
        else:
            todo.append((src, dst))
    bar = tqdm(total=len(pairs), initial=summary.skipped, unit="img", file=sys.stderr,
               disable=not progress or len(pairs) < 2 or None)
    outcomes: Iterator[Outcome] = iter(())
    try:
        if ray:
            from .ray import outcomes_on_ray

            outcomes = outcomes_on_ray(todo, settings, jobs, ray_address)
        else:
            outcomes = _outcomes(todo, settings, jobs)
        for o in outcomes:
            summary.add(o)
            bar.update()
            if report:
                report(o)
    except KeyboardInterrupt:  # Ctrl-C: stop the workers, keep what is written, say so
        summary.interrupted = True
        for o in _drain(outcomes):
            summary.add(o)
            if report:
                report(o)
    finally:
        bar.close()
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


def _outcomes(
    todo: list[tuple[str, str]], settings: Settings, jobs: int | None
) -> Iterator[Outcome]:
    workers = min(jobs or cpu_count(), len(todo))
    if workers <= 1 or any("-" in pair for pair in todo):
        _init_worker(settings, pool=False)
        for src, dst in todo:
            yield process(src, dst)
        return
    if settings.threads is None:  # share the cores among the workers
        settings = replace(settings, threads=max(1, cpu_count() // workers))
    yield from _pool(todo, settings, workers)


def _pool(todo: list[tuple[str, str]], settings: Settings, workers: int) -> Iterator[Outcome]:
    """Worker processes with a bounded window of files in flight. If a worker dies (killed,
    out of memory), the files it had in flight fail and a fresh pool takes the rest."""
    import multiprocessing as mp

    queue = list(reversed(todo))
    while queue:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker, initargs=(settings,))
        running: dict[Future, tuple[str, str]] = {}
        broken = False
        try:
            while queue or running:
                while queue and len(running) < 2 * workers and not broken:
                    src, dst = queue.pop()
                    running[pool.submit(process, src, dst)] = (src, dst)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    src, dst = running.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        yield Outcome(src, dst, "failed", error="a worker process died "
                                      "(killed, or out of memory?) while coding it")
                    except Exception as e:  # e.g. a worker that could not open the model
                        yield Outcome(src, dst, "failed", error=error_text(e))
                if broken and not running:
                    break
        except KeyboardInterrupt:  # let the files in flight finish and report the written ones
            pool.shutdown(wait=True, cancel_futures=True)
            for fut in running:
                if not fut.cancelled() and fut.exception() is None:
                    yield fut.result()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into an exception so a named temporary output is cleaned up (the
    unnamed O_TMPFILE outputs used on Linux need no cleanup, even on SIGKILL)."""
    import signal
    import threading

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
