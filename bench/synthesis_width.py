"""What a lighter 8-bit synthesis would decode at: CPU time by channel width, random weights.

    aecodec tools synthesis-width [--repeats 5] [--out results/speed/synthesis-width.md]

Builds the runtime's form of the exact 8-bit synthesis (codec/fast_synthesis.py: the same
operators, channels-last) with random weights for other widths of the three normalised stages
(the shipped model is 128, 128, 128), and times one 768x512 synthesis per graph with one
thread (CPU time of the calling thread: what a busy machine inflates least), interleaved,
against the shipped file and its runtime rewrite. Speed only: such a network must first be
trained (decoder-only, from the frozen latents) and fine-tuned to 8 bits, at some cost in
rate-distortion that this does not measure.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np

WIDTHS = [(128, 128, 128), (128, 128, 96), (128, 128, 80), (128, 128, 64), (96, 96, 96),
          (128, 96, 48), (64, 64, 64)]


def build(chans: tuple[int, int, int], m: int = 192, seed: int = 0) -> bytes:
    """An 8-bit synthesis graph in the runtime's form with random weights."""
    from aecodec.fast_synthesis import exact_u8s8
    from aecodec.onnx_wire import Graph, Node, write_model

    signed = exact_u8s8()  # the normaliser's gamma as the runtime stores it on this CPU
    rng = np.random.default_rng(seed)
    nodes: list[Node] = []
    inits = {"one": np.float32(1), "zp128": np.uint8(128), "zp0": np.uint8(0),
             "u128": np.uint8(128), "h127": np.float32(127.5), "f256": np.float32(256),
             "i256": np.int32(256), "i1": np.array([1], np.int64), "i2": np.array([2], np.int64),
             "i3": np.array([3], np.int64), "cn": np.array([12], np.int64),
             "s_in0": np.full((1, m, 1, 1), 0.05, np.float32), "gzp": np.int8(-128)}

    def op(kind: str, ins: list[str], **attrs) -> str:
        out = f"t{len(nodes)}"
        nodes.append(Node(kind, ins, [out], attrs))
        return out

    x = op("QuantizeLinear", [op("Div", ["y_hat", "s_in0"]), "one", "zp128"])
    cin = m
    for k in range(4):
        last = k == 3
        out_c = 16 if last else 4 * chans[k]
        inits.update({f"w{k}": rng.integers(-20, 21, (out_c, cin, 3, 3)).astype(np.int8),
                      f"w{k}_scale": np.full(out_c, 1e-3, np.float32),
                      f"w{k}_zp": np.zeros(out_c, np.int8), f"b{k}": np.zeros(out_c, np.int32)})
        if k:
            x = op("Transpose", [x], perm=[0, 3, 1, 2])
        x = op("QLinearConv", [x, "one", "zp128", f"w{k}", f"w{k}_scale", f"w{k}_zp", "one",
                               "zp0" if last else "zp128", f"b{k}"], pads=[1, 1, 1, 1])
        if last:
            x = op("Slice", [x, op("Sub", ["i1", "i1"]), "cn", "i1"])
            nodes.append(Node("DepthToSpace", [x], ["pixels"], {"blocksize": 2, "mode": b"CRD"}))
            break
        c = cin = chans[k]
        x = op("Transpose", [x], perm=[0, 2, 3, 1])
        hw = op("Slice", [op("Shape", [x]), "i1", "i3"])
        inits[f"shape{k}"], inits[f"c{k}"] = np.array([2, 2, c]), np.array([c])
        x = op("Reshape", [x, op("Concat", ["i1", hw, f"shape{k}"], axis=0)])
        x = op("Transpose", [x], perm=[0, 1, 3, 2, 4, 5])
        x = op("Reshape", [x, op("Concat", ["i1", op("Mul", [hw, "i2"]), f"c{k}"], axis=0)])
        gamma = rng.integers(0, 30, (c, c))
        inits[f"gamma{k}"] = (gamma - 128).astype(np.int8) if signed else gamma.astype(np.uint8)
        g_in = [f"gamma{k}", "zp0", "gzp"] if signed else [f"gamma{k}"]
        inits[f"beta{k}"] = np.full(c, 1 << 20, np.int32)
        inits[f"k{k}"] = np.full(c, 1e-6, np.float32)
        u = op("DequantizeLinear", [x, "one", "zp128"])
        sq = op("Mul", [u, u])
        hi = op("QuantizeLinear", [op("Sub", [sq, "h127"]), "f256", "zp0"])
        d = op("Add", [x, "u128"])
        lo = op("Mul", [d, d])
        n = op("Add", [op("Mul", [op("MatMulInteger", [hi, *g_in]), "i256"]),
                       op("MatMulInteger", [lo, *g_in])])
        n = op("Add", [n, f"beta{k}"])
        r = op("Sqrt", [op("Mul", [op("Cast", [n], to=1), f"k{k}"])])
        x = op("QuantizeLinear", [op("Mul", [u, r]), "one", "zp128"])
    inits = {k: np.asarray(v, np.int64) if k.startswith(("shape", "c")) and k != "cn" else v
             for k, v in inits.items()}
    return write_model(Graph(nodes, inits, ["y_hat"], ["pixels"]), {"y_hat": (np.float32, 4)},
                       {"pixels": (np.uint8, 4)})


