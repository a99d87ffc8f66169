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

EXPECTED = ["mnist-conv", "mnist-deep", "mnist-denoise", "mnist-dense", "mnist-rd",
            "mnist-rd-hq", "mnist-sparse", "mnist-vae"]
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
        assert len(data) < (96 if name == "mnist-rd-hq" else 64)  # hq: 30 dB at its top
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
    top = 90 if name == "mnist-rd-hq" else 60  # full profile; hq buys ~30 dB with its bytes
    assert sizes[1] < 40 and sizes[100] < top, sizes
    if name == "mnist-rd-hq":  # issue 14's top end, with the plain encoder
        assert quality[100] > 29.5, quality


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


# ---- the compact stream profile -------------------------------------------------------------

GOLDEN = __import__("pathlib").Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", NAMES)
def test_compact_api_roundtrip(codecs, name):
    from aecodec import container

    full = codecs[name]
    compact = aecodec.Codec(name, threads=1, profile="compact")
    d = _synthetic_digit()
    for q in (1, 37, 100):
        a, b = full.encode(d, q), compact.encode(d, q)
        assert b.quality == a.quality == q
        assert container.header_size(b.data) == 3 and b.data[0] < 0x80
        # same symbols, so the same pixels; the byte coder ends within a byte of the info
        np.testing.assert_array_equal(compact.decompress(b.data), full.decompress(a.data))
        np.testing.assert_array_equal(aecodec.decompress(b.data), full.decompress(a.data))
        assert len(b.data) - 3 <= np.ceil(b.estimated_bits / 8 + 0.05)
        assert len(b.data) <= len(a.data) - 9
        assert aecodec.compress(d, q, model=name, profile="compact") == b.data
    assert compact.encode(d, 37.4).quality == 37.0  # compact streams record integer qualities
    assert aecodec.stream_info(b.data)["profile"] == "compact"


@pytest.mark.parametrize("name", NAMES)
def test_compact_cli_roundtrip(tmp_path, name):
    d = _synthetic_digit()
    src = tmp_path / "digit.png"
    Image.fromarray(d).save(src)
    r = CliRunner()
    res = r.invoke(cli, ["compress", str(src), "--model", name, "-q", "60", "--profile",
                         "compact", "-o", str(tmp_path / "d.aec")])
    assert res.exit_code == 0, res.output
    data = (tmp_path / "d.aec").read_bytes()
    assert data == aecodec.compress(d, 60, model=name, profile="compact")
    res = r.invoke(cli, ["decompress", str(tmp_path / "d.aec"), "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")),
                                  aecodec.decompress(data))
    res = r.invoke(cli, ["info", str(tmp_path / "d.aec")])
    assert res.exit_code == 0 and "compact" in res.output and name in res.output
    (tmp_path / "bad.aec").write_bytes(data[:2] + bytes([data[2] ^ 4]) + data[3:])
    res = r.invoke(cli, ["decompress", str(tmp_path / "bad.aec"), "-o", str(tmp_path / "b.png")])
    assert res.exit_code != 0 and "checksum" in res.output
    assert not (tmp_path / "b.png").exists()


def test_compact_profile_refused_for_photo_models(tmp_path):
    with pytest.raises(aecodec.ModelError, match="compact"):
        aecodec.Codec("hyperprior", profile="compact")
    res = CliRunner().invoke(cli, ["compress", "x.png", "--profile", "compact"])
    assert res.exit_code != 0


@pytest.mark.parametrize("name", NAMES)
def test_compact_golden_stream(name):
    """The compact golden decodes to the model golden's pixels (same image and quality)."""
    import json

    path = GOLDEN / f"{name}-compact.aec"
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    info = aecodec.model.find(name)
    if meta["id"] != info.id or not path.is_file():
        pytest.skip("retrained since its golden: make_golden.py --write --compact")
    pixels = aecodec.decompress(path.read_bytes())
    np.testing.assert_array_equal(pixels, np.asarray(Image.open(GOLDEN / f"{name}.png")))


# ---- encoder-side latent search -------------------------------------------------------------


