"""Bjøntegaard delta rate / PSNR (VCEG-M33) and file-size ratios at equal quality.

The default fit is the original one (and the one behind the anchors in NOTES.md): a cubic
polynomial of log(rate) against PSNR, least squares over all points, integrated over the PSNR
interval both curves cover. The ``pchip`` variant (as in later JVET/AOM tools) replaces the
polynomial by a monotone piecewise-cubic Hermite interpolant, which does not overshoot on
curves with many points or uneven spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Method = str  # "cubic" | "pchip"


def _sorted_unique(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by x with strictly increasing x (later duplicates dropped)."""
    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    order = np.argsort(xa, kind="stable")
    xa, ya = xa[order], ya[order]
    keep = np.concatenate([[True], np.diff(xa) > 0]) if len(xa) else np.zeros(0, bool)
    return xa[keep], ya[keep]


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives, as in scipy.interpolate.PchipInterpolator."""
    h = np.diff(x)
    m = np.diff(y) / h
    n = len(x)
    if n == 2:
        return np.array([m[0], m[0]])
    d = np.zeros(n)
    for k in range(1, n - 1):
        if m[k - 1] * m[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])
    ends = ((0, (h[0], h[1], m[0], m[1])), (-1, (h[-1], h[-2], m[-1], m[-2])))
    for end, (h0, h1, m0, m1) in ends:
        de = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(de) != np.sign(m0):
            de = 0.0
        elif np.sign(m0) != np.sign(m1) and abs(de) > abs(3 * m0):
            de = 3 * m0
        d[end] = de
    return d


def pchip_eval(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Evaluate the monotone piecewise-cubic Hermite interpolant of (x, y) at xq."""
    d = _pchip_slopes(x, y)
    i = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, len(x) - 2)
    h = x[i + 1] - x[i]
    t = (xq - x[i]) / h
    h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
    h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
    return h00 * y[i] + h10 * h * d[i] + h01 * y[i + 1] + h11 * h * d[i + 1]


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: Method) -> float:
    """Mean of the fitted y(x) over [lo, hi]."""
    if method == "cubic":
        deg = min(3, len(x) - 1)
        p = np.polyint(np.polyfit(x, y, deg))
        return float((np.polyval(p, hi) - np.polyval(p, lo)) / (hi - lo))
    if method == "pchip":
        xs = np.linspace(lo, hi, 4001)
        return float(np.trapezoid(pchip_eval(x, y, xs), xs) / (hi - lo))
    raise ValueError(f"unknown BD method {method!r}")


def bd_rate(
    anchor_rate: Sequence[float], anchor_psnr: Sequence[float],
    test_rate: Sequence[float], test_psnr: Sequence[float], method: Method = "cubic",
) -> float | None:
    """Average rate difference of test vs anchor at equal PSNR, as a fraction (-0.3 = 30 % less).

    None when the curves' PSNR ranges do not overlap or a curve has fewer than 2 points.
    """
    pa, la = _sorted_unique(anchor_psnr, np.log(np.asarray(anchor_rate, np.float64)))
    pt, lt = _sorted_unique(test_psnr, np.log(np.asarray(test_rate, np.float64)))
    if len(pa) < 2 or len(pt) < 2:
        return None
    lo, hi = max(pa[0], pt[0]), min(pa[-1], pt[-1])
    if hi <= lo:
        return None
    diff = _mean_over(pt, lt, lo, hi, method) - _mean_over(pa, la, lo, hi, method)
    return float(np.exp(diff) - 1.0)


def bd_psnr(
    anchor_rate: Sequence[float], anchor_psnr: Sequence[float],
    test_rate: Sequence[float], test_psnr: Sequence[float], method: Method = "cubic",
) -> float | None:
    """Average PSNR difference (dB) of test vs anchor at equal rate, over the log-rate overlap."""
    la, pa = _sorted_unique(np.log(np.asarray(anchor_rate, np.float64)), anchor_psnr)
    lt, pt = _sorted_unique(np.log(np.asarray(test_rate, np.float64)), test_psnr)
    if len(la) < 2 or len(lt) < 2:
        return None
    lo, hi = max(la[0], lt[0]), min(la[-1], lt[-1])
    if hi <= lo:
        return None
    return float(_mean_over(lt, pt, lo, hi, method) - _mean_over(la, pa, lo, hi, method))


