"""Fuzz the decoder with mutated streams: each must decode or raise an AecodecError.

    aecodec tools fuzz --streams 10000 [--workers 2] [--timeout 20] [--mem-mb 6144]

Seed streams are small real ones (64x64 photos through the shipped photo models, plain and
tiled, and 28x28 digits through every MNIST model, then version 3 streams with extra sections:
alpha, ICC profile and EXIF, plain and tiled, then digits in the compact profile). Stream i is
seed i mod S mutated by a generator seeded with i (bit flips, byte edits, truncations,
insertions, deletions, splices, header field edits with huge sizes, tiles or section counts,
large declared sizes carried by tiny sections in either version; compact: indices, quality
bytes, recast as full), and usually its CRC is
recomputed so the damage reaches the entropy decoder and the networks. Worker processes
decode under an address-space limit (RLIMIT_AS) and a per-stream timeout; the outcomes are
counted: `ok` (an image), one entry per AecodecError subclass, and the failures `crash`
(any other exception), `memory` (MemoryError, or ONNX Runtime failing to allocate, under the
limit), `hang` (timeout) and `died` (the worker process ended, e.g. by a signal).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import resource
import time
import zlib
from collections import Counter
from functools import cache, lru_cache
from pathlib import Path

import click
import numpy as np

PHOTO_MODELS = ("hyperprior", "factorized")
FAILURES = ("crash", "memory", "hang", "died")
FUZZ_MAX_PIXELS = 1 << 22  # decoders' pixel limit in the run: declared sizes up to 4 MP decode


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], axis=2).astype(np.float64)
    img += rng.normal(0, 12, img.shape)
    img[h // 4 : h // 2, w // 3 : w // 2] = [230, 40, 30]
    return img.clip(0, 255).astype(np.uint8)


def _digit(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), np.uint8)
    r = rng.integers(6, 11)
    y, x = np.mgrid[0:28, 0:28]
    ring = np.abs(np.hypot(y - 14, x - 14) - r) < 2
    img[ring] = 255
    return img


@cache
def codec_for(model_id: str):
    """A decoder (one thread, fuzz pixel limit) for a shipped model id."""
    from aecodec.codec import Codec
    from aecodec.model import find_by_id

    return Codec(find_by_id(model_id), threads=1, max_pixels=FUZZ_MAX_PIXELS)


def seeds() -> list[bytes]:
    """The seed streams (deterministic)."""
    from aecodec.codec import Codec
    from aecodec.model import shipped

    out = []
    for info in shipped():
        if info.fixed_size:
            codec = Codec(info, threads=1)
            q = 50 if info.levels > 1 else None
            out.append(codec.compress(_digit(len(out)), q) if q else codec.compress(_digit(1)))
        elif info.name in PHOTO_MODELS:
            codec = Codec(info, threads=1)
            out.append(codec.compress(_photo(64, 64, 0), 30))
            out.append(codec.compress(_photo(48, 80, 1), 85.5))
            gray = _photo(64, 64, 2)[:, :, 0]
            out.append(codec.compress(gray, 60))
            tiled = Codec(info, threads=1, tile=64, tile_above=0)
            out.append(tiled.compress(_photo(128, 192, 3), 50))
    for info in shipped():  # version 3: extra sections (after the others: seed indices stay)
        if info.name in PHOTO_MODELS:
            out.append(Codec(info, threads=1).compress(_with_extras(64, 48, 4), 40))
            tiled = Codec(info, threads=1, tile=64, tile_above=0)
            out.append(tiled.compress(_with_extras(128, 130, 5), 60))
    out += compact_seeds()
    out += overfit_seeds()
    return out


def overfit_seeds() -> list[bytes]:
    """Streams of the overfit family (last: earlier seed indices stay), trained for a few steps
    on small photos and packed as written (no fallback to the default model); none where torch
    is missing, since this family's encoder needs it."""
    import importlib.util

    from aecodec import container
    from aecodec.codec import Codec
    from aecodec.model import shipped

    if importlib.util.find_spec("torch") is None:
        return []
    out = []
    for info in shipped():
        if info.family != "overfit":
            continue
        codec = Codec(info, threads=1)
        for k, (h, w, gray) in enumerate([(32, 48, False), (40, 24, True)]):
            img = _photo(h, w, 6 + k)
            res = codec.pipeline.fit(img, 50.0, 0, steps=15)
            header = container.Header(info.id, w, h, gray, 50.0, tile=None, extras=())
            out.append(container.pack(header, res.sections))
    return out


