"""Time the decoder's upsampling choices in ONNX Runtime: transposed conv vs conv + pixel shuffle.

Both synthesis transforms are exported with the same widths and timed interleaved on the same
latent, so the ratio is fair even on a busy machine. Usage:
`python -m aecodec.export.decoder_speed [--n 128] [--m 192] [--threads 2]`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
import torch

from .layers import freeze_gdn
from .models import synthesis
from .onnx_export import _export_graph


@click.command()
@click.option("--n", type=int, default=128)
@click.option("--m", type=int, default=192)
@click.option("--threads", type=int, default=2)
@click.option("--height", type=int, default=512)
@click.option("--width", type=int, default=768)
@click.option("--repeats", type=int, default=7)
def main(n: int, m: int, threads: int, height: int, width: int, repeats: int) -> None:
    torch.manual_seed(0)
    y = torch.round(torch.randn(1, m, height // 16, width // 16) * 2)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("deconv", "subpel"):
            g = synthesis(n, m, kind).eval()
            freeze_gdn(g)
            path = Path(tmp) / f"{kind}.onnx"
            _export_graph(g, "y_hat", "x_hat", y, path, fp16=False)
            sessions[kind] = ort.InferenceSession(str(path), opts,
                                                  providers=["CPUExecutionProvider"])
    feed = {"y_hat": y.numpy()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, feed)
    for _ in range(repeats):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed)
            times[k].append((time.perf_counter() - t0) * 1e3)
    med = {k: float(np.median(v)) for k, v in times.items()}
    for k, v in med.items():
        click.echo(f"{k}: {v:.0f} ms (median of {repeats}, {threads} threads, {width}x{height})")
    click.echo(f"subpel / deconv time: {med['subpel'] / med['deconv']:.2f}")


if __name__ == "__main__":
    main()
