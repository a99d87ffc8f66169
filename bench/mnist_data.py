"""The MNIST digits for the bench and figures: the runtime's IDX reader (`aecodec.idx`) and the
one noisy-digit recipe of the denoising comparisons."""

from __future__ import annotations

import numpy as np

from aecodec.idx import (  # noqa: F401  (the bench's and the tests' names for them)
    ENV_VAR,
    MnistNotFoundError,
    default_folder,
    load_mnist,
    read_idx,
    write_idx,
)

NOISE_SIGMA = 0.4  # the noisy digits of the bench, figures and tests


def add_noise(digits: np.ndarray, sigma: float = NOISE_SIGMA, seed: int = 0) -> np.ndarray:
    """Digits with Gaussian noise of std `sigma` (on [0, 1]) added, clipped and rounded to 8
    bits: the one noisy-digit recipe of the denoising comparisons."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(digits / 255.0 + sigma * rng.standard_normal(digits.shape), 0, 1)
    return np.round(noisy * 255).astype(np.uint8)
