"""The MNIST bench: bytes per digit (whole stream, header included) and PSNR for every shipped
``mnist-*`` model at several qualities, against JPEG, WebP, PNG and AVIF on the same digits, and
the size ratio at equal PSNR. Runtime + Pillow + numpy only (no torch).

    aecodec mnist bench --digits 1000 --out docs/mnist
"""

from __future__ import annotations

import io
import math
import time

import numpy as np
from PIL import Image

import aecodec
from aecodec import container
from aecodec.metrics import psnr

from .mnist_data import NOISE_SIGMA, add_noise, load_mnist

QUALITIES = (1, 13, 25, 38, 50, 63, 75, 88, 100)
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
                  inputs: np.ndarray | None = None, label: str | None = None) -> list[dict]:
    """inputs: what is coded (noisy digits for the denoiser); PSNR is against `digits`."""
    codec = aecodec.Codec(name, threads=1)
    src = digits if inputs is None else inputs
    rows = []
    for q in qualities:
        sizes, heads, outs = [], [], []
        t0 = time.perf_counter()
        for d in src:
            data = codec.compress(d, quality=q)
            sizes.append(len(data))
            heads.append(container.header_size(data))
            outs.append(codec.decompress(data))
        dt = (time.perf_counter() - t0) / len(src)
        row = _summary(sizes, digits, np.stack(outs), {
            "codec": label or name, "setting": q,
            "header_bytes": float(np.mean(heads)),
            "payload_bytes": float(np.mean(sizes) - np.mean(heads)),
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


def add_ratios(learned: list[dict], classical: dict[str, list[dict]]) -> None:
    for row in learned:
        best, who = best_classical(row["psnr"], classical)
        row["classical_bytes_at_psnr"] = best
        row["classical_best"] = who
        row["ratio"] = best / row["bytes"] if best else None
        row["ratio_payload_only"] = best / row["payload_bytes"] if best else None


def run(digits_n: int = 1000, data: str | None = None, models: list[str] | None = None,
        qualities=QUALITIES, seed: int = 0, log=print) -> dict:
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
        learned[name] = learned_codec(name, digits, qualities)
        log(f"{name}: {time.time() - t0:.1f}s")
    names = list(learned)
    for rows in learned.values():
        add_ratios(rows, classical)
    denoise = {}
    if "mnist-denoise" in names:
        denoise["mnist-denoise"] = learned_codec("mnist-denoise", digits, qualities, noisy,
                                                  "mnist-denoise (noisy in)")
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
            denoise[name] = learned_codec(name, digits, (50,), noisy, "mnist-conv (noisy in)")
    noisy_psnr = float(np.mean(psnr_per_digit(digits, noisy)))
    best = max((r for rows in learned.values() for r in rows if r["ratio"]),
               key=lambda r: r["ratio"], default=None)
    return {
        "digits": int(len(digits)), "split": "MNIST test, first N", "seed": seed,
        "psnr": f"mean over digits of per-digit PSNR (peak 255; an exact digit counts "
                f"{PSNR_CAP:g} dB)",
        "bytes": "mean whole-file bytes per digit (aecodec: the .aec stream, header included)",
        "ratio": "fewest classical bytes for the model's PSNR (each codec's log-bytes "
                 "interpolated within its measured PSNR range, or any classical file with at "
                 "least that PSNR) / model bytes",
        "classical": classical, "learned": learned,
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
             "(header included). PSNR: mean per-digit PSNR. Ratio: the fewest bytes a classical "
             "codec needs for the same PSNR (its curve interpolated within its measured range, "
             "or any classical file of at least that PSNR, whichever is smaller) / the "
             "model's bytes.", "",
             "| codec | setting | bytes/digit | of which header | PSNR (dB) | "
             "classical bytes at that PSNR | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rows in res["learned"].items():
        for r in rows:
            cb = (f"{r['classical_bytes_at_psnr']:.0f} ({r['classical_best']})"
                  if r["classical_bytes_at_psnr"] else "–")
            ratio = f"{r['ratio']:.1f}×" if r["ratio"] else "–"
            lines.append(f"| {name} | q{r['setting']} | {r['bytes']:.2f} | "
                         f"{r['header_bytes']:.0f} | {r['psnr']:.2f} | {cb} | {ratio} |")
    for name, rows in res["classical"].items():
        for r in rows:
            s = "lossless" if r["setting"] is None else f"q{r['setting']}"
            lines.append(f"| {name} | {s} | {r['bytes']:.1f} | – | {_fmt(r['psnr'], 2)} | | |")
    return "\n".join(lines) + "\n"
