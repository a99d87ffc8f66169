"""Coverage-guided fuzzing of the stream parser, the decoder and the Pillow path (atheris).

    aecodec tools guided-fuzz --runs 1000000 --seed 1 --out results/fuzz

Each input is one stream; its first byte chooses the path (bit 0: recompute the CRC so the
damage reaches the entropy decoder and the networks; bit 1: through `Image.open().load()`
instead of `aecodec.decompress`). The oracle: a decode gives exactly the shape and dtype the
header and model promise (`fuzz.expected_shape`), anything refused is an `AecodecError`
(Pillow path: an `AecodecError` or Pillow's `OSError`), and no input runs over `--timeout`
seconds of CPU (the process's CPU time, so a loaded machine does not fake a hang; libFuzzer's
wall-clock `-timeout` is a backstop at `--wall-timeout`) or `--rss-mb` of memory. Anything
else stops the run with the input saved as `crash-*` in the output folder. The corpus starts
from real streams of every
shipped model and profile (`fuzz.seeds`, `fuzz.compact_seeds`) and the golden streams.
atheris is not a dependency of aecodec: `pip install atheris`.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden"
COUNTS: dict[str, int] = {}
REPORT = {"every": 1000, "last": 0, "write": None}  # counts.json, rewritten as the run goes
LIMIT = {"cpu_s": 10.0, "max_cpu_s": 0.0}  # the hang oracle, and the slowest input so far


def one_input(data: bytes) -> None:
    """One execution: raises AssertionError (a finding) when the contract is broken."""
    from PIL import Image

    from aecodec import container
    from aecodec.bench import fuzz
    from aecodec.errors import AecodecError

    if not data:
        COUNTS["empty"] = COUNTS.get("empty", 0) + 1
        return
    t0 = time.process_time()
    mode, stream = data[0], data[1:]
    if mode & 1:
        stream = fuzz.refresh_crc(stream)
    try:
        if mode & 2:
            # only aecodec's plugin: Pillow's own decoders of other formats are not under test
            with Image.open(io.BytesIO(stream), formats=["AEC"]) as im:
                im.load()
                pixels = np.asarray(im)
        else:
            pixels = fuzz.codec_for(container.read_header(stream).model_id).decompress(stream)
        header, _ = container.unpack(stream)
        info = fuzz.codec_for(header.model_id).model.info
        want = fuzz.expected_shape(header, info)
        assert pixels.shape == want and pixels.dtype == np.uint8, (pixels.shape, want)
        outcome = "ok"
    except AecodecError as e:
        outcome = type(e).__name__
    except OSError as e:  # Pillow's UnidentifiedImageError and friends, Pillow path only
        assert mode & 2, f"OSError outside the Pillow path: {e!r}"
        outcome = type(e).__name__
    spent = time.process_time() - t0
    LIMIT["max_cpu_s"] = max(LIMIT["max_cpu_s"], spent)
    assert spent <= LIMIT["cpu_s"], f"hang: {spent:.1f} s of CPU for one input ({outcome})"
    COUNTS[outcome] = COUNTS.get(outcome, 0) + 1
    total = sum(COUNTS.values())
    due = total - REPORT["last"] >= REPORT["every"] or total >= REPORT["runs"] - 1
    if REPORT["write"] and due:
        REPORT["last"] = total
        REPORT["write"]()


def write_corpus(folder: Path) -> int:
    """The seed corpus: real streams of every model and profile, on both paths."""
    from aecodec.bench import fuzz

    folder.mkdir(parents=True, exist_ok=True)
    streams = [*fuzz.seeds(), *fuzz.compact_seeds(),
               *(f.read_bytes() for f in sorted(GOLDEN.glob("*.aec")))]
    n = 0
    for i, s in enumerate(streams):
        for mode in (0, 1, 2, 3):
            (folder / f"seed-{i:03d}-{mode}").write_bytes(bytes([mode]) + s)
            n += 1
    return n


def campaign(args: SimpleNamespace) -> int:
    """Sessions in fresh processes: libFuzzer's own memory (its tables, the instrumented
    interpreter's) grows by ~8 MB per 1000 executions here, and a fresh process per session
    keeps each under --rss-mb. The corpus carries over; a finding stops the campaign."""
    import subprocess

    keep = []  # this command's options, less the ones each session gets its own value of
    for name, value in vars(args).items():
        if name not in ("sessions", "seed"):
            keep += [f"--{name.replace('_', '-')}", str(value)]
    args.out.mkdir(parents=True, exist_ok=True)
    total = args.out / "campaign.json"
    done = json.loads(total.read_text())["sessions"] if total.is_file() else []  # resume
    rc = 0
    for i in range(len(done), args.sessions):
        seed = args.seed + i
        t = time.time()
        r = subprocess.run([sys.executable, "-m", "aecodec.bench.guided_fuzz", *keep,
                            "--seed", str(seed)])
        one = json.loads((args.out / "counts.json").read_text())
        done.append({**one, "exit": r.returncode, "wall_s": round(time.time() - t, 1)})
        outcomes: dict[str, int] = {}
        for d in done:
            for k, v in d["outcomes"].items():
                outcomes[k] = outcomes.get(k, 0) + v
        total.write_text(json.dumps({
            "runs": sum(d["runs"] for d in done), "sessions": done,
            "slowest_input_cpu_s": max(d.get("slowest_input_cpu_s", 0) for d in done),
            "outcomes": dict(sorted(outcomes.items())),
        }, indent=1) + "\n")
        if r.returncode:
            rc = r.returncode
            break
    return rc


@click.command("guided-fuzz")
@click.option("--runs", type=click.IntRange(1), default=10_000, show_default=True,
              help="Executions (libFuzzer -runs).")
@click.option("--seed", type=int, default=1, show_default=True, help="libFuzzer's random seed.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results/fuzz"), show_default=True,
              help="Folder for the corpus, the counts and any crash-* input.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="CPU seconds one input may take (a hang above it).")
@click.option("--wall-timeout", type=click.IntRange(1), default=120, show_default=True,
              help="libFuzzer's wall-clock limit per input, a backstop for a stuck process.")
@click.option("--rss-mb", type=click.IntRange(0), default=2560, show_default=True,
              help="Memory one run may hold (0: no limit).")
@click.option("--max-len", type=click.IntRange(1), default=4096, show_default=True,
              help="Longest input in bytes.")
@click.option("--sessions", type=click.IntRange(1), default=1, show_default=True,
              help="Run --runs executions this many times in fresh processes on the one "
                   "growing corpus (seeds --seed, --seed+1, ...); counts.json sums them.")
def command(**options) -> None:
    """Coverage-guided fuzzing of the stream parser, the decoder and the Pillow path
    (atheris, not a dependency: pip install atheris)."""
    args = SimpleNamespace(**options)
    if args.sessions > 1:
        sys.exit(campaign(args))
    try:
        import atheris
    except ImportError:
        raise click.ClickException("the guided fuzzer needs atheris: pip install atheris") \
            from None
    from aecodec import alpha, codec, container, entropy, extras, pillow_plugin  # noqa: F401
    from aecodec.latent import context, factorized, hyperprior  # noqa: F401

    atheris.instrument_all()  # aecodec is imported already (this module is inside it)
    corpus = args.out / "corpus"
    seeds = write_corpus(corpus)
    start = time.time()
    counts_file = args.out / "counts.json"

    def report() -> None:
        counts_file.write_text(json.dumps({
            "runs": sum(COUNTS.values()), "seconds": round(time.time() - start, 1),
            "seed": args.seed, "seed_inputs": seeds, "cpu_limit_s": args.timeout,
            "slowest_input_cpu_s": round(LIMIT["max_cpu_s"], 3),
            "outcomes": dict(sorted(COUNTS.items())),
        }, indent=1) + "\n")

    REPORT.update(write=report, runs=args.runs)
    LIMIT["cpu_s"] = args.timeout
    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-seed={args.seed}",
                   f"-timeout={args.wall_timeout}", f"-rss_limit_mb={args.rss_mb}",
                   f"-max_len={args.max_len}", f"-artifact_prefix={args.out}/",
                   "-print_final_stats=1", str(corpus)], one_input)
    atheris.Fuzz()

def main(argv: list[str] | None = None) -> None:
    """`python -m aecodec.bench.guided_fuzz`: the same command as
    `aecodec tools guided-fuzz`."""
    command.main(args=argv, prog_name="python -m aecodec.bench.guided_fuzz")


if __name__ == "__main__":
    main()
