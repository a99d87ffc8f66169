"""The tutorial's figures, made from the shipped model folders through the real codec.

- reconstructions.png: originals over each model's decoded digits (bytes per digit noted)
- latent_map.png: t-SNE of each model's quantized latent codes, coloured by digit
- vae_samples.png: digits decoded from z ~ N(0, I) by mnist-vae's synthesis
- denoising.png: clean, noisy, and what mnist-denoise (and mnist-conv) decode from the noisy one

Needs numpy, onnxruntime, matplotlib and the runtime; no torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import aecodec
from aecodec.metrics import psnr

from .mnist_data import NOISE_SIGMA, add_noise, load_mnist


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mnist_model_names() -> list[str]:
    order = ["mnist-dense", "mnist-deep", "mnist-sparse", "mnist-conv", "mnist-denoise",
             "mnist-vae"]
    names = [i.name for i in aecodec.models() if i.name.startswith("mnist-")]
    return [n for n in order if n in names] + [n for n in names if n not in order]


def one_per_class(labels: np.ndarray, n: int = 10) -> np.ndarray:
    return np.array([int(np.flatnonzero(labels == c % 10)[c // 10]) for c in range(n)])


def latents(name: str, digits: np.ndarray, quality: float = 50) -> np.ndarray:
    """Quantized latent symbols round(y * gain) of each digit, [N, M]."""
    codec = aecodec.Codec(name, threads=1)
    model = codec.model
    gain, _ = model.gains(quality)
    out = []
    for d in digits:
        x = (d.astype(np.float32) / 255)[None, None]
        y = model.analysis.run(["y"], {"x": x})[0].reshape(-1)
        out.append(np.rint(y * gain))
    return np.array(out)


def tsne(x: np.ndarray, perplexity: float = 30.0, iters: int = 750, seed: int = 0) -> np.ndarray:
    """Plain exact t-SNE (van der Maaten & Hinton 2008) in numpy, for ~1000 points."""
    rng = np.random.default_rng(seed)
    x = x.astype(np.float64)
    x = (x - x.mean(0)) / (x.std() + 1e-9)
    n = len(x)
    d2 = np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0)
    p = np.zeros((n, n))
    target = np.log(perplexity)
    for i in range(n):
        lo, hi, beta = 0.0, np.inf, 1.0
        di = np.delete(d2[i], i)
        for _ in range(50):
            e = np.exp(-(di - di.min()) * beta)
            s = e.sum()
            h = np.log(s) + beta * ((di - di.min()) * e).sum() / s
            if abs(h - target) < 1e-4:
                break
            if h > target:
                lo = beta
                beta = beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi = beta
                beta = (beta + lo) / 2
        p[i, np.arange(n) != i] = e / s
    p = (p + p.T) / (2 * n)
    p = np.maximum(p, 1e-12)
    yv = rng.normal(0, 1e-4, (n, 2))
    vel = np.zeros_like(yv)
    gains = np.ones_like(yv)
    for it in range(iters):
        exag = 12.0 if it < 100 else 1.0
        sq = (yv * yv).sum(1)
        num = 1 / (1 + np.maximum(sq[:, None] + sq[None, :] - 2 * yv @ yv.T, 0))
        np.fill_diagonal(num, 0)
        q = np.maximum(num / num.sum(), 1e-12)
        pq = (exag * p - q) * num
        grad = 4 * (np.diag(pq.sum(1)) - pq) @ yv
        mom = 0.5 if it < 250 else 0.8
        gains = np.where(np.sign(grad) != np.sign(vel), gains + 0.2, gains * 0.8).clip(0.01)
        vel = mom * vel - 200.0 * gains * grad
        yv = yv + vel
        yv -= yv.mean(0)
    return yv


def fig_reconstructions(digits, labels, out: Path, quality: float = 50) -> None:
    plt = _plt()
    names = mnist_model_names()
    idx = one_per_class(labels, 10)
    rows = [("original", digits[idx], None)]
    for name in names:
        codec = aecodec.Codec(name, threads=1)
        streams = [codec.compress(digits[i], quality) for i in idx]
        rows.append((name, [codec.decompress(s) for s in streams],
                     np.mean([len(s) for s in streams])))
    fig, axes = plt.subplots(len(rows), 10, figsize=(10, 1.1 * len(rows) + 0.4))
    for r, (name, imgs, nbytes) in enumerate(rows):
        for c in range(10):
            ax = axes[r, c]
            ax.imshow(imgs[c], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        label = name if nbytes is None else f"{name}\n{nbytes:.1f} B"
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"MNIST test digits (top) and their reconstructions at quality {quality:g} "
                 "(bytes per digit, header included)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def fig_latent_map(digits, labels, out: Path, n: int = 1000, quality: float = 50) -> None:
    plt = _plt()
    names = mnist_model_names()
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols, k % cols]
        z = latents(name, digits[:n], quality)
        emb = tsne(z)
        sc = ax.scatter(emb[:, 0], emb[:, 1], c=labels[:n], cmap="tab10", s=4, vmin=-0.5,
                        vmax=9.5)
        ax.set_title(f"{name} ({int((z != 0).any(0).sum())} active latents)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for k in range(len(names), rows * cols):
        axes[k // cols, k % cols].axis("off")
    fig.colorbar(sc, ax=axes, ticks=range(10), shrink=0.6, label="digit")
    fig.suptitle(f"t-SNE of the quantized latent codes (quality {quality:g}) of {n} test "
                 "digits", fontsize=10)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def vae_samples(n: int = 64, seed: int = 0, model: str = "mnist-vae") -> np.ndarray:
    """New digits: synthesis(z), z ~ N(0, I), as uint8 [n, 28, 28]."""
    codec = aecodec.Codec(model, threads=1)
    m = codec.model.gain.shape[1]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        z = rng.standard_normal((1, m, 1, 1)).astype(np.float32)
        x = codec.model.synthesis.run(["x_hat"], {"y_hat": z})[0][0, 0]
        out.append(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8))
    return np.array(out)


def grid(imgs: np.ndarray, cols: int = 8) -> np.ndarray:
    n = len(imgs)
    rows = (n + cols - 1) // cols
    g = np.zeros((rows * 28, cols * 28), np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        g[r * 28 : r * 28 + 28, c * 28 : c * 28 + 28] = im
    return g


def fig_vae_samples(out: Path, n: int = 64, seed: int = 0) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5.3))
    ax.imshow(grid(vae_samples(n, seed)), cmap="gray")
    ax.axis("off")
    ax.set_title("mnist-vae: digits decoded from z ~ N(0, I)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def fig_denoising(digits, labels, out: Path, quality: float = 50) -> None:
    plt = _plt()
    idx = one_per_class(labels, 10)
    clean = digits[idx]
    noisy = add_noise(clean, NOISE_SIGMA, seed=1)

    rows = [("clean", clean), (f"noisy σ={NOISE_SIGMA}", noisy)]
    for name in ("mnist-denoise", "mnist-conv"):
        if name in mnist_model_names():
            codec = aecodec.Codec(name, threads=1)
            rows.append((f"{name}\n(noisy in)", [codec.decompress(codec.compress(d, quality))
                                                 for d in noisy]))
    fig, axes = plt.subplots(len(rows), 10, figsize=(10, 1.15 * len(rows) + 0.4))
    for r, (name, imgs) in enumerate(rows):
        p = np.mean([psnr(clean[i], imgs[i]) for i in range(10)]) if r else None
        for c in range(10):
            axes[r, c].imshow(imgs[c], cmap="gray", vmin=0, vmax=255)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        lab = name if p is None else f"{name}\n{p:.1f} dB"
        axes[r, 0].set_ylabel(lab, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Denoising: PSNR against the clean digit", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def make_all(out: str | Path = "docs/mnist", data: str | None = None, log=print) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digits, labels = load_mnist("test", data)
    paths = []
    for fname, fn in (
        ("reconstructions.png", lambda p: fig_reconstructions(digits, labels, p)),
        ("denoising.png", lambda p: fig_denoising(digits, labels, p)),
        ("vae_samples.png", lambda p: fig_vae_samples(p)),
        ("latent_map.png", lambda p: fig_latent_map(digits, labels, p)),
    ):
        p = out / fname
        fn(p)
        log(f"wrote {p}")
        paths.append(p)
    return paths
