"""MS-SSIM / SSIM / PSNR checks against independent references and known properties."""

from __future__ import annotations

import numpy as np
import pytest

from aecodec.bench.metrics import (
    MS_SSIM_WEIGHTS,
    gaussian_window,
    ms_ssim,
    ms_ssim_db,
    ms_ssim_min_side,
    ssim,
)
from aecodec.metrics import psnr


def _pair(h: int, w: int, sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 11.0)[..., None] + rng.normal(
        0, 20, (h, w, 3))
    x = np.clip(base, 0, 255).astype(np.uint8)
    y = np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)
    return x, y


def test_psnr_known_value() -> None:
    x = np.zeros((4, 4, 3), np.uint8)
    y = x.copy()
    y[0, 0, 0] = 10  # MSE = 100 / 48
    assert psnr(x, y) == pytest.approx(10 * np.log10(255**2 * 48 / 100))
    assert psnr(x, x) == float("inf")


def test_ssim_matches_brute_force_window_loop() -> None:
    """Single-scale SSIM against a direct loop over every 11x11 window (2-D Gaussian weights)."""
    x, y = _pair(24, 30, 15)
    x, y = x[..., :1].astype(np.float64), y[..., :1].astype(np.float64)
    g = gaussian_window()
    w2 = np.outer(g, g)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(24 - 10):
        for j in range(30 - 10):
            a, b = x[i : i + 11, j : j + 11, 0], y[i : i + 11, j : j + 11, 0]
            ma, mb = (w2 * a).sum(), (w2 * b).sum()
            va, vb = (w2 * a * a).sum() - ma**2, (w2 * b * b).sum() - mb**2
            cov = (w2 * a * b).sum() - ma * mb
            num = (2 * ma * mb + c1) * (2 * cov + c2)
            vals.append(num / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    assert ssim(x, y) == pytest.approx(np.mean(vals), abs=1e-12)


def test_ms_ssim_properties() -> None:
    x, y1 = _pair(176, 200, 5)
    _, y2 = _pair(176, 200, 25)
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    a, b = ms_ssim(x, y1), ms_ssim(x, y2)
    assert 0 < b < a < 1
    assert ms_ssim(y1, x) == pytest.approx(a, abs=1e-12)  # symmetric
    assert sum(MS_SSIM_WEIGHTS) == pytest.approx(1.0, abs=1e-3)
    assert ms_ssim_min_side() == 161
    assert np.isnan(ms_ssim(x[:160], y1[:160]))
    assert ms_ssim_db(0.99) == pytest.approx(20.0)


def test_ms_ssim_matches_torch_reimplementation() -> None:
    """Against pytorch_msssim's algorithm written with torch ops (conv2d, avg_pool2d)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x, y = _pair(181, 203, 12, seed=3)  # odd sides exercise the pooling's padding
    X = torch.from_numpy(np.moveaxis(x, -1, 0)[None].astype(np.float64))
    Y = torch.from_numpy(np.moveaxis(y, -1, 0)[None].astype(np.float64))
    g = torch.from_numpy(gaussian_window())
    win = torch.outer(g, g).expand(3, 1, 11, 11).contiguous()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def ssim_cs(a, b):
        f = lambda t: F.conv2d(t, win, groups=3)  # noqa: E731
        ma, mb = f(a), f(b)
        va, vb, cov = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
        cs = (2 * cov + c2) / (va + vb + c2)
        s = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1) * cs
        return s.flatten(2).mean(-1), cs.flatten(2).mean(-1)

    w = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64)
    mcs = []
    for i in range(5):
        s, cs = ssim_cs(X, Y)
        if i < 4:
            mcs.append(torch.relu(cs))
            pad = [d % 2 for d in X.shape[2:]]
            X, Y = F.avg_pool2d(X, 2, padding=pad), F.avg_pool2d(Y, 2, padding=pad)
    stack = torch.stack(mcs + [torch.relu(s)], 0)
    ref = torch.prod(stack ** w.view(-1, 1, 1), 0).mean().item()
    assert ms_ssim(x, y) == pytest.approx(ref, abs=1e-10)
