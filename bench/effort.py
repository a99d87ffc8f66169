"""Rate saved by the encoder-side optimisation (`effort=N`) on a named Kodak subset.

    nice aecodec tools effort --efforts 0,1,2 --qualities 29,58,86 \
        --images kodim01,kodim04 --out results/effort/kodak.json

Per effort: every (image, quality)'s bytes, PSNR of the exact decode and encode seconds;
then BD-rate against effort 0 (same images) and against JPEG (results/kodak per-image curves,
same images). Results are written after every encode, so an interrupted run keeps what it
measured. `--step-time` times one optimisation step at 768x512 instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np
from PIL import Image

from aecodec.metrics import psnr

from .bdrate import bd_rate

SUBSET = [f"kodim{i:02d}" for i in range(1, 25, 3)]  # kodim01, 04, ..., 22
KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
JPEG = Path(__file__).resolve().parents[1] / "results" / "kodak" / "results.json"


def mean_curve(rows: list[dict], images: list[str], key: str) -> tuple[list, list]:
    """Mean bpp and PSNR per setting over the images that have every setting."""
    by: dict[float, list] = {}
    for r in rows:
        if r["image"] in images:
            by.setdefault(r[key], []).append(r)
    pts = sorted((k, v) for k, v in by.items() if len({r["image"] for r in v}) == len(images))
    return ([float(np.mean([r["bpp"] for r in v])) for _, v in pts],
            [float(np.mean([r["psnr"] for r in v])) for _, v in pts])


def summarise(rows: list[dict], efforts: list[int]) -> dict:
    out: dict = {}
    images = sorted({r["image"] for r in rows})
    # images done at every (effort, quality) pair
    done = [i for i in images if all(
        any(r["image"] == i and r["effort"] == e and r["quality"] == q for r in rows)
        for e in efforts for q in {r["quality"] for r in rows})]
    jpeg_rows = []
    if JPEG.is_file():
        per = json.loads(JPEG.read_text())["per_image"].get("jpeg", {})
        jpeg_rows = [{"image": i, "setting": p["setting"], "bpp": p["bpp"], "psnr": p["psnr"]}
                     for i in done for p in per.get(i, [])]
    jr, jp = mean_curve(jpeg_rows, done, "setting") if jpeg_rows else ([], [])
    e_rows = {e: [dict(r, setting=r["quality"]) for r in rows if r["effort"] == e]
              for e in efforts}
    r0, p0 = mean_curve(e_rows[efforts[0]], done, "setting") if done else ([], [])
    for e in efforts:
        re_, pe = mean_curve(e_rows[e], done, "setting") if done else ([], [])
        sec = [r["seconds"] for r in e_rows[e] if r["image"] in done]
        out[str(e)] = {
            "images": done, "bpp": re_, "psnr": pe,
            "bd_rate_vs_effort0": bd_rate(r0, p0, re_, pe, "pchip") if done else None,
            "bd_rate_vs_jpeg": bd_rate(jr, jp, re_, pe, "pchip") if jr and done else None,
            "bytes_vs_effort0": [
                float(np.mean([r["bytes"] / b["bytes"] - 1 for r in e_rows[e] for b in
                               e_rows[efforts[0]] if r["image"] in done and
                               (b["image"], b["quality"]) == (r["image"], r["quality"])]))
            ] if done else None,
            "seconds_per_image": float(np.mean(sec)) if sec else None,
        }
    return out


def bench_summary(per_image: dict, curves: dict, anchor: str) -> dict:
    """For each `<model>+e<N>` curve of an `aecodec bench --effort` run: on exactly the images
    it ran on, BD-rate against the same model at effort 0 and against the anchor, the mean
    bytes change at equal settings, and encode seconds per image (mean over its points)."""
    from .sweep import mean_curves

    def cols(c):
        return [p["bpp"] for p in c], [p["psnr"] for p in c]

    out: dict = {}
    for name in curves:
        base, sep, level = name.rpartition("+e")
        if not sep or base not in per_image or not level.isdigit():
            continue
        images = list(per_image[name])
        sub = mean_curves({n: {i: per_image[n][i] for i in images}
                           for n in (name, base, anchor) if n in per_image})
        e, b = per_image[name], per_image[base]
        out[name] = {
            "effort": int(level), "images": images,
            "bd_rate_vs_effort0": bd_rate(*cols(sub[base]), *cols(sub[name]), "pchip"),
            "bd_rate_vs_anchor": (bd_rate(*cols(sub[anchor]), *cols(sub[name]), "pchip")
                                  if anchor in sub else None),
            "effort0_bd_rate_vs_anchor": (bd_rate(*cols(sub[anchor]), *cols(sub[base]),
                                                  "pchip") if anchor in sub else None),
            "bytes_vs_effort0": float(np.mean([p["bytes"] / q["bytes"] - 1 for i in images
                                               for p, q in zip(e[i], b[i], strict=True)])),
            "psnr_vs_effort0": float(np.mean([p["psnr"] - q["psnr"] for i in images
                                              for p, q in zip(e[i], b[i], strict=True)])),
            "encode_s": float(np.mean([p["enc_ms"] for i in images for p in e[i]]) / 1e3),
            "effort0_encode_s": float(np.mean([p["enc_ms"] for i in images for p in b[i]])
                                      / 1e3),
        }
    return out


def step_time(steps: int = 20) -> dict:
    """Seconds per optimisation step on a 768x512 image (kodim23), with torch's threads."""
    import aecodec
    from aecodec import effort as E

    img = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))
    c = aecodec.Codec("hyperprior-fast")
    a, _ = c.prepare(img)
    y = c.analyse(a)
    gain, _ = c.model.gains(58.0)
    E.optimise(c, a, y, gain, 58.0, 1)  # warm-up (twin built, kernels chosen)
    t = time.perf_counter()
    E.optimise(c, a, y, gain, 58.0, steps)
    dt = time.perf_counter() - t
    return {"steps": steps, "seconds_per_step": dt / steps, "image": "kodim23 768x512",
            "threads": E.threads(),
            "note": "includes one hard-rounded evaluation per 10 steps"}


