"""Large images in bounded memory: time and peak RSS of coding a 48-megapixel photo, and of
decoding hostile streams that declare 100 megapixels in a few bytes.

    aecodec tools large [--width 8000 --height 6000 --quality 50 --out FILE]
    aecodec tools large --hostile [--width 10000 --height 10000]
    aecodec tools large --width 4000 --height 3000 --compare-reference

The image is a mosaic of the Kodak photos (upscaled 2x, so it keeps photo statistics) or, with
no Kodak folder, a synthetic photo-like image. Encoding and decoding each run in a fresh child
process, whose peak resident memory (VmHWM of the child) is reported with its wall time:
the child holds the image, the stream and the decoded pixels, i.e. what the CLI would hold.
A hostile stream of each version (1: untiled, 2: tiled) carries the default model's id and
4-byte sections; its child reports the outcome (the error it raises) with time and memory.
`--compare-reference` also decodes the stream with the model's files run as they are
(`Model(rewrite=False, spinning=True)`, the decoder before issue 11), in a child of its own
before the runtime's decode, and reports the ratio of the two wall times.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np


def mosaic(width: int, height: int, folder: Path | None = None) -> np.ndarray:
    """A width x height RGB photo mosaic (Kodak, 2x upscaled), or a synthetic photo-like image."""
    from PIL import Image

    files = sorted(folder.glob("kodim*.png")) if folder and folder.is_dir() else []
    out = np.empty((height, width, 3), np.uint8)
    if not files:
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        for c in range(3):
            out[:, :, c] = (127 + 60 * np.sin(x / (97 + 31 * c)) * np.cos(y / 83)
                            + rng.normal(0, 6, (height, width))).clip(0, 255)
        return out
    k = 0
    for top in range(0, height, 1024):
        for left in range(0, width, 1536):
            with Image.open(files[k % len(files)]) as im:
                im = im.convert("RGB")
                if im.height > im.width:
                    im = im.transpose(Image.Transpose.ROTATE_90)
                tile = np.asarray(im.resize((1536, 1024), Image.Resampling.BICUBIC))
            k += 1
            h, w = min(1024, height - top), min(1536, width - left)
            out[top : top + h, left : left + w] = tile[:h, :w]
    return out


def hostile_stream(codec, version: int, width: int, height: int) -> bytes:
    """A stream that declares width x height pixels for `codec`'s model but whose sections are
    4 bytes each: version 1 (untiled) or 2 (tiled, the default tile side)."""
    from aecodec import container, tiles

    hy, wy = codec.latent_hw(height, width)
    tile = codec.tile // codec.stride if version == 2 else None
    count = codec.latent.section_count(tiles.TileGrid(hy, wy, tile))
    quality = 50.0 if codec.model.variable_rate else None
    header = container.Header(codec.model.id, width, height, False, quality, tile=tile)
    return container.pack(header, [b"\x01\x02\x03\x04"] * count)


def _child(args: SimpleNamespace) -> None:
    """One measured step in this process: prints its JSON result."""
    from aecodec.codec import Codec
    from aecodec.errors import AecodecError
    from aecodec.model import Model, find

    if args.reference:
        codec = Codec(Model(find(args.model), threads=args.threads, rewrite=False,
                            spinning=True))
    else:
        codec = Codec(args.model, threads=args.threads)
    t0 = time.perf_counter()
    if args.step.startswith("hostile"):
        data = hostile_stream(codec, int(args.step[-1]), args.width, args.height)
        t0 = time.perf_counter()
        try:
            codec.decompress(data)
            outcome = "decoded"
        except AecodecError as e:
            outcome = f"{type(e).__name__}: {e}"
        print(json.dumps({"step": args.step, "bytes": len(data), "outcome": outcome,
                          "seconds": round(time.perf_counter() - t0, 2),
                          "peak_rss_mb": peak_rss_mb()}))
        return
    if args.step == "encode":
        image = mosaic(args.width, args.height, args.kodak)
        t0 = time.perf_counter()
        data = codec.compress(image, args.quality)
        Path(args.stream).write_bytes(data)
        extra = {"bytes": len(data), "bpp": len(data) * 8 / (args.width * args.height)}
    else:
        data = Path(args.stream).read_bytes()
        t0 = time.perf_counter()
        pixels = codec.decompress(data)
    seconds, peak = time.perf_counter() - t0, peak_rss_mb()
    if args.step == "decode":  # after the measurement: the reference image costs memory
        image = mosaic(args.width, args.height, args.kodak)
        sse = sum(float(np.sum((pixels[r : r + 500].astype(np.float64) - image[r : r + 500]) ** 2))
                  for r in range(0, args.height, 500))
        extra = {"psnr": float(10 * np.log10(255**2 * image.size / sse))}
    print(json.dumps({"step": args.step, "seconds": round(seconds, 2), "peak_rss_mb": peak,
                      **extra}))


def peak_rss_mb() -> int:
    """This process's peak resident memory in MiB: VmHWM, which (unlike ru_maxrss, kept
    across exec) counts this program only; ru_maxrss where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale // 2**20


