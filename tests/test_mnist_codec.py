"""The shipped mnist-* models as codecs: API and CLI round trips, rates, the denoising path,
VAE sampling and the `aecodec mnist` command group."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import aecodec
from aecodec.bench.mnist_data import MnistNotFoundError, add_noise, load_mnist
from aecodec.cli import main as cli

EXPECTED = ["mnist-conv", "mnist-deep", "mnist-denoise", "mnist-dense", "mnist-sparse",
            "mnist-vae"]
NAMES = EXPECTED


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(-2, -1))
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))


@pytest.fixture(scope="module")
def digits():
    try:
        x, _ = load_mnist("test", limit=40)
    except MnistNotFoundError:
        pytest.skip("MNIST IDX files not found (../shared/data/mnist or $AECODEC_MNIST)")
    return x


@pytest.fixture(scope="module")
def codecs():
    return {n: aecodec.Codec(n, threads=1) for n in NAMES}


def _synthetic_digit():
    """A '0'-like ring, so the API round trip also runs without the MNIST files."""
    yy, xx = np.mgrid[:28, :28]
    r = np.hypot((yy - 14) / 1.3, xx - 14)
    return (np.clip(1.5 - np.abs(r - 7) / 1.5, 0, 1) * 255).astype(np.uint8)


def test_all_models_shipped():
    names = [i.name for i in aecodec.models() if i.name.startswith("mnist-")]
    assert sorted(names) == EXPECTED
    for info in aecodec.models():
        if info.name.startswith("mnist-"):
            assert info.family == "factorized" and info.channels == 1
            assert info.fixed_size == (28, 28) and info.levels >= 3


@pytest.mark.parametrize("name", NAMES)
def test_api_roundtrip_synthetic(codecs, name):
    c = codecs[name]
    d = _synthetic_digit()
    for q in (1, 50, 100):
        data = c.compress(d, quality=q)
        out = c.decompress(data)
        assert out.shape == (28, 28) and out.dtype == np.uint8
        assert len(data) < 64
        # the stream names its model: the module-level decompress finds it by id
        np.testing.assert_array_equal(aecodec.decompress(data), out)
        np.testing.assert_array_equal(c.decompress(c.compress(d, quality=q)), out)


@pytest.mark.parametrize("name", NAMES)
def test_api_roundtrip_digits(codecs, digits, name):
    c = codecs[name]
    src = digits[:20]
    sizes, quality = {}, {}
    for q in (1, 100):
        streams = [aecodec.compress(d, quality=q, model=name) for d in src]
        outs = np.stack([c.decompress(s) for s in streams])
        sizes[q] = np.mean([len(s) for s in streams])
        quality[q] = psnr(src, outs).mean()
    assert sizes[1] <= sizes[100] + 0.5
    assert quality[100] > quality[1] - 0.5
    floor = 12 if name == "mnist-denoise" else 15  # the denoiser is trained on noisy inputs
    assert quality[100] > floor, quality
    assert sizes[1] < 40 and sizes[100] < 60, sizes


@pytest.mark.parametrize("name", NAMES)
def test_cli_roundtrip(codecs, tmp_path, name):
    d = _synthetic_digit()
    src = tmp_path / "digit.png"
    Image.fromarray(d).save(src)
    r = CliRunner()
    res = r.invoke(cli, ["compress", str(src), "--model", name, "-q", "60",
                         "-o", str(tmp_path / "d.aec")])
    assert res.exit_code == 0, res.output
    data = (tmp_path / "d.aec").read_bytes()
    assert data == codecs[name].compress(d, quality=60)
    res = r.invoke(cli, ["decompress", str(tmp_path / "d.aec"), "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 0, res.output
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert out.shape == (28, 28)
    np.testing.assert_array_equal(out, codecs[name].decompress(data))


def test_denoising_api(codecs, digits):
    clean = digits[:20]
    noisy = add_noise(clean)
    c = codecs["mnist-denoise"]
    out = np.stack([c.decompress(c.compress(n, quality=75)) for n in noisy])
    gain = psnr(clean, out) - psnr(clean, noisy)
    assert gain.mean() > 6, gain  # ~8 dB noisy -> well above 15 dB decoded
    assert (gain > 3).all(), gain


def test_denoising_cli(digits, tmp_path):
    clean = digits[3]
    noisy = add_noise(clean[None], seed=5)[0]
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    r = CliRunner()
    res = r.invoke(cli, ["compress", str(tmp_path / "noisy.png"), "--model", "mnist-denoise",
                         "-q", "75", "-o", str(tmp_path / "n.aec")])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["decompress", str(tmp_path / "n.aec"), "-o", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output
    out = np.asarray(Image.open(tmp_path / "c.png"))
    assert psnr(clean, out) > psnr(clean, noisy) + 6


def test_vae_samples_and_cli(tmp_path):
    from aecodec.bench.mnist_figures import vae_samples

    s = vae_samples(8, seed=1)
    assert s.shape == (8, 28, 28) and s.dtype == np.uint8
    # samples look like digits: dark background, some bright strokes, and they differ
    assert np.median(s) < 40 and (s > 200).mean() > 0.03
    assert np.abs(s[0].astype(int) - s[1]).mean() > 5
    res = CliRunner().invoke(cli, ["mnist", "sample", "-n", "16", "-o", str(tmp_path / "s.png")])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "s.png").size == (8 * 28, 2 * 28)


def test_mnist_group_help():
    res = CliRunner().invoke(cli, ["mnist", "--help"])
    assert res.exit_code == 0, res.output
    for cmd in ("train", "figures", "sample", "bench"):
        assert cmd in res.output


def test_bench_ratio_logic():
    from aecodec.bench.mnist import best_classical, classical_bytes_at

    curve = [{"psnr": 20.0, "bytes": 100.0}, {"psnr": 30.0, "bytes": 400.0},
             {"psnr": float("inf"), "bytes": 300.0}]
    assert classical_bytes_at(25.0, curve) == pytest.approx(200.0)
    assert classical_bytes_at(19.0, curve) is None
    assert classical_bytes_at(31.0, curve) is None
    for r, s in zip(curve, (10, 20, None), strict=True):
        r["setting"] = s
    other = [{"psnr": 24.0, "bytes": 50.0, "setting": 0}]
    # below a codec's range, a cheaper file of higher PSNR caps the classical cost
    assert best_classical(19.0, {"A": curve, "B": other}) == (50.0, "B q0")
    assert best_classical(25.0, {"A": curve, "B": other})[0] == pytest.approx(200.0)
    assert best_classical(35.0, {"A": curve}) == (300.0, "A lossless")
