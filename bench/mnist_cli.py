"""`aecodec mnist figures|sample|bench`: the MNIST commands that need only the runtime (the
group that also holds the torch side's `train` and `export` is `aecodec.mnist_cli`)."""

from __future__ import annotations

from pathlib import Path

import click

from aecodec.mnist_cli import DATA_HELP, data_guard


@click.command()
@click.option("--out", default="docs/mnist", show_default=True, help="folder for the PNGs")
@click.option("--data", default=None, help=DATA_HELP)
@data_guard
def figures(out, data) -> None:
    """Originals vs reconstructions, t-SNE latent map, VAE samples, denoising."""
    from .mnist_figures import make_all

    make_all(out, data, log=click.echo)


@click.command()
@click.option("-n", "count", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", default="mnist-vae", show_default=True)
@click.option("-o", "--output", default="vae_samples.png", show_default=True,
              help="a grid PNG (8 per row)")
def sample(count, seed, model, output) -> None:
    """New digits from the VAE: synthesis(z) with z ~ N(0, I)."""
    from PIL import Image

    from .mnist_figures import grid, vae_samples

    Image.fromarray(grid(vae_samples(count, seed, model))).save(output)
    click.echo(f"wrote {count} samples to {output}")


@click.command()
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
@data_guard
def bench(digits, data, out, models, update_manifests, refine, refine_models) -> None:
    """Bytes per digit and PSNR vs JPEG, WebP, PNG, AVIF; ratio at equal PSNR; RD plot."""
    import json

    from . import mnist as mb

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
        from aecodec.manifest import update_manifest

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
