"""Where decoding time goes: per stage and per ONNX operator, the runtime against its reference.

    aecodec tools profile [--sizes 768x512,4000x3000] [--threads 1,2] [--repeats 5]
                          [--large-repeats 2] [--quality 50] [--out results/speed]

Two decoders of the same model, side by side: `reference` runs the model files as they are
(`Model(rewrite=False, spinning=True)`: the synthesis graph of the file, the float64
hyper-decoder, ONNX Runtime's spinning threads, i.e. the runtime before issue 11) and
`runtime` is what `aecodec.Codec` runs by default. Per size and thread count they decode
the same stream in alternating order (the CPU may be shared: only medians of interleaved
repeats and their ratios mean anything), timing each stage by wrapping
its entry point: entropy decoding of z and y (`TableSet.decode`), the integer hyper-decoder
(`intnet.run`) and the synthesis (the ONNX session's `run`); `other` is the rest (container,
latent assembly, cropping). Encoding is timed the same way. One more decode per decoder runs
with ONNX Runtime's profiler on the synthesis session, summed per operator type.
768x512 is Kodak's kodim23 (landscape); larger sizes are the Kodak mosaic of bench.large.
Writes profile.md and profile.json to --out.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import numpy as np

STAGES = ("entropy z", "hyper-decoder", "entropy y", "synthesis")


def _image(width: int, height: int, kodak: Path | None) -> np.ndarray:
    from .large import mosaic

    if (width, height) == (768, 512) and kodak and (kodak / "kodim23.png").is_file():
        from aecodec.imageio import read_image

        return read_image(kodak / "kodim23.png")
    return mosaic(width, height, kodak)


def _codec(threads: int, reference: bool, profile_prefix: str | None = None):
    from aecodec.codec import Codec
    from aecodec.model import Model, find

    # the reference is the runtime as it shipped: file graphs, float64 hyper-decoder, and
    # ONNX Runtime's default of spinning threads
    model = Model(find("hyperprior"), threads=threads, rewrite=not reference, spinning=reference)
    if profile_prefix:  # a profiling session of the same graph in the model's cache
        import onnxruntime as ort

        from aecodec.fast_synthesis import rewrite

        data = model.file("synthesis.onnx").read_bytes()
        fast = None if reference else rewrite(data)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.enable_profiling, opts.profile_file_prefix = True, profile_prefix
        opts.add_session_config_entry("session.intra_op.allow_spinning", str(int(reference)))
        if fast is not None:
            opts.add_session_config_entry("session.disable_quant_qdq", "1")
        model.__dict__["synthesis"] = ort.InferenceSession(
            fast or data, opts, providers=["CPUExecutionProvider"])
    return Codec(model)


@contextmanager
def _stage_timer(codec, times: dict[str, float]):
    """Adds each stage's seconds to `times` while decoding/encoding with `codec`."""
    from aecodec import intnet

    model = codec.model

    def wrap(fn, key):
        def timed(*a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                times[key] += time.perf_counter() - t0
                times[key + " cpu"] += time.process_time() - c0
        return timed

    run0, zt, yt, syn = intnet.run, model.z_tables, model.y_tables, model.synthesis
    intnet.run = wrap(run0, "hyper-decoder")
    zt.decode, yt.decode = wrap(zt.decode, "entropy z"), wrap(yt.decode, "entropy y")
    syn.run = wrap(syn.run, "synthesis")
    try:
        yield
    finally:
        intnet.run = run0
        for obj in (zt, yt, syn):
            obj.__dict__.pop("decode" if obj is not syn else "run", None)


def _decode_once(codec, data: bytes) -> tuple[dict[str, float], np.ndarray]:
    """Wall and CPU (process) ms per stage of one decode; CPU time is what contention from
    other processes inflates least (with 2 threads it includes ONNX Runtime's spinning)."""
    times: dict[str, float] = defaultdict(float)
    with _stage_timer(codec, times):
        t0, c0 = time.perf_counter(), time.process_time()
        pixels = codec.decompress(data)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {k: times[k] * 1e3 for k in STAGES}
    out["other"] = total * 1e3 - sum(out.values())
    out["total"] = total * 1e3
    cpu_out = {k: times[k + " cpu"] * 1e3 for k in STAGES}
    cpu_out["other"] = cpu * 1e3 - sum(cpu_out.values())
    cpu_out["total"] = cpu * 1e3
    return out | {f"{k} cpu": v for k, v in cpu_out.items()}, pixels


def _ops(codec, decodes: int = 2) -> dict[str, float]:
    """ms per ONNX operator type per decode, from a profiling synthesis session that ran
    `decodes` decodes."""
    file = codec.model.synthesis.end_profiling()
    events = json.loads(Path(file).read_text())
    os.unlink(file)
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / decodes
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def _op_profile(threads: int, reference: bool, data: bytes, tmp: str) -> dict[str, float]:
    """ms per ONNX operator type in a synthesis of `data` (a warm-up and a measured decode)."""
    codec = _codec(threads, reference, profile_prefix=os.path.join(tmp, "ort"))
    codec.decompress(data)
    codec.decompress(data)
    return _ops(codec)


def profile(sizes: list[tuple[int, int]], threads_list: list[int], repeats: int,
            large_repeats: int, quality: float, kodak: Path | None, tmp: str,
            log=print) -> dict[str, Any]:
    import onnxruntime as ort

    out: dict[str, Any] = {"ort": ort.__version__, "python": platform.python_version(),
                           "cpus": os.cpu_count(), "load_start": os.getloadavg()[0],
                           "quality": quality, "runs": []}
    for w, h in sizes:
        image = _image(w, h, kodak)
        big = w * h > 2_000_000
        reps = large_repeats if big else repeats
        for threads in threads_list:
            prefix = {k: os.path.join(tmp, k) if big else None for k in ("reference", "runtime")}
            codecs = {k: _codec(threads, k == "reference", prefix[k]) for k in prefix}
            data = codecs["runtime"].compress(image, quality)
            dec: dict[str, list[dict[str, float]]] = {k: [] for k in codecs}
            enc: dict[str, list[float]] = {k: [] for k in codecs}
            if big:  # too slow to repeat on a shared CPU: one profiled decode each
                pixels = {}
                for k in codecs:
                    times, pixels[k] = _decode_once(codecs[k], data)
                    dec[k].append(times)
                assert np.array_equal(pixels["reference"], pixels["runtime"])
                del pixels
            else:
                assert codecs["reference"].compress(image, quality) == data  # same stream
                first = {k: c.decompress(data) for k, c in codecs.items()}  # warm-up
                assert np.array_equal(first["reference"], first["runtime"])  # same pixels
                del first
            for r in range(0 if big else reps):
                order = list(codecs) if r % 2 == 0 else list(codecs)[::-1]
                for k in order:
                    dec[k].append(_decode_once(codecs[k], data)[0])
                    if not big:
                        t0 = time.perf_counter()
                        codecs[k].compress(image, quality)
                        enc[k].append((time.perf_counter() - t0) * 1e3)
                log(f"[profile] {w}x{h} {threads} thread(s): repeat {r + 1}/{reps}")
            run: dict[str, Any] = {"size": f"{w}x{h}", "threads": threads, "repeats": reps,
                                   "bytes": len(data), "decoders": {}}
            for k in codecs:
                med = {s: float(np.median([d[s] for d in dec[k]])) for s in dec[k][0]}
                run["decoders"][k] = {"decode_ms": med,
                                      "encode_ms": float(np.median(enc[k])) if enc[k] else None}
            for k, ref in (("reference", True), ("runtime", False)):
                run["decoders"][k]["ops_ms"] = (_ops(codecs[k], 1) if big
                                                else _op_profile(threads, ref, data, tmp))
            del codecs
            out["runs"].append(run)
            log(f"[profile] {w}x{h} {threads} thread(s): "
                + ", ".join(f"{k} {v['decode_ms']['total']:.0f} ms"
                            for k, v in run["decoders"].items()))
    out["load_end"] = os.getloadavg()[0]
    return out


def report(res: dict[str, Any]) -> str:
    """Markdown tables of a `profile` result."""
    lines = [
        "# Decode profile: `hyperprior`, reference (model files as they are) vs runtime",
        "",
        f"`aecodec tools profile`, quality {res['quality']}, onnxruntime "
        f"{res['ort']}, {res['cpus']} CPUs, load average {res['load_start']:.1f} at the start "
        f"and {res['load_end']:.1f} at the end (the CPU is shared: absolute times are inflated "
        "by other work; the ratios come from interleaved repeats). Medians, ms.",
        "",
        "## Per stage",
        "",
        "| size | threads | decoder | entropy z | hyper-decoder | entropy y | synthesis | other "
        "| **decode** | ratio | encode | ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in res["runs"]:
        ref = run["decoders"]["reference"]
        for k, d in run["decoders"].items():
            m = d["decode_ms"]
            enc = d["encode_ms"]
            enc_txt = f"{enc:.0f}" if enc is not None else "–"
            enc_ratio = (f"{enc / ref['encode_ms']:.2f}" if enc is not None else "–")
            lines.append(
                f"| {run['size']} | {run['threads']} | {k} | "
                + " | ".join(f"{m[s]:.1f}" for s in (*STAGES, "other"))
                + f" | **{m['total']:.0f}** | {m['total'] / ref['decode_ms']['total']:.2f} | "
                f"{enc_txt} | {enc_ratio} |")
    lines += ["", "## Per stage, CPU time of the process (ms; with 2 threads it includes "
              "ONNX Runtime's spin-waiting)", "",
              "| size | threads | decoder | entropy z | hyper-decoder | entropy y | synthesis "
              "| other | **decode** | ratio |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in res["runs"]:
        ref = run["decoders"]["reference"]["decode_ms"]["total cpu"]
        for k, d in run["decoders"].items():
            m = d["decode_ms"]
            lines.append(
                f"| {run['size']} | {run['threads']} | {k} | "
                + " | ".join(f"{m[s + ' cpu']:.1f}" for s in (*STAGES, "other"))
                + f" | **{m['total cpu']:.0f}** | {m['total cpu'] / ref:.2f} |")
    lines += ["", "## Synthesis per ONNX operator (ONNX Runtime profiler, ms per decode, share)",
              ""]
    for run in res["runs"]:
        lines.append(f"### {run['size']}, {run['threads']} thread(s)")
        lines.append("")
        lines.append("| operator | reference ms | % | runtime ms | % |")
        lines.append("|---|---:|---:|---:|---:|")
        ops = {k: {o: v for o, v in d["ops_ms"].items() if not o.startswith("_")}
               for k, d in run["decoders"].items()}
        tot = {k: sum(v.values()) or 1.0 for k, v in ops.items()}
        names = sorted(set(ops["reference"]) | set(ops["runtime"]),
                       key=lambda o: -(ops["reference"].get(o, 0) + ops["runtime"].get(o, 0)))
        for o in names:
            cells = []
            for k in ("reference", "runtime"):
                v = ops[k].get(o)
                cells += [f"{v:.1f}", f"{100 * v / tot[k]:.0f}"] if v else ["–", "–"]
            lines.append(f"| {o} | " + " | ".join(cells) + " |")
        lines.append(f"| **all** | {tot['reference']:.1f} | 100 | {tot['runtime']:.1f} | 100 |")
        lines.append("")
    return "\n".join(lines) + "\n"


@click.command("profile")
@click.option("--sizes", default="768x512,4000x3000", show_default=True,
              help="Comma list of WIDTHxHEIGHT.")
@click.option("--threads", default="1,2", show_default=True, help="Comma list of thread counts.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True)
@click.option("--large-repeats", type=click.IntRange(1), default=2, show_default=True)
@click.option("--quality", type=float, default=50, show_default=True)
@click.option("--kodak", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Kodak folder (default: ../shared/data/kodak or $AECODEC_SHARED).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results/speed"), show_default=True,
              help="Folder for profile.md and profile.json.")
def command(**options) -> None:
    """Where decoding time goes: per stage and per ONNX operator, the runtime against its
    reference."""
    _run(SimpleNamespace(**options))


def _run(a: SimpleNamespace) -> None:
    import tempfile
    kodak = a.kodak
    if kodak is None:
        shared = Path(os.environ.get("AECODEC_SHARED", "../shared"))
        kodak = shared / "data" / "kodak"
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",") if s]
    threads = [int(t) for t in a.threads.split(",") if t]
    with tempfile.TemporaryDirectory() as tmp:
        res = profile(sizes, threads, a.repeats, a.large_repeats, a.quality,
                      kodak if kodak.is_dir() else None, tmp)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "profile.json").write_text(json.dumps(res, indent=1))
    (a.out / "profile.md").write_text(report(res))
    click.echo(report(res))

def main(argv: list[str] | None = None) -> None:
    """`python -m aecodec.bench.profile`: the same command as `aecodec tools profile`."""
    command.main(args=argv, prog_name="python -m aecodec.bench.profile")


if __name__ == "__main__":
    main()
