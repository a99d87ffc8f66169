"""``aecodec bench``: rate-distortion and speed of aecodec against the classical codecs."""

from __future__ import annotations

from pathlib import Path

import click

from aecodec.errors import AecodecError

from .environment import available_cores
from .images import load_folder, sample_images
from .run import ALL_CODECS, run_bench


@click.command("bench")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False,
                                                          path_type=Path))
@click.option("--codecs", default=",".join(ALL_CODECS), show_default=True,
              help="Comma list: aecodec (every photo model), aecodec-<model>, "
                   "aecodec-<model folder> (its curve is aecodec-<its name>), jpeg, webp, "
                   "jpeg2000, avif, jxl.")
@click.option("--out", "outdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench-out"), show_default=True, help="Output folder.")
@click.option("--points", type=click.IntRange(1, 50), default=None,
              help="Settings per codec (default 8; 4 on the built-in sample).")
@click.option("--repeats", type=click.IntRange(0, 50), default=None,
              help="Speed repeats, median taken (default 3; 1 on the sample; 0 skips speed).")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Threads for codecs that take them (default: available cores).")
@click.option("--anchor", default="jpeg", show_default=True, help="BD-rate reference curve.")
@click.option("--speed-bpp", type=float, default=0.5, show_default=True,
              help="Speed is timed at each codec's setting nearest this bpp.")
@click.option("--visual-bpp", type=float, default=0.5, show_default=True,
              help="Target bpp of the crops in visual.png.")
@click.option("--visual-image", default=None, help="Image (name without suffix) for visual.png.")
@click.option("--max-images", type=click.IntRange(1), default=None,
              help="Use only the first N images of FOLDER.")
@click.option("--every", "every_image", type=click.IntRange(1), default=1, show_default=True,
              help="Use every K-th image of FOLDER only (sorted by name: 1, K+1, ...).")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes measuring points at once (for the slow per-image "
                   "codecs; their times are then taken beside each other's work).")
@click.option("--no-plots", is_flag=True, help="Skip the matplotlib RD plots.")
@click.option("--effort", "efforts", default="", metavar="N,N,...",
              help="Encoder efforts to add for the models effort optimises (curves "
                   "<model>+e<N>; effort 0 is the model's own curve), e.g. 1,3.")
@click.option("--effort-every", "effort_every", multiple=True, metavar="N=K",
              help="Run effort N on every K-th image only (images 1, K+1, ...), for the "
                   "slow levels; its BD figures use exactly those images. Repeatable.")
def bench(folder: Path | None, codecs: str, outdir: Path, points: int | None,
          repeats: int | None, threads: int | None, anchor: str, speed_bpp: float,
          visual_bpp: float, visual_image: str | None, max_images: int | None,
          every_image: int, jobs: int, no_plots: bool, efforts: str,
          effort_every: tuple[str, ...]) -> None:
    """Sweep FOLDER's images (default: a built-in sample, reduced sweep) through each codec."""
    if folder is None:
        images, source = sample_images(), "built-in sample"
        points = points or 4
        repeats = 1 if repeats is None else repeats
    else:
        try:
            images, source = load_folder(folder, max_images)[::every_image], str(folder)
        except AecodecError as e:  # no images, an unreadable one: one line naming it
            raise click.ClickException(str(e)) from None
        points = points or 8
        repeats = 3 if repeats is None else repeats
    names = [c.strip() for c in codecs.split(",") if c.strip()]
    levels = parse_efforts(efforts, effort_every)
    res = run_bench(images, source, names, outdir, points, repeats, threads or available_cores(),
                    anchor, speed_bpp, visual_bpp, visual_image, not no_plots,
                    log=lambda s: click.echo(s, err=True), efforts=levels, jobs=jobs)
    for name, b in res["bd"]["codecs"].items():
        if name != anchor and b["bd_rate"] is not None:
            click.echo(f"{name:>24}: BD-rate {100 * b['bd_rate']:+.1f} % vs {anchor}")
    for name, e in res["effort"].items():
        click.echo(f"{name:>24}: BD-rate {100 * e['bd_rate_vs_effort0']:+.1f} % vs effort 0, "
                   f"{e['encode_s']:.1f} s/image ({len(e['images'])} images)")
    click.echo(f"wrote {outdir}/results.json, report.md ({res['timing']['total_s']} s)")


def parse_efforts(efforts: str, every: tuple[str, ...]) -> dict[int, int]:
    """{effort: every k-th image} from "1,3" and ("3=4",); usage errors name the option."""
    from aecodec.effort import check_effort

    try:
        out = {check_effort(int(e)): 1 for e in efforts.split(",") if e.strip()}
        for spec in every:
            n, _, k = spec.partition("=")
            if check_effort(int(n)) not in out or int(k) < 1:
                raise ValueError(f"--effort-every {spec}: give N=K with N in --effort, K >= 1")
            out[int(n)] = int(k)
    except (TypeError, ValueError) as e:
        raise click.BadParameter(str(e)) from None
    return out


if __name__ == "__main__":
    bench()
