"""The rate a trained context model saves, measured with the runtime's own pieces.

The shipped model's ONNX hyper-analysis, its exact integer hyper-decoder, its probability tables
(escape codes included) and the exact integer context networks (`aecodec.ctxnet`): the bits are
what the range coder would write for y and z, so the saving is the real one at equal pixels
(y, and so the decoded image, is unchanged).

aecodec train eval-context runs/ctx/context.pt runs/kodak_latents.npz

With `--bench results.json` the BD-rate it implies follows, from the bench's own projection
(`aecodec.bench.context_projection`, run as its command).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import torch

from .context import ContextConfig, ContextModel
from .latents import load_latents

BENCH_QUALITIES = (1, 15, 29, 43, 58, 72, 86, 100)  # the bench's 8 settings of aecodec models


def load_context(path: Path, scale_only: bool = False) -> ContextModel:
    """A trained context model, quantized; `scale_only` drops its mean refinements, so y_hat
    (and the decoded pixels) stay exactly the base model's and only the rate changes."""
    st = torch.load(path, weights_only=False, map_location="cpu")
    model = ContextModel(ContextConfig(**st["config"]))
    model.load_state_dict(st["model"])
    if scale_only:
        with torch.no_grad():
            for net in model.nets.values():
                net.l2.w[: net.ms] = 0
                net.l2.b[: net.ms] = 0
    model.quantize = True
    return model.eval()


def image_bits(codec, net: dict | None, y: np.ndarray, quality: float) -> tuple[float, float]:
    """(z bits, y bits) of one latent at a quality; net None: the hyperprior alone."""
    from aecodec import ctxnet
    from aecodec.latent.base import channel_index
    from aecodec.tiles import TileGrid

    gain, _ = codec.model.gains(quality)
    lc = codec.latent  # the base hyperprior's latent codec
    z_sym = lc.hyper_latents(y, gain, TileGrid(y.shape[1], y.shape[2]))
    zt = codec.model.z_tables
    z_bits = zt.estimate_bits(z_sym.ravel(), channel_index(z_sym.shape))
    y_g = y.astype(np.float64) * gain[:, None, None]
    mu, idx = lc.entropy_params(z_sym, y_g.shape)
    idx = idx.astype(np.int64)
    yt = codec.model.y_tables
    if net is None:
        return z_bits, yt.estimate_bits(np.rint(y_g - mu).ravel(), idx)
    mean16 = np.rint(mu * 16).astype(np.int64)
    idx = idx.reshape(y_g.shape)
    ms = y_g.shape[0] // int(net["slices"])
    bits = [0.0]

    def code(step, mask, mu16, ix):
        cs = slice(step[0] * ms, (step[0] + 1) * ms)
        sym = np.rint(y_g[cs] - mu16 / 16)
        bits[0] += yt.estimate_bits(sym[:, mask].ravel(), ix[:, mask].ravel())
        return sym.astype(np.int64)

    ctxnet.code_region(net, mean16, idx, code)
    return z_bits, bits[0]


def runtime_saving(ckpt: Path, latents: dict[str, np.ndarray], qualities=BENCH_QUALITIES,
                   model: str = "hyperprior", scale_only: bool = False) -> list[dict]:
    import aecodec

    codec = aecodec.Codec(model, threads=1)
    net = load_context(ckpt, scale_only).to_numpy()
    rows = []
    for q in qualities:
        per = []
        for name, y in sorted(latents.items()):
            zb, base = image_bits(codec, None, y, q)
            _, ctx = image_bits(codec, net, y, q)
            per.append({"image": name, "z_bits": zb, "y_bits_base": base, "y_bits_ctx": ctx})
        base = sum(r["z_bits"] + r["y_bits_base"] for r in per)
        ctx = sum(r["z_bits"] + r["y_bits_ctx"] for r in per)
        rows.append({"quality": q, "bits_base": base, "bits_ctx": ctx, "saved": 1 - ctx / base,
                     "images": per})
    return rows


@click.command("eval-context")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("latents", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON with every image's bits.")
@click.option("--bench", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="results.json of a bench of the base model on the same images.")
@click.option("--scale-only", is_flag=True,
              help="Drop the mean refinements (pixels stay exactly the base model's).")
def command(checkpoint: Path, latents: Path, out: Path | None, bench: Path | None,
            scale_only: bool) -> None:
    """Measure a context model's saving: the rate CHECKPOINT's context model saves on
    LATENTS, with the runtime's own pieces."""
    rows = runtime_saving(checkpoint, load_latents(latents), scale_only=scale_only)
    for r in rows:
        click.echo(f"quality {r['quality']:5.1f}: {r['bits_base'] / 8:10.0f} B -> "
                   f"{r['bits_ctx'] / 8:10.0f} B, saved {r['saved'] * 100:+.2f} %")
    if out is None and bench is None:
        return
    out = out or Path(tempfile.mkdtemp()) / "saving.json"
    out.write_text(json.dumps({"qualities": rows}, indent=1))
    if bench:  # the projection is the bench's: run as its command, export imports no bench
        sys.stdout.flush()
        subprocess.run([sys.executable, "-m", "aecodec.bench.context_projection", str(out),
                        str(bench)], check=True)


def main(argv: list[str] | None = None) -> None:
    """`python -m aecodec.export.eval_context`: the same command as
    `aecodec train eval-context`."""
    command.main(args=argv, prog_name="python -m aecodec.export.eval_context")


def curve_markdown(runs: list[Path]) -> str:
    """The learning curves of training runs (their curve.jsonl) as one markdown table:
    rate saved on Kodak latents (12 images) per quality, by crops seen."""
    lines = ["| variant | crops | QAT | Kodak q1 | q30 | q60 | q100 | held-out q1 | q50 | q100 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        points = {}  # a resumed run re-measures the crops since its checkpoint: keep the last
        for line in (run / "curve.jsonl").read_text().splitlines():
            r = json.loads(line)
            points[r["crops"]] = r
        for r in sorted(points.values(), key=lambda r: r["crops"]):
            k = " | ".join(f"{x['saved'] * 100:+.2f} %" for x in r.get("kodak", []))
            v = " | ".join(f"{x['saved'] * 100:+.2f} %" for x in r["val"])
            lines.append(f"| {run.name} | {r['crops']:,} | {'yes' if r['qat'] else 'no'} | "
                         f"{k} | {v} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
