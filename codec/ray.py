"""Ray: aecodec on collections larger than one machine (the `ray` extra).

    import ray, aecodec.ray
    ds = ray.data.read_images("photos/")                       # an `image` column
    streams = ds.map_batches(aecodec.ray.Compressor, fn_constructor_kwargs={"quality": 60},
                             compute=ray.data.ActorPoolStrategy(size=4))   # -> an `aec` column
    images = streams.map_batches(aecodec.ray.Decompressor,
                                 compute=ray.data.ActorPoolStrategy(size=4))  # -> `image`

Each actor opens its model once. `Compressor` and `Decompressor` run the same `batch.Coder`
as `aecodec compress`, so their streams are byte-identical to the CLI's. `aecodec compress DIR
-o OUT --ray` runs the CLI's job on Ray actors (`RayRunner`, a `batch.Runner` like the process
pool; the CLI picks it): this process reads the inputs and writes the outputs (atomically, as
without Ray), so the cluster's machines need no shared filesystem. Ray is imported only when a
job runs: `import aecodec.ray` works without it. This module uses `aecodec.batch`; nothing
there imports it back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from .batch.coder import Coder, Settings, error_text
from .batch.fileio import read
from .batch.outcome import Outcome, finish, output_format
from .batch.planning import Pair
from .errors import AecodecError


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AecodecError("Ray is not installed: pip install 'aecodec[ray]' "
                           "(from a checkout: pip install -e '.[ray]')") from None
    return ray


def _objects(items: Iterable[Any]) -> np.ndarray:
    """A 1-D object array (bytes, or arrays of differing shapes) for a Ray Data column."""
    items = list(items)
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


class Compressor:
    """`map_batches` callable: an `image` column (uint8 H×W×3 / H×W arrays, or image file
    bytes) in, an `aec` column of stream bytes out; other columns pass through."""

    def __init__(self, model: str | None = None, quality: float | None = None,
                 bpp: float | None = None, threads: int | None = 1, effort: int = 0) -> None:
        from .effort import check_effort

        if quality is not None and bpp is not None:
            raise ValueError("give either quality or bpp, not both")
        self.coder = Coder(Settings("compress", model, quality, bpp, threads,
                                    effort=check_effort(effort)))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: v for k, v in batch.items() if k != "image"}
        out["aec"] = _objects(self.coder.encode(_plain(x)).data for x in batch["image"])
        return out


class Decompressor:
    """`map_batches` callable: an `aec` column of streams in, an `image` column out (uint8
    arrays, or image file bytes when `format` is given, e.g. "PNG"); other columns pass."""

    def __init__(self, model: str | None = None, format: str | None = None,
                 threads: int | None = 1) -> None:
        self.coder = Coder(Settings("decompress", model, threads=threads))
        self.format = format

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .imageio import encode_image

        out = {k: v for k, v in batch.items() if k != "aec"}
        pixels = (self.coder.decode(bytes(x)) for x in batch["aec"])
        out["image"] = _objects(encode_image(p, self.format) if self.format else p
                                for p in pixels)
        return out


def _plain(x: Any) -> np.ndarray | bytes:
    """A column element as the coder takes it: image file bytes, or a uint8 array. Ray Data
    stores an H×W image beside H×W×3 ones as 1×H×W: that leading 1 is dropped again."""
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x)
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[0] == 1 and a.shape[2] not in (3, 4):
        a = a[0]
    return a


def connect(address: str | None = None, cpus: int | None = None) -> bool:
    """Join the Ray cluster at `address` (or RAY_ADDRESS), or start a local one; True when
    this call started or joined Ray (so the caller shuts it down again)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
    return True


class RayRunner:
    """`batch.Runner` on Ray actors: `jobs` caps the actors (default: the cluster's CPUs);
    `address` joins a cluster (default: RAY_ADDRESS, else a local Ray)."""

    def __init__(self, jobs: int | None = None, address: str | None = None) -> None:
        self.jobs = jobs
        self.address = address

    def outcomes(self, todo: list[Pair], settings: Settings) -> Iterator[Outcome]:
        return outcomes_on_ray(todo, settings, self.jobs, self.address)


def outcomes_on_ray(
    todo: list[Pair], settings: Settings, jobs: int | None, address: str | None
) -> Iterator[Outcome]:
    """The CLI's job on Ray actors, one model open per actor (one CPU, one thread each, as
    many as `jobs` or the cluster's CPUs); this process reads inputs and writes outputs."""
    if not todo:
        return
    if any("-" in pair for pair in todo):
        raise AecodecError("--ray codes files: stdin and stdout are not supported")
    ray = _ray()
    started = connect(address, jobs)
    actors: list = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = max(1, min(jobs or cpus, cpus, len(todo)))
        remote = ray.remote(num_cpus=1, max_restarts=2)(Coder)
        actors = [remote.remote(replace(settings, threads=settings.threads or 1))
                  for _ in range(n)]
        queue = list(reversed(todo))
        running: dict[Any, tuple[str, str, int, int]] = {}  # ref: src, dst, size, actor
        load = [0] * n
        while queue or running:
            while queue and min(load) < 2:
                src, dst = queue.pop()
                try:
                    if os.path.exists(dst) and not settings.force:
                        raise FileExistsError(f"{dst} exists (use --force to overwrite)")
                    data = read(src)
                except (AecodecError, OSError) as e:
                    yield Outcome(src, dst, "failed", error=error_text(e))
                    continue
                a = load.index(min(load))
                load[a] += 1
                ref = actors[a].try_transform.remote(data, output_format(dst, settings.mode,
                                                                        settings.fmt))
                running[ref] = (src, dst, len(data), a)
            if not running:
                continue
            (ref,), _ = ray.wait(list(running), num_returns=1)
            src, dst, size, a = running.pop(ref)
            load[a] -= 1
            try:
                coded, error = ray.get(ref)
                if coded is None:
                    raise AecodecError(error)
                yield finish(src, dst, settings.mode, coded, size, settings.force)
            except Exception as e:  # a bad file, a lost actor: report it, go on
                yield Outcome(src, dst, "failed", error=error_text(e))
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