@click.command("synthesis-width")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True,
              help="Interleaved timings per graph (the median is kept).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("results/speed/synthesis-width.md"), show_default=True,
              help="Markdown table to write.")
def command(**options) -> None:
    """What a lighter 8-bit synthesis would decode at: CPU time by channel width, random
    weights."""
    _run(SimpleNamespace(**options))


def _run(a: SimpleNamespace) -> None:
    import onnxruntime as ort

    from aecodec.fast_synthesis import rewrite
    from aecodec.model import MODELS_DIR

    def session(data: bytes, spin: bool):
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        o.add_session_config_entry("session.disable_quant_qdq", "1")
        o.add_session_config_entry("session.intra_op.allow_spinning", str(int(spin)))
        return ort.InferenceSession(data, o, providers=["CPUExecutionProvider"])

    shipped = (MODELS_DIR / "hyperprior" / "synthesis.onnx").read_bytes()
    graphs = {"shipped file": session(shipped, True), "runtime rewrite": session(
        rewrite(shipped), False)}
    fast = MODELS_DIR / "hyperprior-fast" / "synthesis.onnx"
    if fast.is_file():  # the trained lighter synthesis, as the runtime runs it
        graphs["hyperprior-fast (trained, runtime rewrite)"] = session(
            rewrite(fast.read_bytes()), False)
    graphs |= {"widths " + "/".join(map(str, w)): session(build(w), False) for w in WIDTHS}
    x = np.random.default_rng(1).normal(0, 2, (1, 192, 32, 48)).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in graphs}
    for r in range(a.repeats):
        for k in (list(graphs) if r % 2 else list(graphs)[::-1]):
            c0 = time.thread_time()
            graphs[k].run(None, {"y_hat": x})
            times[k].append(time.thread_time() - c0)
    base = float(np.median(times["shipped file"]))
    lines = ["# 8-bit synthesis speed by channel width (768x512, 1 thread, CPU ms)", "",
             "`aecodec tools synthesis-width`: random weights, the runtime's operators;"
             " medians of interleaved repeats. Speed only, no rate-distortion.", "",
             "| graph | CPU ms | ratio to the shipped file |", "|---|---:|---:|"]
    for k, v in times.items():
        lines.append(f"| {k} | {np.median(v) * 1e3:.0f} | {np.median(v) / base:.2f} |")
    text = "\n".join(lines) + "\n"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    click.echo(text)

def main(argv: list[str] | None = None) -> None:
    """`python -m aecodec.bench.synthesis_width`: the same command as
    `aecodec tools synthesis-width`."""
    command.main(args=argv, prog_name="python -m aecodec.bench.synthesis_width")


if __name__ == "__main__":
    main()