@click.command("effort")
@click.option("--efforts", default="0,1,2", show_default=True, help="Comma list of efforts.")
@click.option("--qualities", default="29,58,86", show_default=True,
              help="Comma list of qualities.")
@click.option("--images", default=",".join(SUBSET), show_default=True,
              help="Comma list of Kodak image names.")
@click.option("--kodak", type=click.Path(file_okay=False, path_type=Path), default=KODAK,
              help="Kodak folder (default: ../shared/data/kodak).")
@click.option("--model", default="hyperprior-fast", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("results/effort/kodak.json"), show_default=True,
              help="JSON written after every encode (an existing one is resumed).")
@click.option("--step-time", is_flag=True, help="Time one optimisation step at 768x512 instead.")
def command(**options) -> None:
    """Rate saved by the encoder-side optimisation (effort=N) on a named Kodak subset."""
    _run(SimpleNamespace(**options))


def _run(args: SimpleNamespace) -> None:
    import os

    import aecodec

    env = {"load_average": os.getloadavg(), "cpus": os.cpu_count(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.step_time:
        res = {"step": step_time(), "environment": env}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))
        click.echo(json.dumps(res, indent=1))
        return
    efforts = [int(e) for e in args.efforts.split(",")]
    qualities = [float(q) for q in args.qualities.split(",")]
    codec = aecodec.Codec(args.model, threads=2)
    rows: list[dict] = []
    if args.out.is_file():  # resume
        rows = json.loads(args.out.read_text()).get("rows", [])
    for name in args.images.split(","):
        img = np.asarray(Image.open(args.kodak / f"{name}.png").convert("RGB"))
        for q in qualities:
            for e in efforts:
                if any((r["image"], r["quality"], r["effort"]) == (name, q, e) for r in rows):
                    continue
                t = time.perf_counter()
                data = codec.compress(img, q, effort=e)
                sec = time.perf_counter() - t
                p = psnr(codec.decompress(data), img)
                rows.append({"image": name, "quality": q, "effort": e, "bytes": len(data),
                             "bpp": 8 * len(data) / (img.shape[0] * img.shape[1]),
                             "psnr": p, "seconds": sec, "load": os.getloadavg()[0]})
                click.echo(f"{name} {q} {e} {len(data)} {p:.3f} {sec:.1f}s")
                res = {"model": args.model, "efforts": efforts, "qualities": qualities,
                       "steps": {str(k): v for k, v in __import__(
                           "aecodec.effort", fromlist=["STEPS"]).STEPS.items()},
                       "environment": env, "rows": rows, "summary": summarise(rows, efforts)}
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(res, indent=1))
    click.echo(json.dumps(summarise(rows, efforts), indent=1))

def main(argv: list[str] | None = None) -> None:
    """`python -m aecodec.bench.effort`: the same command as `aecodec tools effort`."""
    command.main(args=argv, prog_name="python -m aecodec.bench.effort")


if __name__ == "__main__":
    main()
