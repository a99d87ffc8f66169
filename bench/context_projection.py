"""The BD-rate a context model's saving implies, projected onto a bench run of its base model.

The saving (bits per image and quality) is measured on the torch side
(`aecodec train eval-context CKPT LATENTS --out SAVING.json`); the projection is the bench's
BD-rate on the bench's own results, so it lives here (runtime and numpy only).

    aecodec tools context-projection SAVING.json RESULTS.json
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from .bdrate import bd_rate


def projected_bd(rows: list[dict], results: Path, codec: str = "aecodec-hyperprior") -> dict:
    """BD-rates from a bench run of the base model with every stream shortened by the y bits
    the context saves on that image and setting (pixels are unchanged, so PSNR is too)."""
    res = json.loads(Path(results).read_text())
    per = res["per_image"][codec]
    saved = {(r["quality"], Path(i["image"]).stem): (i["y_bits_base"] - i["y_bits_ctx"]) / 8
             for r in rows for i in r["images"]}
    base_curve, new_curve = [], []
    for k, pt in enumerate(res["curves"][codec]):
        q = pt["setting"]
        olds = [img[k]["bytes"] * 8 / img[k]["bpp"] for img in per.values()]  # pixels
        new_bpp = [(img[k]["bytes"] - saved[(q, name)]) * 8 / px
                   for (name, img), px in zip(per.items(), olds, strict=True)]
        base_curve.append((pt["bpp"], pt["psnr"]))
        new_curve.append((float(np.mean(new_bpp)), pt["psnr"]))
    jpeg = [(p["bpp"], p["psnr"]) for p in res["curves"]["jpeg"]]

    def bd(a, b):
        return bd_rate([p[0] for p in a], [p[1] for p in a], [p[0] for p in b], [p[1] for p in b])

    return {"bd_vs_base": bd(base_curve, new_curve), "bd_base_vs_jpeg": bd(jpeg, base_curve),
            "bd_ctx_vs_jpeg": bd(jpeg, new_curve),
            "curve": [{"quality": r["quality"], "bpp_base": b[0], "bpp_ctx": n[0], "psnr": b[1]}
                      for r, b, n in zip(rows, base_curve, new_curve, strict=True)]}


@click.command("context-projection")
@click.argument("saving", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def command(saving: Path, results: Path) -> None:
    """The BD-rate a context model's saving implies, projected onto a bench run of its base
    model: SAVING is the JSON `aecodec train eval-context --out` writes, RESULTS the
    results.json of a bench of the base model. Prints it and adds it to SAVING (under
    `projected`)."""
    out = json.loads(saving.read_text())
    pr = out["projected"] = projected_bd(out["qualities"], results)
    click.echo(f"BD-rate vs the base model {pr['bd_vs_base']:+.2%}; vs JPEG: base "
               f"{pr['bd_base_vs_jpeg']:+.2%}, with the context {pr['bd_ctx_vs_jpeg']:+.2%}")
    saving.write_text(json.dumps(out, indent=1))

def main(argv: list[str] | None = None) -> None:
    """`python -m aecodec.bench.context_projection`: the same command as
    `aecodec tools context-projection`."""
    command.main(args=argv, prog_name="python -m aecodec.bench.context_projection")


if __name__ == "__main__":
    main()