def run(width: int, height: int, quality: float, model: str | None, threads: int | None,
        kodak: Path | None, steps: tuple[str, ...] = ("encode", "decode"),
        compare_reference: bool = False) -> dict:
    """Encode then decode (or decode hostile streams) in child processes; the measurements.
    `compare_reference` adds a decode by the model files as they are, before the runtime's."""
    result: dict = {"width": width, "height": height, "megapixels": width * height / 1e6,
                    "quality": quality, "model": model or "default"}
    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp) / "large.aec"
        if compare_reference:
            steps = tuple(k for s in steps
                          for k in ((s + "_reference", s) if s == "decode" else (s,)))
        for key in steps:
            step = key.removesuffix("_reference")
            cmd = [sys.executable, "-m", "aecodec.bench.large", "--child", step,
                   "--width", str(width), "--height", str(height), "--quality", str(quality),
                   "--stream", str(stream)]
            cmd += ["--model", model] if model else []
            cmd += ["--threads", str(threads)] if threads else []
            cmd += ["--kodak", str(kodak)] if kodak else []
            cmd += ["--reference"] if key != step else []
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"{key} failed:\n{out.stderr}")
            result[key] = json.loads(out.stdout.strip().splitlines()[-1])
            result[key]["process_seconds"] = round(time.perf_counter() - t0, 2)
    if compare_reference and "decode" in result:
        result["decode_ratio"] = round(
            result["decode"]["seconds"] / result["decode_reference"]["seconds"], 3)
    return result


DEFAULT_KODAK = Path(os.environ.get("AECODEC_SHARED") or "../shared") / "data" / "kodak"


@click.command("large")
@click.option("--width", type=click.IntRange(1), default=8000, show_default=True)
@click.option("--height", type=click.IntRange(1), default=6000, show_default=True)
@click.option("--quality", type=float, default=50.0, show_default=True)
@click.option("--model", default=None, help="Model name or folder (default: the default).")
@click.option("--threads", type=click.IntRange(1), default=None)
@click.option("--kodak", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_KODAK if DEFAULT_KODAK.is_dir() else None,
              help="Kodak folder for the mosaic (default: ../shared/data/kodak if there).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON result here.")
@click.option("--hostile", is_flag=True,
              help="Decode 4-byte-section streams declaring WIDTH x HEIGHT (versions 1, 2).")
@click.option("--compare-reference", is_flag=True,
              help="Also decode with the model files run as they are; report the ratio.")
@click.option("--child", type=click.Choice(["encode", "decode", "hostile-v1", "hostile-v2"]),
              default=None, hidden=True)
@click.option("--reference", is_flag=True, hidden=True)
@click.option("--stream", default=None, hidden=True)
def command(**options) -> None:
    """Large images in bounded memory: time and peak RSS of coding a large photo (8000x6000
    by default), and of decoding hostile streams that declare it in a few bytes."""
    args = SimpleNamespace(**options)
    if args.child:
        args.step = args.child
        _child(args)
        return
    steps = ("hostile-v1", "hostile-v2") if args.hostile else ("encode", "decode")
    res = run(args.width, args.height, args.quality, args.model, args.threads, args.kodak, steps,
              args.compare_reference)
    text = json.dumps(res, indent=2)
    click.echo(text)
    if args.out:
        args.out.write_text(text + "\n")


def main(argv: list[str] | None = None) -> None:
    """`python -m aecodec.bench.large`: the same command as
    `aecodec tools large`."""
    command.main(args=argv, prog_name="python -m aecodec.bench.large")


if __name__ == "__main__":
    main()