def size_ratio_at_psnr(
    anchor_rate: Sequence[float], anchor_psnr: Sequence[float],
    test_rate: Sequence[float], test_psnr: Sequence[float], psnrs: Sequence[float],
) -> dict[str, float | None]:
    """File size of test / anchor at each PSNR (pchip of log-rate); None outside either curve."""
    pa, la = _sorted_unique(anchor_psnr, np.log(np.asarray(anchor_rate, np.float64)))
    pt, lt = _sorted_unique(test_psnr, np.log(np.asarray(test_rate, np.float64)))
    out: dict[str, float | None] = {}
    for q in psnrs:
        key = f"{q:g}"
        if len(pa) < 2 or len(pt) < 2 or not (pa[0] <= q <= pa[-1] and pt[0] <= q <= pt[-1]):
            out[key] = None
            continue
        a = pchip_eval(pa, la, np.array([q]))[0]
        t = pchip_eval(pt, lt, np.array([q]))[0]
        out[key] = float(np.exp(t - a))
    return out


def rate_at_psnr(rate: Sequence[float], psnr: Sequence[float], q: float) -> float | None:
    """Rate where a curve reaches PSNR q (pchip of log-rate), None outside the curve."""
    p, lr = _sorted_unique(psnr, np.log(np.asarray(rate, np.float64)))
    if len(p) < 2 or not p[0] <= q <= p[-1]:
        return None
    return float(np.exp(pchip_eval(p, lr, np.array([q]))[0]))


def psnr_at_rate(rate: Sequence[float], psnr: Sequence[float], r: float) -> float | None:
    """PSNR a curve reaches at rate r (pchip against log-rate), None outside the curve."""
    lr, p = _sorted_unique(np.log(np.asarray(rate, np.float64)), psnr)
    if len(lr) < 2 or not lr[0] <= np.log(r) <= lr[-1]:
        return None
    return float(pchip_eval(lr, p, np.array([np.log(r)]))[0])


def bd_summary(
    curves: dict[str, list[dict[str, Any]]], anchor: str = "jpeg",
    psnrs: Sequence[float] = (30, 32, 34, 36), rates: Sequence[float] = (0.25, 0.5, 1.0),
) -> dict[str, Any]:
    """BD figures of every curve against ``anchor`` (mean curves), for results.json ["bd"]."""
    from .metrics import ms_ssim_db

    out: dict[str, Any] = {
        "anchor": anchor,
        "method": "cubic polynomial fit of log-rate vs PSNR over the PSNR overlap (VCEG-M33); "
        "*_pchip: monotone piecewise-cubic interpolation instead",
        "codecs": {},
    }
    if anchor not in curves:
        return out

    def cols(name: str) -> tuple[list[float], list[float], list[float]]:
        c = curves[name]
        return ([p["bpp"] for p in c], [p["psnr"] for p in c],
                [ms_ssim_db(p["ms_ssim"]) if p["ms_ssim"] is not None else np.nan for p in c])

    ar, ap, am = cols(anchor)
    for name in curves:
        tr, tp, tm = cols(name)
        out["codecs"][name] = {
            "bd_rate": bd_rate(ar, ap, tr, tp),
            "bd_rate_pchip": bd_rate(ar, ap, tr, tp, "pchip"),
            "bd_psnr": bd_psnr(ar, ap, tr, tp),
            "bd_psnr_pchip": bd_psnr(ar, ap, tr, tp, "pchip"),
            "bd_rate_msssim": bd_rate(ar, am, tr, tm),
            "size_ratio_at_psnr": size_ratio_at_psnr(ar, ap, tr, tp, psnrs),
            "psnr_at_bpp": {f"{r:g}": psnr_at_rate(tr, tp, r) for r in rates},
        }
    return out
