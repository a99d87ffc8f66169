"""`aecodec mnist ...`: train, export, figures, sample and bench for the MNIST models."""

from __future__ import annotations

from pathlib import Path

import click

from aecodec.bench.mnist_data import MnistNotFoundError
from aecodec.model import MODELS_DIR

KINDS = ("dense", "deep", "sparse", "conv", "denoise", "vae", "rd")
# the rate-distortion models (docs/mnist.md), each exported as mnist-<key>: `rd` (64 latents,
# 18-26 dB) and `rd-hq`, the same architecture with more capacity and levels up to 30+ dB
RD_MODELS = {
    "rd": {"kind": "rd", "latent": 64, "lambdas": (0.5, 1, 2, 4, 8, 16, 32, 64, 128),
           "minutes": 65.0, "seed": 0},
    "rd-hq": {"kind": "rd", "latent": 256, "width": (48, 96), "warmup": 600,
              "lambdas": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
              "minutes": 55.0, "seed": 0},
}
CHOICES = (*KINDS, *(k for k in RD_MODELS if k not in KINDS))  # what `train --model` takes
DATA_HELP = "folder with the MNIST IDX files (default: $AECODEC_MNIST or ../shared/data/mnist)"


def _data_guard(fn):
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except MnistNotFoundError as e:
            raise click.ClickException(str(e)) from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@click.group()
def mnist() -> None:
    """The seed autoencoders on MNIST (784-32-784, deep, sparse, conv, denoising, VAE)."""


@mnist.command()
@click.option("--model", "kinds", type=click.Choice([*CHOICES, "all"]), multiple=True,
              default=("all",), show_default=True, help="which model(s)")
@click.option("--minutes", type=float, default=None, help="time budget per model "
              "(default: 3.5 conv/vae, 3 denoise, 2 deep, 1.5 dense/sparse, 65 rd, "
              "55 rd-hq); an interrupted run resumes from its partial checkpoint")
@click.option("--data", default=None, help=DATA_HELP)
@click.option("--runs", default="runs/mnist", show_default=True, help="checkpoint folder")
@click.option("--export-to", default=str(MODELS_DIR), show_default=True,
              help="write the model folders mnist-<kind>/ here")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@_data_guard
def train(kinds, minutes, data, runs, export_to, seed, threads) -> None:
    """Train (time-boxed, CPU) and export the models."""
    import torch

    from aecodec.bench.mnist_data import load_mnist

    from .exporter import export_model
    from .train import load_checkpoint
    from .train import train as train_one

    budget = {"conv": 3.5, "vae": 3.5, "denoise": 3.0, "deep": 2.0, "dense": 1.5, "sparse": 1.5}
    budget.update({k: v["minutes"] for k, v in RD_MODELS.items()})
    kinds = CHOICES if "all" in kinds else kinds
    test, _ = load_mnist("test", data, limit=64)
    check = torch.from_numpy(test).float().div(255).unsqueeze(1)
    for k in kinds:
        ckpt = Path(runs) / f"{k}.pt"
        kind, extra = k, {}
        if k in RD_MODELS:
            spec = RD_MODELS[k]
            kind = spec["kind"]
            extra = {"latent": spec["latent"], "lambdas": spec["lambdas"], "resume": True}
            extra |= {key: spec[key] for key in ("width", "warmup") if key in spec}
        train_one(kind, data, ckpt, minutes=minutes or budget[k], seed=seed, threads=threads,
                  log=click.echo, **extra)
        model = load_checkpoint(ckpt)
        man = export_model(model, Path(export_to) / f"mnist-{k}", name=f"mnist-{k}",
                           record=model.record, check=check)
        click.echo(f"exported mnist-{k} (id {man['id']}) to {Path(export_to) / f'mnist-{k}'}")