def compact_seeds() -> list[bytes]:
    """Compact-profile digits of every model with a compact index (after the full seeds, so
    seed 0 stays a full-header stream)."""
    from aecodec import container
    from aecodec.codec import Codec
    from aecodec.model import shipped

    out = []
    for info in shipped():
        if container.compact_index(info.id) is not None:
            codec = Codec(info, threads=1, profile="compact")
            out.append(codec.compress(_digit(len(out) + 7), 1 + 13 * len(out) % 100))
    return out


def _with_extras(h: int, w: int, seed: int):
    """An RGBA photo with a small ICC profile (a bare header) and EXIF."""
    from PIL import Image

    rgb = _photo(h, w, seed)
    alpha = np.clip(np.hypot(*np.mgrid[0:h, 0:w]) * 4, 0, 255).astype(np.uint8)
    im = Image.fromarray(np.dstack([rgb, alpha]))
    icc = bytearray(132)
    icc[0:4], icc[16:20], icc[36:40] = (132).to_bytes(4, "big"), b"RGB ", b"acsp"
    exif = Image.Exif()
    exif[0x010F] = "fuzz"
    im.info["icc_profile"], im.info["exif"] = bytes(icc), exif.tobytes()
    return im


def refresh_crc(data: bytes) -> bytes:
    """Recompute the CRC-32 of an edited stream, if its header can still be read."""
    from aecodec import container
    from aecodec.errors import AecodecError

    try:
        pos = container.crc_offset(data)
    except AecodecError:
        return data
    if container.is_compact(data):
        crc8 = container.crc8(data[pos + 1 :], container.crc8(data[:pos]) ^ 0xFF)
        return data[:pos] + bytes([crc8]) + data[pos + 1 :]
    end = pos + container.CRC_BYTES
    crc = zlib.crc32(data[end:], zlib.crc32(data[:pos]))
    return data[:pos] + crc.to_bytes(container.CRC_BYTES, "little") + data[end:]


