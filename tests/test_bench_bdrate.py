"""Bjøntegaard figures on curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from aecodec.bench.bdrate import (
    bd_psnr,
    bd_rate,
    bd_summary,
    pchip_eval,
    psnr_at_rate,
    size_ratio_at_psnr,
)

RATE = [0.2, 0.4, 0.7, 1.1, 1.8, 3.0]
PSNR = [24.0, 27.5, 30.3, 32.8, 35.6, 38.9]


@pytest.mark.parametrize("method", ["cubic", "pchip"])
@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.3])
def test_rate_scaled_curve_gives_factor_minus_one(method: str, factor: float) -> None:
    got = bd_rate(RATE, PSNR, [r * factor for r in RATE], PSNR, method)
    assert got == pytest.approx(factor - 1.0, abs=1e-12)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_psnr_shifted_curve_gives_shift(method: str) -> None:
    assert bd_psnr(RATE, PSNR, RATE, [p + 1.5 for p in PSNR], method) == pytest.approx(1.5)
    assert bd_psnr(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0.0, abs=1e-12)


def test_bd_rate_only_uses_overlap_and_order_free() -> None:
    # The test curve covers only part of the anchor's PSNR range and is given unsorted.
    r, p = [RATE[i] * 0.7 for i in (3, 1, 2)], [PSNR[i] for i in (3, 1, 2)]
    assert bd_rate(RATE, PSNR, r, p, "pchip") == pytest.approx(-0.3, abs=0.02)
    assert bd_rate(RATE, PSNR, [1, 2], [50, 51]) is None  # no overlap
    assert bd_rate(RATE, PSNR, [1], [30]) is None


def test_bd_rate_of_a_known_linear_pair() -> None:
    # log r = (p - 20) / 5 vs log r = (p - 21) / 5: rate ratio exp(-1/5) everywhere.
    p = np.linspace(25, 40, 7)
    a, t = np.exp((p - 20) / 5), np.exp((p - 21) / 5)
    assert bd_rate(a, p, t, p) == pytest.approx(np.exp(-0.2) - 1)


def test_pchip_interpolates_and_is_monotone() -> None:
    x, y = np.array(PSNR), np.log(RATE)
    assert pchip_eval(x, y, x) == pytest.approx(y)
    xs = np.linspace(x[0], x[-1], 500)
    assert np.all(np.diff(pchip_eval(x, y, xs)) > 0)


def test_size_ratio_and_psnr_at_rate() -> None:
    ratio = size_ratio_at_psnr(RATE, PSNR, [r * 0.6 for r in RATE], PSNR, [30, 50])
    assert ratio["30"] == pytest.approx(0.6)
    assert ratio["50"] is None
    assert psnr_at_rate(RATE, PSNR, 0.7) == pytest.approx(30.3)


def test_bd_summary_shape() -> None:
    curve = lambda f: [{"bpp": r * f, "psnr": p, "ms_ssim": 1 - 10 ** (-p / 20)}  # noqa: E731
                       for r, p in zip(RATE, PSNR, strict=True)]
    s = bd_summary({"jpeg": curve(1.0), "x": curve(0.5)}, "jpeg")
    assert s["codecs"]["jpeg"]["bd_rate"] == pytest.approx(0.0, abs=1e-12)
    assert s["codecs"]["x"]["bd_rate"] == pytest.approx(-0.5)
    assert s["codecs"]["x"]["bd_rate_msssim"] == pytest.approx(-0.5)
