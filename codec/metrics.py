"""PSNR on 8-bit pixels: the one definition the demo, the bench and the tests share."""

from __future__ import annotations

import numpy as np


def psnr(ref: np.ndarray, test: np.ndarray, peak: float = 255.0, per_item: bool = False
         ) -> float | np.ndarray:
    """10 log10(peak^2 / MSE) in dB; identical inputs give inf. With `per_item`, one value per
    entry of the first axis (e.g. per digit of a stack)."""
    d = np.asarray(ref, np.float64) - np.asarray(test, np.float64)
    if per_item:
        mse = (d * d).reshape(len(d), -1).mean(1)
        with np.errstate(divide="ignore"):
            return 10.0 * np.log10(peak * peak / mse)
    mse = float(np.mean(d * d))
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak * peak / mse))
