"""Quality metrics in plain numpy: MS-SSIM (Wang, Simoncelli & Bovik 2003).

MS-SSIM follows the standard implementation (as in pytorch_msssim, which CompressAI reports):
11x11 Gaussian window with sigma 1.5 applied separably and without padding ("valid"),
K1 = 0.01, K2 = 0.03, 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
2x2 average pooling between scales (an odd side is zero-padded by one on each end, like
``avg_pool2d(padding=s % 2)``), negative cs/ssim clipped to 0, computed per RGB channel and
averaged over channels. numpy only, so the bench never needs torch or scipy.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WIN_SIZE, sigma: float = WIN_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps; the 2-D window is their outer product."""
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of [..., H, W] along H then W (windowed dot products)."""
    n = len(g)
    rows = sliding_window_view(x, n, axis=-2) @ g
    return sliding_window_view(rows, n, axis=-1) @ g


def _ssim_cs(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean SSIM and mean contrast-structure term for [C, H, W] float64 arrays."""
    g = gaussian_window()
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mu_x**2
    syy = _filter_valid(y * y, g) - mu_y**2
    sxy = _filter_valid(x * y, g) - mu_x * mu_y
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.mean(axis=(-2, -1)), cs_map.mean(axis=(-2, -1))


def _to_chw(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)


def ssim(ref: np.ndarray, test: np.ndarray, data_range: float = 255.0) -> float:
    """Single-scale SSIM (Gaussian window, valid), averaged over channels."""
    s, _ = _ssim_cs(_to_chw(ref), _to_chw(test), data_range)
    return float(s.mean())


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling; an odd side gets one zero on each end (avg_pool2d, padding=1)."""
    pad = [(0, 0)] + [(s % 2, s % 2) for s in x.shape[-2:]]
    x = np.pad(x, pad)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return 0.25 * (
        x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]
    )


def ms_ssim_min_side(levels: int = len(MS_SSIM_WEIGHTS)) -> int:
    """Smallest image side the 5-scale MS-SSIM accepts: (11 - 1) * 2**4 + 1 = 161."""
    return (WIN_SIZE - 1) * 2 ** (levels - 1) + 1


def ms_ssim(ref: np.ndarray, test: np.ndarray, data_range: float = 255.0) -> float:
    """MS-SSIM of two HxWx3 (or HxW) images; NaN when a side is below ms_ssim_min_side()."""
    x, y = _to_chw(ref), _to_chw(test)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch {x.shape} vs {y.shape}")
    if min(x.shape[-2:]) < ms_ssim_min_side():
        return float("nan")
    w = np.asarray(MS_SSIM_WEIGHTS)
    mcs = []
    for level in range(len(w)):
        s, cs = _ssim_cs(x, y, data_range)
        if level < len(w) - 1:
            mcs.append(np.maximum(cs, 0.0))
            x, y = _avg_pool2(x), _avg_pool2(y)
    stack = np.stack(mcs + [np.maximum(s, 0.0)])  # [levels, C]
    per_channel = np.prod(stack ** w[:, None], axis=0)
    return float(per_channel.mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - v): the usual axis for RD plots."""
    return float("inf") if value >= 1.0 else float(-10.0 * np.log10(1.0 - value))
