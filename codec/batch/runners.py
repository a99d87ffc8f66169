"""Where a job's files are coded: in this process, or in a pool of worker processes (the Ray
runner, `aecodec.ray.RayRunner`, has the same interface). The CLI picks one.

A runner gets the files to code and yields one `Outcome` per file as it ends. Its
`outcomes` is a generator, so that after Ctrl-C `job.run` can throw KeyboardInterrupt into it
and still hear about the files in flight that got written. Each pool worker opens its model
once (an initializer) and codes whole files. Workers are started with the `spawn` method:
forking a process whose ONNX Runtime threads are running can deadlock (see
`aecodec.bench.fuzz`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Protocol

from .coder import Coder, Settings, error_text
from .outcome import Outcome, code_file
from .planning import Pair


class Runner(Protocol):
    """Codes the (input, output) pairs it is given, yielding each file's outcome."""

    def outcomes(self, todo: list[Pair], settings: Settings) -> Iterator[Outcome]: ...


def cpu_count() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def exit_on_sigterm() -> None:
    """Turn SIGTERM into an exception so a named temporary output is cleaned up (the
    unnamed O_TMPFILE outputs used on Linux need no cleanup, even on SIGKILL)."""
    import signal
    import threading

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


_CODER: Coder | None = None  # the worker process's own
_INIT_ERROR = ""  # why a pool worker could not open its model: each of its files fails so


def die_with_parent(parent: int) -> None:
    """End this worker when the job's process `parent` ends, even killed by SIGKILL, rather
    than live on re-parented to init (Linux: the parent-death signal, SIGTERM, so that a
    named temporary output is still cleaned up). Elsewhere: nothing."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before the signal was asked for
        os._exit(128 + int(signal.SIGTERM))


def _init_worker(settings: Settings, pool: bool = True, parent: int | None = None) -> None:
    global _CODER, _INIT_ERROR
    exit_on_sigterm()
    if parent is not None:
        die_with_parent(parent)
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
    return code_file(_CODER, src, dst)


class InProcess:
    """Every file in this process, one after another, with one model open (and all the
    cores for ONNX Runtime unless `settings.threads`); stdin and stdout work here."""

    def outcomes(self, todo: list[Pair], settings: Settings) -> Iterator[Outcome]:
        _init_worker(settings, pool=False)  # even for no files: a bad model is still an error
        for src, dst in todo:
            yield process(src, dst)


class ProcessPool:
    """`jobs` worker processes (default: the CPU count) sharing the cores; one file, or
    stdin/stdout, runs in this process instead (`InProcess`)."""

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = jobs

    def outcomes(self, todo: list[Pair], settings: Settings) -> Iterator[Outcome]:
        workers = min(self.jobs or cpu_count(), len(todo))
        if workers <= 1 or any("-" in pair for pair in todo):
            yield from InProcess().outcomes(todo, settings)
            return
        if settings.threads is None:  # share the cores among the workers
            settings = replace(settings, threads=max(1, cpu_count() // workers))
        yield from _pool(todo, settings, workers)


def _pool(todo: list[Pair], settings: Settings, workers: int) -> Iterator[Outcome]:
    """Worker processes with a bounded window of files in flight. If a worker dies (killed,
    out of memory), the files it had in flight fail and a fresh pool takes the rest."""
    import multiprocessing as mp

    queue = list(reversed(todo))
    while queue:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(settings, True, os.getpid()))
        running: dict[Future, Pair] = {}
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
