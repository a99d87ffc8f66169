"""The MNIST bench: bytes per digit (whole stream, header included) and PSNR for every shipped
``mnist-*`` model at several qualities, against JPEG, WebP, PNG and AVIF on the same digits, and
the size ratio at equal PSNR: at each model point, along each (model, classical codec) pair of
curves where their PSNR ranges overlap, and best model vs best classical codec over 18-26 dB.
Models write the compact stream profile (docs/format.md) where they have a compact index; the
full-profile size is reported beside it. Runtime + Pillow + numpy only (no torch); the plot
needs matplotlib.

    aecodec mnist bench --digits 1000 --out docs/mnist
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
from PIL import Image

import aecodec
from aecodec import container
from aecodec.metrics import psnr

from .mnist_data import NOISE_SIGMA, add_noise, load_mnist

QUALITIES = (1, 13, 25, 38, 50, 63, 75, 88, 100)
REFINE_QUALITIES = (1, 25, 50, 75, 100)  # the slower encoder-side search: fewer settings
GOAL_RANGE = (18.0, 26.0)  # PSNR range of the goal check (dB)
TOP_RANGE = (26.0, 30.0)  # the same comparison above it, reported (mnist-rd-hq's range)
GOAL_STEP = 0.25
PAIR_STEP = 0.5  # PSNR grid of the pairwise ratios
CLASSICAL = {
    "JPEG": ("JPEG", "quality", (1, 5, 10, 20, 30, 50, 75, 90, 95), {}),
    "WebP": ("WEBP", "quality", (0, 5, 10, 20, 30, 50, 75, 90), {"method": 6}),
    "AVIF": ("AVIF", "quality", (0, 10, 20, 30, 50, 70, 90), {"speed": 4}),
    "PNG": ("PNG", None, (None,), {"optimize": True}),
}


PSNR_CAP = 60.0  # a digit decoded exactly counts as 60 dB in the mean


def psnr_per_digit(ref: np.ndarray, test: np.ndarray, cap: float | None = None) -> np.ndarray:
    """PSNR (dB, peak 255) of each digit; identical digits give inf (or `cap`)."""
    p = psnr(ref, test, per_item=True)
    return p if cap is None else np.minimum(p, cap)


def _summary(sizes: list[int], ref: np.ndarray, out: np.ndarray, extra: dict | None = None):
    p = psnr_per_digit(ref, out)
    exact = ~np.isfinite(p)
    row = {
        "bytes": float(np.mean(sizes)),
        "psnr": math.inf if exact.all() else float(np.mean(np.minimum(p, PSNR_CAP))),
        "exact_digits": int(exact.sum()),
        "psnr_of_mean_mse": float(10 * np.log10(255.0**2 / np.mean(
            ((ref.astype(np.float64) - out) ** 2).reshape(len(ref), -1).mean(1)).clip(1e-12))),
    }
    row.update(extra or {})
    return row


def classical_codec(name: str, digits: np.ndarray) -> list[dict]:
    fmt, knob, settings, opts = CLASSICAL[name]
    rows = []
    for s in settings:
        sizes, outs = [], []
        for d in digits:
            buf = io.BytesIO()
            kw = dict(opts)
            if knob:
                kw[knob] = s
            Image.fromarray(d, "L").save(buf, fmt, **kw)
            data = buf.getvalue()
            sizes.append(len(data))
            outs.append(np.asarray(Image.open(io.BytesIO(data)).convert("L")))
        row = _summary(sizes, digits, np.stack(outs), {"codec": name, "setting": s})
        rows.append(row)
    return rows


def mnist_models() -> list[str]:
    return [i.name for i in aecodec.models() if i.name.startswith("mnist-")]


def learned_codec(name: str, digits: np.ndarray, qualities=QUALITIES,
                  inputs: np.ndarray | None = None, label: str | None = None,
                  profile: str = "compact", refine: int = 0) -> list[dict]:
    """inputs: what is coded (noisy digits for the denoiser); PSNR is against `digits`.
    `profile`: the stream profile measured (compact where the model has a compact index);
    `refine`: rounds of encoder-side latent search (then no full-profile size is measured)."""
    full = aecodec.Codec(name, threads=1)
    if profile == "compact" and container.compact_index(full.model.id) is None:
        profile = "full"
    codec = aecodec.Codec(name, threads=1, profile=profile, refine=refine)
    src = digits if inputs is None else inputs
    rows = []
    for q in qualities:
        sizes, heads, info, outs = [], [], [], []
        t0 = time.perf_counter()
        for d in src:
            enc = codec.encode(d, q)
            sizes.append(len(enc.data))
            heads.append(container.header_size(enc.data))
            info.append(enc.estimated_bits / 8)
            outs.append(codec.decompress(enc.data))
        dt = (time.perf_counter() - t0) / len(src)
        full_sizes = ([len(full.compress(d, q)) for d in src] if profile != "full" and not refine
                      else sizes)
        payload = float(np.mean(sizes) - np.mean(heads))
        row = _summary(sizes, digits, np.stack(outs), {
            "codec": label or name, "setting": q, "profile": profile, "refine": refine,
            "header_bytes": float(np.mean(heads)),
            "payload_bytes": payload,
            "information_bytes": float(np.mean(info)),
            "coder_end_bytes": payload - float(np.mean(info)),
            "full_profile_bytes": None if refine else float(np.mean(full_sizes)),
            "ms_per_digit_roundtrip": round(dt * 1000, 3),
        })
        rows.append(row)
    return rows


def classical_bytes_at(psnr: float, curve: list[dict]) -> float | None:
    """Bytes a classical codec needs for `psnr`: log-bytes interpolated linearly in PSNR between
    its measured settings; None outside its measured PSNR range."""
    pts = sorted((r["psnr"], r["bytes"]) for r in curve if math.isfinite(r["psnr"]))
    if len(pts) < 2 or not pts[0][0] <= psnr <= pts[-1][0]:
        return None
    ps = np.array([p for p, _ in pts])
    lb = np.log(np.array([b for _, b in pts]))
    # keep the lower envelope (a setting that costs more for less PSNR never helps)
    order = np.argsort(ps)
    ps, lb = ps[order], np.minimum.accumulate(lb[order][::-1])[::-1]
    return float(np.exp(np.interp(psnr, ps, lb)))


def best_classical(psnr: float, classical: dict[str, list[dict]]) -> tuple[float | None, str]:
    """Fewest bytes any classical codec needs for `psnr`: the least of (a) each codec's curve
    interpolated at `psnr` (within its measured range) and (b) any measured classical file
    with at least that PSNR (e.g. WebP q0 below WebP's range, lossless PNG above all ranges)."""
    best, who = None, "-"
    for name, curve in classical.items():
        b = classical_bytes_at(psnr, curve)
        if b is not None and (best is None or b < best):
            best, who = b, name
        for r in curve:
            if r["psnr"] >= psnr and (best is None or r["bytes"] < best):
                s = "lossless" if r["setting"] is None else f"q{r['setting']}"
                best, who = r["bytes"], f"{name} {s}"
    return best, who


def pair_ratios(model: list[dict], codec: list[dict], step: float = PAIR_STEP) -> dict | None:
    """Bytes ratio (classical / model) at equal PSNR along both curves (each interpolated
    within its own measured range) on a grid over their PSNR overlap; None if none."""
    pm = [r["psnr"] for r in model if math.isfinite(r["psnr"])]
    pc = [r["psnr"] for r in codec if math.isfinite(r["psnr"])]
    if len(pm) < 2 or len(pc) < 2:
        return None
    lo, hi = max(min(pm), min(pc)), min(max(pm), max(pc))
    if lo > hi:
        return None
    grid = sorted({lo, hi, *np.arange(math.ceil(lo / step) * step, hi, step).tolist()})
    pts = []
    for p in grid:
        mb, cb = classical_bytes_at(p, model), classical_bytes_at(p, codec)
        if mb and cb:
            pts.append({"psnr": round(p, 3), "model_bytes": mb, "classical_bytes": cb,
                        "ratio": cb / mb})
    if not pts:
        return None
    ratios = [x["ratio"] for x in pts]
    return {"overlap_db": [lo, hi], "ratio_min": min(ratios), "ratio_max": max(ratios),
            "points": pts}


def cheapest_at(psnr: float, curves: dict[str, list[dict]]) -> tuple[float | None, str]:
    """Fewest bytes any of the curves needs for `psnr` (as `best_classical`, for any set)."""
    return best_classical(psnr, curves)


def goal_check(learned: dict[str, list[dict]], classical: dict[str, list[dict]],
               lo: float = GOAL_RANGE[0], hi: float = GOAL_RANGE[1],
               step: float = GOAL_STEP) -> dict:
    """Best model vs best classical codec at every PSNR of [lo, hi] (grid of `step`). Both
    sides take their cheapest way to that PSNR: a curve interpolated within its measured
    range, or any measured file of at least that PSNR. `classical_point` tells whether a
    classical codec's measured range covers the PSNR (else its cost is a better file's)."""
    rows = []
    for p in np.arange(lo, hi + step / 2, step):
        p = float(round(p, 3))
        mb, mwho = cheapest_at(p, learned)
        cb, cwho = cheapest_at(p, classical)
        covered = any(classical_bytes_at(p, c) is not None for c in classical.values())
        rows.append({"psnr": p, "model_bytes": mb, "model": mwho, "classical_bytes": cb,
                     "classical": cwho, "classical_point": covered,
                     "ratio": cb / mb if mb and cb else None})
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    return {"range_db": [lo, hi], "step_db": step, "rows": rows,
            "min_ratio": min(ratios) if len(ratios) == len(rows) else None}


def add_ratios(learned: list[dict], classical: dict[str, list[dict]]) -> None:
    for row in learned:
        best, who = best_classical(row["psnr"], classical)
        row["classical_bytes_at_psnr"] = best
        row["classical_best"] = who
        row["ratio"] = best / row["bytes"] if best else None
        row["ratio_payload_only"] = best / row["payload_bytes"] if best else None


def run(digits_n: int = 1000, data: str | None = None, models: list[str] | None = None,
        qualities=QUALITIES, seed: int = 0, log=print, profile: str = "compact",
        refine: int = 0, refine_models: list[str] | None = None) -> dict:
    """`refine` > 0 adds rows `<model> +search<N>` (encoder-side latent search, N rounds, at
    REFINE_QUALITIES) for `refine_models` (default: the mnist-rd* models)."""
    digits, labels = load_mnist("test", data, limit=digits_n)
    noisy = add_noise(digits, NOISE_SIGMA, seed)
    classical = {}
    for name in CLASSICAL:
        t0 = time.time()
        classical[name] = classical_codec(name, digits)
        log(f"{name}: {time.time() - t0:.1f}s")
    learned = {}
    for name in models or mnist_models():
        t0 = time.time()
        learned[name] = learned_codec(name, digits, qualities, profile=profile)
        log(f"{name}: {time.time() - t0:.1f}s")
    if refine:
        for name in refine_models or [n for n in learned if n.startswith("mnist-rd")]:
            t0 = time.time()
            learned[f"{name} +search{refine}"] = learned_codec(
                name, digits, REFINE_QUALITIES, profile=profile, refine=refine)
            log(f"{name} +search{refine}: {time.time() - t0:.1f}s")
    names = [n for n in learned if "+search" not in n]
    for rows in learned.values():
        add_ratios(rows, classical)
    denoise = {}
    if "mnist-denoise" in names:
        denoise["mnist-denoise"] = learned_codec("mnist-denoise", digits, qualities, noisy,
                                                  "mnist-denoise (noisy in)", profile)
    for name in ("mnist-conv", "WebP"):
        if name == "WebP":
            rows = []
            for q in (0, 30, 75):
                sizes, outs = [], []
                for d in noisy:
                    buf = io.BytesIO()
                    Image.fromarray(d, "L").save(buf, "WEBP", quality=q, method=6)
                    sizes.append(len(buf.getvalue()))
                    outs.append(np.asarray(Image.open(buf).convert("L")))
                rows.append(_summary(sizes, digits, np.stack(outs),
                                     {"codec": "WebP (noisy in)", "setting": q}))
            denoise["WebP"] = rows
        elif name in names:
            denoise[name] = learned_codec(name, digits, (50,), noisy, "mnist-conv (noisy in)",
                                          profile)
    noisy_psnr = float(np.mean(psnr_per_digit(digits, noisy)))
    best = max((r for rows in learned.values() for r in rows if r["ratio"]),
               key=lambda r: r["ratio"], default=None)
    pairs = {m: {c: pair_ratios(learned[m], classical[c]) for c in classical} for m in learned}
    return {
        "digits": int(len(digits)), "split": "MNIST test, first N", "seed": seed,
        "psnr": f"mean over digits of per-digit PSNR (peak 255; an exact digit counts "
                f"{PSNR_CAP:g} dB)",
        "bytes": "mean whole-file bytes per digit (aecodec: the .aec stream, header included)",
        "ratio": "fewest classical bytes for the model's PSNR (each codec's log-bytes "
                 "interpolated within its measured PSNR range, or any classical file with at "
                 "least that PSNR) / model bytes",
        "profile": profile,
        "classical": classical, "learned": learned, "pairs": pairs,
        "goal": goal_check(learned, classical),
        "goal_top": goal_check(learned, classical, *TOP_RANGE),
        "goal_plain_encoders": goal_check({k: v for k, v in learned.items()
                                           if "+search" not in k}, classical),
        "denoising": {"noise_sigma": NOISE_SIGMA, "noisy_psnr": noisy_psnr, "rows": denoise},
        "best": best,
        "versions": {"aecodec": getattr(aecodec, "__version__", None),
                     "pillow": Image.__version__},
    }


def _fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞ (lossless)"
    return f"{v:.{nd}f}"


def markdown(res: dict) -> str:
    lines = [f"Mean over the first {res['digits']} MNIST test digits. Bytes: the whole file "
             f"(header included; models: the {res.get('profile', 'full')} profile where the "
             "model has it, the full-profile size beside it). PSNR: mean per-digit PSNR. "
             "Ratio: the fewest bytes a classical codec needs for the same PSNR (its curve "
             "interpolated within its measured range, or any classical file of at least that "
             "PSNR, whichever is smaller) / the model's bytes.", "",
             "| codec | setting | bytes/digit | header | payload | information | "
             "full profile | PSNR (dB) | classical bytes at that PSNR | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rows in res["learned"].items():
        for r in rows:
            cb = (f"{r['classical_bytes_at_psnr']:.0f} ({r['classical_best']})"
                  if r["classical_bytes_at_psnr"] else "–")
            ratio = f"{r['ratio']:.1f}×" if r["ratio"] else "–"
            lines.append(f"| {name} | q{r['setting']} | {r['bytes']:.2f} | "
                         f"{r['header_bytes']:.0f} | {r['payload_bytes']:.2f} | "
                         f"{r.get('information_bytes', float('nan')):.2f} | "
                         f"{_fmt(r.get('full_profile_bytes'), 2)} | "
                         f"{r['psnr']:.2f} | {cb} | {ratio} |")
    for name, rows in res["classical"].items():
        for r in rows:
            s = "lossless" if r["setting"] is None else f"q{r['setting']}"
            lines.append(f"| {name} | {s} | {r['bytes']:.1f} | | | | | {_fmt(r['psnr'], 2)} | | |")
    pairs = res.get("pairs") or {}
    if pairs:
        lines += ["", "Ratio at equal PSNR along both curves (classical bytes / model bytes, "
                  f"every {PAIR_STEP:g} dB of the PSNR range both curves cover):", "",
                  "| model | codec | overlap (dB) | ratio min | ratio max |",
                  "|---|---|---|---:|---:|"]
        for m, per in pairs.items():
            for c, pr in per.items():
                if pr:
                    lo, hi = pr["overlap_db"]
                    lines.append(f"| {m} | {c} | {lo:.2f}–{hi:.2f} | {pr['ratio_min']:.1f}× | "
                                 f"{pr['ratio_max']:.1f}× |")
    for key in ("goal", "goal_top"):
        if res.get(key):
            lines += _goal_lines(res, key)
    return "\n".join(lines) + "\n"


def _goal_lines(res: dict, key: str) -> list[str]:
    """The best-model-vs-best-classical table of `res[key]` at whole dB, and its smallest
    ratio (for the 18-26 dB goal also without the encoder-side search)."""
    goal = res[key]
    lines = []
    if goal:
        lo, hi = goal["range_db"]
        lines += ["", f"Best model vs best classical codec, {lo:g}–{hi:g} dB (each side's "
                  "cheapest way to the PSNR: a curve within its range, or a file of at least "
                  "that PSNR):", "",
                  "| PSNR (dB) | best model | bytes | best classical | bytes | ratio |",
                  "|---:|---|---:|---|---:|---:|"]
        for r in goal["rows"]:
            if abs(r["psnr"] - round(r["psnr"])) > 1e-9:
                continue
            cb = f"{r['classical_bytes']:.1f}" if r["classical_bytes"] else "–"
            mb = f"{r['model_bytes']:.2f}" if r["model_bytes"] else "–"
            ratio = f"{r['ratio']:.1f}×" if r["ratio"] else "–"
            lines.append(f"| {r['psnr']:g} | {r['model']} | {mb} | {r['classical']} | {cb} | "
                         f"{ratio} |")
        mr = goal["min_ratio"]
        lines += ["", f"Smallest ratio over {lo:g}–{hi:g} dB (every {goal['step_db']:g} dB): "
                  + (f"{mr:.1f}×" if mr else "– (a model curve does not cover the range)")]
        plain = res.get("goal_plain_encoders") if key == "goal" else None
        if plain and any("+search" in n for n in res["learned"]):
            worst = min((r for r in plain["rows"] if r["ratio"]), key=lambda r: r["ratio"])
            mp = plain["min_ratio"]
            lines.append(f"Without the encoder-side search: {mp:.1f}× " if mp else
                         "Without the encoder-side search: – ")
            lines[-1] += (f"(smallest at {worst['psnr']:g} dB: {worst['model']} "
                          f"{worst['model_bytes']:.2f} B vs {worst['classical']} "
                          f"{worst['classical_bytes']:.1f} B)")
    return lines


def plot(res: dict, path: str | Path) -> bool:
    """Bytes per digit (log) against PSNR for every model and classical codec; False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    lo, hi = GOAL_RANGE
    ax.axvspan(lo, hi, color="0.93", zorder=0)
    for name, rows in res["learned"].items():
        pts = sorted((r["psnr"], r["bytes"]) for r in rows)
        ax.plot(*zip(*pts, strict=True), "o-", ms=3, lw=2.2 if "rd" in name else 1.2,
                label=name)
    style = {"JPEG": ("s", "0.55"), "WebP": ("^", "0.1"), "AVIF": ("D", "0.35")}
    for name, rows in res["classical"].items():
        pts = sorted((r["psnr"], r["bytes"]) for r in rows if math.isfinite(r["psnr"]))
        marker, color = style.get(name, ("v", "0.7"))
        if pts:
            ax.plot(*zip(*pts, strict=True), ls="--", marker=marker, ms=5, lw=1.5, color=color,
                    label=name)
        for r in rows:
            if not math.isfinite(r["psnr"]):
                ax.axhline(r["bytes"], color="0.5", ls=":", lw=1)
                ax.text(15.2, r["bytes"] * 1.05, f"{name} lossless", fontsize=8, color="0.4")
    ax.set_yscale("log")
    ax.set_xlim(15, 45)
    ax.set_xlabel("PSNR (dB, mean over digits)")
    ax.set_ylabel("bytes per digit (whole file)")
    ax.set_title(f"MNIST, first {res['digits']} test digits (shaded: {lo:g}–{hi:g} dB)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True

