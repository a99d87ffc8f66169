"""The shipped MNIST models' recipes, by the key `--model` takes (exported as mnist-<key>):
architecture, rate levels and the time box each was trained in (minutes, one CPU thread).
Torch-free, so the commands can list the keys without loading torch."""

from __future__ import annotations

from typing import Any

MODELS: dict[str, dict[str, Any]] = {
    "dense": {"kind": "dense", "minutes": 1.5},
    "deep": {"kind": "deep", "minutes": 2.0},
    "sparse": {"kind": "sparse", "minutes": 1.5},
    "conv": {"kind": "conv", "lambdas": (1, 2, 4, 8, 16, 32, 64), "minutes": 3.5},
    "denoise": {"kind": "denoise", "minutes": 3.0},
    "vae": {"kind": "vae", "minutes": 3.5},
    # the rate-distortion models: `rd` (64 latents, 18-26 dB) and `rd-hq`, the same
    # architecture with more capacity and levels up to 30+ dB
    "rd": {"kind": "rd", "latent": 64, "lambdas": (0.5, 1, 2, 4, 8, 16, 32, 64, 128),
           "minutes": 65.0},
    "rd-hq": {"kind": "rd", "latent": 256, "width": (48, 96), "warmup": 600,
              "lambdas": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
              "minutes": 55.0},
}