@mnist.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, help="model folder to write")
@click.option("--name", default=None, help="model name (default mnist-<kind>)")
@click.option("--data", default=None, help=DATA_HELP)
@_data_guard
def export_cmd(checkpoint, out, name, data) -> None:
    """Export a checkpoint written by `train` as a model folder."""
    import torch

    from aecodec.bench.mnist_data import load_mnist

    from .exporter import export_model
    from .train import load_checkpoint

    model = load_checkpoint(checkpoint)
    test, _ = load_mnist("test", data, limit=64)
    check = torch.from_numpy(test).float().div(255).unsqueeze(1)
    man = export_model(model, out, name=name, record=model.record, check=check)
    click.echo(f"exported {man['name']} (id {man['id']}) to {out}; "
               f"ONNX parity {man['training']['onnx_parity']}")


@mnist.command()
@click.option("--out", default="docs/mnist", show_default=True, help="folder for the PNGs")
@click.option("--data", default=None, help=DATA_HELP)
@_data_guard
def figures(out, data) -> None:
    """Originals vs reconstructions, t-SNE latent map, VAE samples, denoising."""
    from aecodec.bench.mnist_figures import make_all

    make_all(out, data, log=click.echo)


@mnist.command()
@click.option("-n", "count", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", default="mnist-vae", show_default=True)
@click.option("-o", "--output", default="vae_samples.png", show_default=True,
              help="a grid PNG (8 per row)")
def sample(count, seed, model, output) -> None:
    """New digits from the VAE: synthesis(z) with z ~ N(0, I)."""
    from PIL import Image

    from aecodec.bench.mnist_figures import grid, vae_samples

    Image.fromarray(grid(vae_samples(count, seed, model))).save(output)
    click.echo(f"wrote {count} samples to {output}")


@mnist.command()
@click.option("--digits", type=int, default=1000, show_default=True,
              help="first N test digits")
@click.option("--data", default=None, help=DATA_HELP)
@click.option("--out", default="docs/mnist", show_default=True,
              help="folder for mnist_bench.json / mnist_bench.md")
@click.option("--model", "models", multiple=True, help="mnist-* models (default: all shipped)")
@click.option("--update-manifests", is_flag=True,
              help="record the measured curves in the shipped manifests' results")
@click.option("--refine", type=int, default=0, show_default=True,
              help="also bench the mnist-rd* models with N rounds of encoder-side latent search")
@click.option("--refine-model", "refine_models", multiple=True,
              help="the models --refine searches (default: every mnist-rd*)")
@_data_guard
def bench(digits, data, out, models, update_manifests, refine, refine_models) -> None:
    """Bytes per digit and PSNR vs JPEG, WebP, PNG, AVIF; ratio at equal PSNR; RD plot."""
    import json

    from aecodec.bench import mnist as mb

    res = mb.run(digits, data, list(models) or None, log=click.echo, refine=refine,
                 refine_models=list(refine_models) or None)
    md = mb.markdown(res)
    click.echo(md)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    (outp / "mnist_bench.json").write_text(json.dumps(res, indent=1) + "\n")
    (outp / "mnist_bench.md").write_text(md)
    if mb.plot(res, outp / "mnist_rd.png"):
        click.echo(f"wrote {outp / 'mnist_rd.png'}")
    if update_manifests:
        import aecodec

        from ..folder import update_manifest

        for name in res["learned"]:
            if "+search" in name:
                continue
            summary = manifest_results(res, name)
            update_manifest(aecodec.Codec(name).model.path,
                            lambda m, s=summary: m.__setitem__("results", s))


def manifest_results(res: dict, name: str) -> dict:
    """A short summary of the bench for a manifest's `results` (shown by `aecodec models`)."""
    rows = [r for r in res["learned"][name] if r["setting"] in (1, 50, 100)]
    pts = "; ".join(f"q{r['setting']:g} {r['bytes']:.1f} B {r['psnr']:.2f} dB" for r in rows)
    best = max(res["learned"][name], key=lambda r: r["ratio"] or 0)
    return {
        f"mnist_test{res['digits']}": f"{pts} (bytes per digit, header included)",
        "vs_classical": f"{best['ratio']:.1f}x fewer bytes than {best['classical_best']} "
                        f"({best['classical_bytes_at_psnr']:.0f} B) at q{best['setting']:g}",
    }
