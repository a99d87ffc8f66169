"""Human-readable outputs from results.json: Markdown tables, RD plots, a visual crop mosaic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from aecodec.metrics import psnr

from .load import describe as describe_load
from .metrics import ms_ssim_db


def _f(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:+.1f} %"


def _jobs_line(jobs: int) -> str:
    if jobs <= 1:
        return ""
    return (f" Points were measured by {jobs} worker processes at once: each time was taken "
            f"beside the other workers' encodes.")


def markdown(res: dict[str, Any]) -> str:
    """report.md: BD table, speed table, one table per curve, environment."""
    env, cfg, bd = res["environment"], res["config"], res["bd"]
    lines = [
        "# aecodec bench report",
        "",
        f"{res['images']['count']} images from `{res['images']['source']}`, "
        f"{cfg['points']} points per codec, {env['threads']} threads, {env['cpu']}, "
        f"{env['date']}." + _jobs_line(cfg.get("jobs", 1)),
        "",
        f"## BD against {bd['anchor']} (mean curves)",
        "",
        "BD-rate: cubic fit of log-rate over the PSNR overlap (Bjøntegaard); pchip: monotone "
        "piecewise-cubic; MS-SSIM: the same on MS-SSIM in dB. Size ratio: file size / anchor's "
        "at equal PSNR.",
        "",
    ]
    psnrs = next(iter(bd["codecs"].values()), {}).get("size_ratio_at_psnr", {})
    rates = next(iter(bd["codecs"].values()), {}).get("psnr_at_bpp", {})
    head = ["codec", "BD-rate", "BD-rate pchip", "BD-PSNR", "BD-rate MS-SSIM"]
    head += [f"size @{k} dB" for k in psnrs] + [f"dB @{k} bpp" for k in rates]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, b in bd["codecs"].items():
        row = [name, _pct(b["bd_rate"]), _pct(b["bd_rate_pchip"]),
               _f(b["bd_psnr"], "+.2f") + " dB", _pct(b["bd_rate_msssim"])]
        row += [_f(v, ".3f") for v in b["size_ratio_at_psnr"].values()]
        row += [_f(v, ".2f") for v in b["psnr_at_bpp"].values()]
        lines.append("| " + " | ".join(row) + " |")
    eff = res.get("effort") or {}
    if eff:
        lines += ["", "## Encoder effort (each on exactly the images it ran on)", "",
                  "| curve | images | BD-rate vs effort 0 | BD-rate vs " + bd["anchor"]
                  + " | effort 0 vs " + bd["anchor"] + " (same images) | bytes vs effort 0 "
                  "(same settings) | dPSNR | encode s/image | effort 0 s/image |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, e in eff.items():
            lines.append(f"| {name} | {len(e['images'])} | {_pct(e['bd_rate_vs_effort0'])} | "
                         f"{_pct(e['bd_rate_vs_anchor'])} | "
                         f"{_pct(e['effort0_bd_rate_vs_anchor'])} | "
                         f"{_pct(e['bytes_vs_effort0'])} | {e['psnr_vs_effort0']:+.3f} dB | "
                         f"{e['encode_s']:.1f} | {e['effort0_encode_s']:.2f} |")
    sp = res.get("speed") or {}
    if sp.get("codecs"):
        lines += ["", f"## Speed (setting nearest {sp['target_bpp']} bpp, median of "
                  f"{sp['repeats']} interleaved repeats, mean over images)", "",
                  "| codec | setting | bpp | threads | encode ms | decode ms | encode MP/s | "
                  "decode MP/s |", "|---|---|---|---|---|---|---|---|"]
        for name, s in sp["codecs"].items():
            lines.append(f"| {name} | {s['setting']:g} | {s['bpp']:.3f} | {s['threads']} | "
                         f"{s['enc_ms']:.1f} | {s['dec_ms']:.1f} | {s['enc_mpix_s']:.2f} | "
                         f"{s['dec_mpix_s']:.2f} |")
    lines += ["", "## Curves (means over images; times are single measurements)", ""]
    for name, curve in res["curves"].items():
        knob = cfg["settings"][name]["knob"]
        knob = "target bpp" if knob == "bpp" else knob
        lines += [f"### {name}", "", f"| {knob} | bpp | PSNR dB | MS-SSIM | MS-SSIM dB | "
                  "enc ms | dec ms |", "|---|---|---|---|---|---|---|"]
        for p in curve:
            ms = p["ms_ssim"]
            lines.append(
                f"| {p['setting']:g} | {p['bpp']:.4f} | {p['psnr']:.3f} | {_f(ms, '.5f')} | "
                f"{_f(None if ms is None else ms_ssim_db(ms), '.2f')} | {p['enc_ms']:.1f} | "
                f"{p['dec_ms']:.1f} |")
        lines.append("")
    lines += ["## Environment", ""] + [f"- {k}: {v}" for k, v in env["versions"].items()]
    load = env.get("load") or {}
    lines += [f"- cpu: {env['cpu']} ({env['cores']} cores), threads: {env['threads']}",
              f"- machine load at the start: {describe_load(load.get('start'))}",
              f"- machine load at the end: {describe_load(load.get('end'))}",
              *[f"- skipped: {s}" for s in res.get("skipped", [])],
              f"- timing: {res.get('timing')}", ""]
    return "\n".join(lines)


def plot_curves(res: dict[str, Any], outdir: Path) -> list[str]:
    """rd_psnr.png and rd_msssim.png; returns the files written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for key, fname, ylabel in (("psnr", "rd_psnr.png", "PSNR-RGB (dB)"),
                               ("ms_ssim", "rd_msssim.png", "MS-SSIM (dB, -10 log10(1 - v))")):
        fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
        for name, curve in res["curves"].items():
            pts = [(p["bpp"], p[key]) for p in curve if p[key] is not None]
            if key == "ms_ssim":
                pts = [(b, ms_ssim_db(v)) for b, v in pts]
            if pts:
                style = "-" if name.startswith("aecodec") else "--"
                ax.plot(*zip(*pts, strict=True), style, marker="o", ms=3, label=name)
        ax.set_xlabel("bits per pixel (file size)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{res['images']['source']} ({res['images']['count']} images)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(outdir / fname)
        plt.close(fig)
        written.append(fname)
    return written


def detailed_crop(img: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size block with the most detail (gradient energy)."""
    g = np.abs(np.diff(img.astype(np.float32).mean(-1), axis=1))[:-1] + np.abs(
        np.diff(img.astype(np.float32).mean(-1), axis=0))[:, :-1]
    h, w = img.shape[:2]
    best, corner = -1.0, (0, 0)
    step = max(size // 4, 8)
    for y in range(0, max(h - size, 0) + 1, step):
        for x in range(0, max(w - size, 0) + 1, step):
            e = float(np.median(g[y : y + size, x : x + size]))
            if e > best:
                best, corner = e, (y, x)
    return corner


def setting_for_bpp(codec: Any, img: np.ndarray, target_bpp: float, steps: int = 8) -> float:
    """Bisect the codec's knob (rate grows with it) for the file nearest target_bpp on img."""
    lo, hi = float(codec.lo), float(codec.hi)
    integer = getattr(codec, "integer", True)
    npix = img.shape[0] * img.shape[1]
    tried: dict[float, float] = {}

    def bpp(s: float) -> float:
        if s not in tried:
            tried[s] = len(codec.encode(img, s)) * 8 / npix
        return tried[s]

    for _ in range(steps):
        mid = (lo + hi) / 2
        mid = float(round(mid)) if integer else round(mid, 4)
        if mid in tried or not lo <= mid <= hi:
            break
        if bpp(mid) < target_bpp:
            lo = mid
        else:
            hi = mid
    for s in (lo, hi):
        s = float(round(s)) if integer else s
        bpp(s)
    return min(tried, key=lambda s: abs(np.log(tried[s] / target_bpp)))


def visual_mosaic(
    img: np.ndarray, image_name: str, codecs: dict[str, Any],
    points: dict[str, list[dict[str, Any]]], target_bpp: float, path: Path,
    crop: int = 192, zoom: int = 2, columns: int = 4,
) -> dict[str, Any]:
    """Crops of one image from each codec at about target_bpp, labelled, as one PNG.

    The knob is bisected on this image (else the nearest of ``points[codec]``, that image's
    sweep points); returns what was shown, for results.json.
    """
    crop = min(crop, *img.shape[:2])
    y, x = detailed_crop(img, crop)
    tiles = [("original", img)]
    shown: dict[str, Any] = {"image": image_name, "crop": [y, x, crop], "target_bpp": target_bpp,
                             "codecs": {}}
    for name, codec in codecs.items():
        if getattr(codec, "slow", False):  # minutes per encode: not trained again for a picture
            shown["codecs"][name] = {"skipped": "trains per image; its sweep points stand"}
            continue
        if hasattr(codec, "lo") and hasattr(codec, "hi") and not getattr(codec, "effort", 0):
            setting = setting_for_bpp(codec, img, target_bpp)  # (slow efforts: a sweep point)
        else:
            setting = min(points[name], key=lambda p: abs(np.log(p["bpp"] / target_bpp)))[
                "setting"]
        data = codec.encode(img, setting)
        rec = codec.decode(data)
        bpp = len(data) * 8 / (img.shape[0] * img.shape[1])
        label = f"{name} {setting:g}: {bpp:.2f} bpp {psnr(img, rec):.1f} dB"
        shown["codecs"][name] = {"setting": setting, "bpp": bpp}
        tiles.append((label, rec))
    font = ImageFont.load_default(size=14)
    tw, th, pad = crop * zoom, crop * zoom, 22
    rows = (len(tiles) + columns - 1) // columns
    cols = min(columns, len(tiles))
    canvas = Image.new("RGB", (cols * tw, rows * (th + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, im) in enumerate(tiles):
        r, c = divmod(i, columns)
        tile = Image.fromarray(np.ascontiguousarray(im[y : y + crop, x : x + crop]))
        canvas.paste(tile.resize((tw, th), Image.Resampling.NEAREST), (c * tw, r * (th + pad)))
        draw.text((c * tw + 4, r * (th + pad) + th + 3), label, fill="black", font=font)
    canvas.save(path)
    return shown