def test_refined_encoding_lowers_the_rd_cost():
    """refine=N only changes the encoder: the stream decodes with a plain codec, and its
    rate-distortion cost (bits + lambda * SSE, the search's objective) is never higher."""
    from aecodec import refine

    name, q = "mnist-conv", 50
    plain = aecodec.Codec(name, threads=1, profile="compact")
    search = aecodec.Codec(name, threads=1, profile="compact", refine=4)
    lam = refine.quality_lambda(plain.model.info.manifest["rate"]["lambdas"], q)
    d = _synthetic_digit()
    gained = 0.0
    for shift in range(4):
        img = np.roll(d, shift * 2, axis=1)
        costs = []
        for c in (plain, search):
            enc = c.encode(img, q)
            out = plain.decompress(enc.data)
            np.testing.assert_array_equal(out, search.decompress(enc.data))
            sse = np.sum((out / 255.0 - img / 255.0) ** 2)
            costs.append(enc.estimated_bits + lam * sse)
        assert costs[1] <= costs[0] + 1e-9
        gained += costs[0] - costs[1]
    assert gained > 0


def test_quality_lambda_interpolates_geometrically():
    from aecodec.refine import quality_lambda

    assert quality_lambda([1, 4, 16], 1) == 1 and quality_lambda([1, 4, 16], 100) == 16
    assert quality_lambda([1, 4, 16], 25.75) == pytest.approx(2.0)
    assert quality_lambda([3.0], 50) == 3.0


def test_bench_pair_ratios_and_goal_check():
    from aecodec.bench.mnist import goal_check, pair_ratios

    model = [{"psnr": 18.0, "bytes": 10.0, "setting": 1}, {"psnr": 26.0, "bytes": 20.0,
                                                             "setting": 100}]
    webp = [{"psnr": 23.0, "bytes": 100.0, "setting": 0}, {"psnr": 28.0, "bytes": 150.0,
                                                             "setting": 5}]
    pr = pair_ratios(model, webp)
    assert pr["overlap_db"] == [23.0, 26.0]
    assert pr["points"][0]["ratio"] == pytest.approx(100.0 / (10.0 * 2 ** (5 / 8)))
    assert pair_ratios(model, [{"psnr": 30.0, "bytes": 1, "setting": 0},
                               {"psnr": 31.0, "bytes": 2, "setting": 1}]) is None
    g = goal_check({"m": model}, {"WebP": webp}, 18, 26, 1.0)
    assert [r["psnr"] for r in g["rows"]] == list(range(18, 27))
    assert g["rows"][0]["classical_bytes"] == 100.0 and not g["rows"][0]["classical_point"]
    assert g["rows"][-1]["classical_point"]
    assert g["min_ratio"] == pytest.approx(min(r["ratio"] for r in g["rows"]))
    assert goal_check({"m": model[:1]}, {"WebP": webp}, 18, 26, 1.0)["min_ratio"] is None


def test_bench_markdown_reports_the_top_range():
    """The 26-30 dB table is printed after the 18-26 dB goal, without the goal's plain-encoder
    line (that one belongs to the goal only)."""
    from aecodec.bench.mnist import TOP_RANGE, _goal_lines, goal_check

    model = [{"psnr": 18.0, "bytes": 10.0, "setting": 1},
             {"psnr": 31.0, "bytes": 40.0, "setting": 100}]
    webp = [{"psnr": 23.0, "bytes": 100.0, "setting": 0},
            {"psnr": 33.0, "bytes": 170.0, "setting": 30}]
    res = {"learned": {"m": model, "m +search6": model},
           "goal_top": goal_check({"m": model}, {"WebP": webp}, *TOP_RANGE),
           "goal_plain_encoders": goal_check({"m": model}, {"WebP": webp})}
    text = "\n".join(_goal_lines(res, "goal_top"))
    assert "26–30 dB" in text and "| 30 | m |" in text and "encoder-side" not in text
    assert res["goal_top"]["min_ratio"] == pytest.approx(
        min(r["ratio"] for r in res["goal_top"]["rows"]))
