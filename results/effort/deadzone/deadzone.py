"""An encoder-side change at effort 0's speed, measured: dead-zone rounding of y - mean
(symbol = sign(v) * floor(|v| + f), f < 0.5 shrinks towards zero, as video encoders' rounding
offsets do) with hyperprior-fast, against plain rounding (f = 0.5), BD-rate at equal PSNR.

Run from the checkout: python results/effort/deadzone/deadzone.py EVERY QUALITIES OFFSETS
(here: 4 20,40,60,80 0.45,0.4,0.35,0.3: every fourth Kodak image, one thread).
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

import aecodec
from aecodec.bench.bdrate import bd_rate
from aecodec.latent import gaussian

files = sorted(Path("../shared/data/kodak").glob("kodim*.png"))[:: int(sys.argv[1])]
images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
codec = aecodec.Codec("hyperprior-fast", threads=1)


def rounding(f: float):
    def encode(self, y_g, mu, idx, r0, c0):
        v = y_g - mu
        sym = (np.sign(v) * np.floor(np.abs(v) + f)).ravel()
        return self.tables.encode(sym, idx), self.tables.estimate_bits(sym, idx)

    return encode


qualities = [float(q) for q in sys.argv[2].split(",")]
curves = {}
for f in [0.5] + [float(x) for x in sys.argv[3].split(",")]:
    gaussian.GaussianCodec.encode = rounding(f)
    points = []
    for q in qualities:
        bpp = psnr = 0.0
        for a in images:
            data = codec.compress(a, quality=q)
            mse = np.mean((codec.decompress(data).astype(float) - a) ** 2)
            bpp += len(data) * 8 / (a.shape[0] * a.shape[1])
            psnr += 10 * np.log10(255**2 / mse)
        points.append((bpp / len(images), psnr / len(images)))
    curves[f] = points
    print(f, [f"{b:.3f} bpp / {p:.2f} dB" for b, p in points], flush=True)
rate, quality = zip(*curves[0.5], strict=True)
for f, points in curves.items():
    if f != 0.5:
        r, p = zip(*points, strict=True)
        print(f"f = {f}: BD-rate vs plain rounding {100 * bd_rate(rate, quality, r, p):+.2f} %")