def _edit_header(data: bytes, rng: random.Random) -> bytes:
    """Rewrite the header with hostile field values around the original sections."""
    from aecodec import container
    from aecodec.errors import AecodecError

    try:
        header, sections = container.unpack(data)
    except AecodecError:
        return data
    if header.compact:
        return _edit_compact(data, rng)
    big = [0, 1, 2, 63, 64, 65, 1000, 2047, 2048, 2049, 4096, 20000, (1 << 24) - 1, 1 << 24,
           (1 << 28), (1 << 35) - 1]
    w, h = header.width, header.height
    tile, quality, gray = header.tile, header.quality, header.gray
    extras = header.extras
    choice = rng.randrange(8)
    if choice == 7:  # a large declared size carried by tiny sections, either version
        w, h = rng.choice([1000, 2048, 3000]), rng.choice([1000, 1536, 2000])
        tile = rng.choice([None, 4, 16, 64])
        count = 1 + (-(-h // 16 // tile) * -(-w // 16 // tile) if tile else 1)
        sections, extras = [bytes([rng.randrange(1, 256)]) * rng.randint(1, 8)] * count, ()
    elif choice == 0:
        w, h = rng.choice(big), rng.choice(big)
    elif choice == 1:
        w, h = (w or 28) + rng.randint(-20, 20), (h or 28) + rng.randint(-20, 20)
    elif choice == 2:
        tile = rng.choice([1, 2, 3, 4, 5, 8, 1000, (1 << 35) - 1])
        w, h = w or 28, h or 28
    elif choice == 3:
        quality = None if quality else rng.choice([1.0, 50.5, 100.0])
    elif choice == 4:
        gray = not gray
    elif choice == 5:  # extra sections: other kinds over the same bytes, or a swapped payload
        kinds = container.EXTRA_KINDS
        if rng.random() < 0.5 or not extras:
            extras = tuple(k for k in kinds if rng.random() < 0.5)
            n = len(sections) - len(header.extras)
            sections = sections[:n] + [rng.choice(sections) for _ in extras]
        else:
            i = len(sections) - 1 - rng.randrange(len(extras))
            sections = sections[:i] + [rng.choice([b"", sections[0], sections[i][:-3],
                                                   sections[i] + b"\0"])] + sections[i + 1 :]
    else:  # split / merge sections
        if len(sections) > 1 and rng.random() < 0.5:
            i = rng.randrange(len(sections) - 1)
            sections = sections[:i] + [sections[i] + sections[i + 1]] + sections[i + 2 :]
        else:
            s = sections[rng.randrange(len(sections))]
            cut = rng.randint(0, len(s))
            sections = [s[:cut], s[cut:]] + sections[1:]
        tile = tile if tile or len(sections) <= 2 else 4
        w, h = (w or 28, h or 28) if tile else (w, h)
    if (w is None) != (h is None) or (w is not None and (w < 0 or h < 0)):
        w, h = 28, 28
    try:
        if tile is not None and w is None:
            w, h = 28, 28
        n = len(sections) - len(extras)  # latent sections, then one per extra kind
        latent, extra = sections[:n], sections[n:]
        if tile is None and len(latent) > 2:  # an untiled stream has one or two
            latent = [latent[0], b"".join(latent[1:])]
        # unchecked: pack would refuse some of these (zero sizes), the parser must see them
        fields = container.Header(header.model_id, w, h, gray, quality, tile=tile, extras=extras)
        return container.write_stream(fields, latent + extra)
    except (ValueError, OverflowError):
        return data


def _edit_compact(data: bytes, rng: random.Random) -> bytes:
    """Compact header edits: another or a free index, quality byte dropped, added or out of
    range, or the stream recast with a full header around the byte-coded section."""
    from aecodec import container

    (index, quality), pos = container._compact_fields(data)
    payload = data[pos + 1 :]
    choice = rng.randrange(4)
    if choice == 0:
        index = rng.choice([*container.COMPACT_MODELS, container.COMPACT_MAX_INDEX])
    elif choice == 1:
        quality = None if quality else float(rng.choice([1, 50, 100]))
    elif choice == 2:
        head = bytes([index | container.COMPACT_FLAG_QUALITY, rng.choice([99, 100, 255])])
        return refresh_crc(head + b"\0" + payload)
    else:
        fields = container.Header(container.COMPACT_MODELS[index], None, None, True, quality)
        return container.write_stream(fields, [payload])
    head = bytes([index | (container.COMPACT_FLAG_QUALITY if quality else 0)])
    if quality:
        head += bytes([int(quality) - 1])
    return refresh_crc(head + b"\0" + payload)


def mutate(data: bytes, rng: random.Random, pool: list[bytes] | None = None) -> bytes:
    """One to three random mutations, then (usually) a fresh CRC."""
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.randrange(9)
        n = len(b)
        if op == 0 and n:  # bit flips
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(n)
                b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # byte set, biased to the header
            i = rng.randrange(min(n, 24)) if rng.random() < 0.6 else rng.randrange(n)
            b[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:  # truncation
            del b[rng.randint(0, n) :]
        elif op == 3:  # insertion
            i = rng.randint(0, n)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and n:  # deletion
            i = rng.randrange(n)
            del b[i : i + rng.randint(1, 16)]
        elif op == 5:  # header field edit
            b = bytearray(_edit_header(bytes(b), rng))
        elif op == 6 and pool:  # splice with another seed
            other = rng.choice(pool)
            i, j = rng.randint(0, n), rng.randint(0, len(other))
            b = b[:i] + other[j:]
        elif op == 7:  # random bytes after a valid-looking start
            keep = rng.randint(0, min(n, 16))
            b = b[:keep] + bytearray(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        elif op == 8 and n:  # zero or duplicate a run
            i = rng.randrange(n)
            k = rng.randint(1, 32)
            b[i : i + k] = bytes(min(k, n - i)) if rng.random() < 0.5 else b[i : i + k] * 2
    out = bytes(b)
    return refresh_crc(out) if rng.random() < 0.85 else out


def decode(data: bytes) -> str:
    """The outcome of decoding one stream: 'ok', an AecodecError class name, or a failure."""
    from aecodec import container
    from aecodec.errors import AecodecError, UnknownModelError

    try:
        header, _ = container.unpack(data, FUZZ_MAX_PIXELS)
        try:
            codec = codec_for(header.model_id)
        except UnknownModelError:
            codec = codec_for(seeds_cache()[0][3:7].hex())  # decode with a wrong model
        pixels = codec.decompress(data)
        return "ok" if pixels.shape == expected_shape(header, codec.model.info) \
            and pixels.dtype == np.uint8 else "crash"
    except AecodecError as e:
        if "allocate" in str(e):  # ONNX Runtime out of memory, reported as a ModelError
            return "memory"
        return type(e).__name__
    except MemoryError:
        return "memory"
    except Exception:  # noqa: BLE001 - the point is to count them
        return "crash"


def expected_shape(header, info) -> tuple[int, ...]:
    """The oracle: what a decode must give, from the header and the model alone (H x W for
    gray, H x W x 3 for colour, plus one band for alpha)."""
    h, w = (header.height, header.width) if header.width is not None else info.fixed_size
    bands = (1 if header.gray or info.channels == 1 else 3) + ("alpha" in header.extras)
    return (h, w) if bands == 1 else (h, w, bands)


@lru_cache(maxsize=1)
def seeds_cache() -> tuple[bytes, ...]:
    return tuple(seeds())


@lru_cache(maxsize=1)
def compact_seeds_cache() -> tuple[bytes, ...]:
    return tuple(compact_seeds())


def stream(i: int, base_seed: int = 0) -> bytes:
    pool = list(seeds_cache())
    rng = random.Random(base_seed * 1_000_003 + i)
    return mutate(pool[i % len(pool)], rng, pool)


def _worker(indices: list[int], base_seed: int, mem_mb: int, queue) -> None:
    if mem_mb:
        limit = mem_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for i in indices:
        queue.put(("start", i, None))
        outcome = decode(stream(i, base_seed))
        queue.put(("done", i, outcome))


def run(n: int, workers: int = 2, timeout: float = 20.0, mem_mb: int = 6144,
        base_seed: int = 0, log=print) -> dict:
    """Decode n mutated streams in worker processes; returns counts and failing indices."""
    seeds_cache()  # build here first, so that a broken model fails before any worker starts
    # Fresh interpreters, not forks: forking a process whose thread pools (torch, ONNX Runtime)
    # hold locks can leave the child waiting on them forever.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    todo = list(range(n))
    chunks = [todo[k::workers] for k in range(workers)]
    counts: Counter = Counter()
    failures: dict[str, list[int]] = {}
    procs: dict[int, tuple] = {}  # worker slot -> (process, remaining, current, since)

    def launch(slot: int, remaining: list[int]) -> None:
        if not remaining:
            procs.pop(slot, None)
            return
        p = ctx.Process(target=_worker, args=(remaining, base_seed, mem_mb, queue), daemon=True)
        p.start()
        procs[slot] = (p, list(remaining), None, time.monotonic())

    owner = {}
    for slot, chunk in enumerate(chunks):
        for i in chunk:
            owner[i] = slot
        launch(slot, chunk)
    t0, done = time.monotonic(), 0
    while procs:
        try:
            kind, i, outcome = queue.get(timeout=0.5)
            slot = owner[i]
            p, remaining, _, _ = procs[slot]
            if kind == "start":
                procs[slot] = (p, remaining, i, time.monotonic())
            else:
                remaining.remove(i)
                counts[outcome] += 1
                if outcome in FAILURES or outcome == "crash":
                    failures.setdefault(outcome, []).append(i)
                done += 1
                if done % 1000 == 0:
                    log(f"{done}/{n} streams, {time.monotonic() - t0:.0f} s: {dict(counts)}")
                procs[slot] = (p, remaining, None, time.monotonic())
                if not remaining:
                    p.join(5)
                    procs.pop(slot)
        except Exception:  # queue.Empty: check for hangs and dead workers
            pass
        now = time.monotonic()
        for slot, (p, remaining, current, since) in list(procs.items()):
            # a worker that stays silent that long hangs, whether inside a stream or between
            hung = bool(remaining) and now - since > timeout
            dead = not p.is_alive() and queue.empty()
            if hung or dead:
                if p.is_alive():
                    p.kill()
                p.join()
                bad = current if current is not None else (remaining[0] if remaining else None)
                if bad is None:
                    procs.pop(slot)
                    continue
                outcome = "hang" if hung else "died"
                counts[outcome] += 1
                failures.setdefault(outcome, []).append(bad)
                remaining.remove(bad)
                done += 1
                launch(slot, remaining)
    return {"streams": n, "seconds": round(time.monotonic() - t0, 1), "seed_streams":
            len(seeds_cache()), "base_seed": base_seed, "max_pixels": FUZZ_MAX_PIXELS,
            "mem_limit_mb": mem_mb, "timeout_s": timeout, "outcomes": dict(counts.most_common()),
            "failures": failures}


@click.command("fuzz")
@click.option("--streams", type=click.IntRange(1), default=10_000, show_default=True,
              help="Mutated streams to decode.")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="Decoding worker processes.")
@click.option("--timeout", type=float, default=20.0, show_default=True,
              help="Seconds per stream.")
@click.option("--mem-mb", type=click.IntRange(1), default=6144, show_default=True,
              help="Address-space limit per worker (a legitimate 4 MP decode needs ~1.6 GB "
                   "resident, more address space).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON result here.")
def command(streams: int, workers: int, timeout: float, mem_mb: int, seed: int,
            out: Path | None) -> None:
    """Fuzz the decoder with mutated streams: each must decode or raise an AecodecError
    (exit 1 on any crash, hang, memory failure or dead worker)."""
    res = run(streams, workers, timeout, mem_mb, seed)
    text = json.dumps(res, indent=2)
    click.echo(text)
    if out:
        out.write_text(text + "\n")
    if any(k in res["outcomes"] for k in FAILURES):
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    """`python -m aecodec.bench.fuzz`: the same command as `aecodec tools fuzz`."""
    command.main(args=argv, prog_name="python -m aecodec.bench.fuzz")


if __name__ == "__main__":
    main()
