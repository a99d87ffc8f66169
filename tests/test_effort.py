"""Encoder-side optimisation (`effort=N`, codec/effort.py): same decoder, never worse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aecodec
from aecodec import effort as E
from aecodec import rate

pytest.importorskip("torch")

GOLDEN = Path(__file__).parent / "golden"
Q = 50.0


@pytest.fixture(scope="module")
def codec():
    return aecodec.Codec("hyperprior-fast", threads=1)


@pytest.fixture(scope="module")
def crop(kodak):
    return np.asarray(Image.open(kodak[22]).convert("RGB"))[100:164, 200:264]  # 64 x 64


@pytest.fixture(autouse=True)
def few_steps(monkeypatch):
    monkeypatch.setitem(E.STEPS, 1, 12)  # a 12-step effort 1 keeps the file within seconds


def _cost(codec, data, image):
    """lambda * MSE + bpp of a stream, from its bytes and an exact decode."""
    lam = float(rate.at_quality(
        np.asarray(codec.model.info.manifest["rate"]["lambdas"]), Q))
    pix = codec.decompress(data)  # the normal decoder
    mse = np.mean((pix.astype(np.float64) - image) ** 2)
    return lam * mse + 8 * len(data) / (image.shape[0] * image.shape[1])


@pytest.fixture(scope="module")
def streams(codec, crop):
    old, E.STEPS[1] = E.STEPS[1], 12
    try:
        return codec.compress(crop, Q), codec.compress(crop, Q, effort=1)
    finally:
        E.STEPS[1] = old


def test_effort_never_worse_and_decodes(codec, crop, streams):
    e0, e1 = streams
    assert codec.decompress(e1).shape == crop.shape
    assert aecodec.decompress(e1).shape == crop.shape
    assert _cost(codec, e1, crop) <= _cost(codec, e0, crop)


def test_same_seed_same_bytes_and_each_step_reported(codec, crop, streams):
    """Also: each optimisation step reaches a progress listener (the CLI's bar for one
    slow file), and listening changes no byte."""
    from aecodec import progress

    seen = []
    with progress.listening(lambda *a: seen.append(a)):
        assert codec.compress(crop, Q, effort=1) == streams[1]
    assert [d for s, d, t in seen if s == "effort"] == list(range(13))


def test_effort_zero_is_the_old_encoder(codec, crop, streams):
    assert codec.compress(crop, Q, effort=0) == codec.compress(crop, Q) == streams[0]
    golden = GOLDEN / "hyperprior-fast.aec"
    if golden.is_file():
        img = codec.decompress(golden.read_bytes())
        assert codec.encode(img, Q, effort=0).data == codec.encode(img, Q).data


def test_module_api_and_bpp(codec, crop, streams):
    assert aecodec.compress(crop, Q, model="hyperprior-fast", effort=1) == streams[1]
    with pytest.warns(aecodec.RateWarning, match="above what the top quality reaches"):
        enc = codec.encode_to_bpp(crop, 2.0, effort=0)  # this crop's quality 100 is under 2
    assert enc.bpp <= 2.0 and enc.quality == 100


@pytest.mark.parametrize("bad, kind", [(-1, ValueError), (E.MAX_EFFORT + 1, ValueError),
                                       (1.5, TypeError), ("2", TypeError), (True, TypeError),
                                       (None, TypeError)])
def test_bad_effort(codec, crop, bad, kind):
    with pytest.raises(kind, match="effort"):
        codec.compress(crop, Q, effort=bad)
    with pytest.raises(kind, match="effort"):
        aecodec.compress(crop, Q, effort=bad)
    with pytest.raises(kind, match="effort"):
        codec.encode_to_bpp(crop, 1.0, effort=bad)


def test_effort_needs_a_hyperprior_model(crop):
    c = aecodec.Codec("factorized")
    with pytest.raises(aecodec.ModelError, match="hyperprior"):
        c.compress(crop, Q, effort=1)


BLOCK = "import sys; sys.modules['torch'] = None; "


def _py(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_effort_zero_never_loads_torch(crop):
    code = ("import sys, numpy as np, aecodec; "
            "img = np.full((64, 64, 3), 100, np.uint8); "
            "d = aecodec.compress(img, 50, effort=0); aecodec.decompress(d); "
            "print('torch' in sys.modules)")
    r = _py(code)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_effort_without_torch_is_one_clear_error():
    code = (BLOCK + "import numpy as np, aecodec\n"
            "img = np.full((64, 64, 3), 100, np.uint8)\n"
            "try:\n    aecodec.compress(img, 50, effort=1)\n"
            "except aecodec.AecodecError as e:\n    print(e)\n")
    r = _py(code)
    assert r.returncode == 0, r.stderr
    assert "pip install 'aecodec[effort]'" in r.stdout


# ---- every encoding path takes the same knob --------------------------------------------------

def test_cli_pillow_folders_and_ray_give_the_api_bytes(tmp_path, crop, streams, monkeypatch):
    """`--effort`, `Image.save(effort=)`, batch Settings and ray's Compressor: the API's bytes."""
    from click.testing import CliRunner

    from aecodec.batch import Coder, Settings
    from aecodec.cli import main

    Image.fromarray(crop).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-o",
                                  str(tmp_path / "a.aec"), "-q", "50", "--effort", "1",
                                  "--model", "hyperprior-fast", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.aec").read_bytes() == streams[1]
    Image.fromarray(crop).save(tmp_path / "b.aec", quality=Q, effort=1, model="hyperprior-fast")
    assert (tmp_path / "b.aec").read_bytes() == streams[1]
    coder = Coder(Settings("compress", "hyperprior-fast", Q, threads=1, effort=1))
    assert coder.encode(crop).data == streams[1]
    from aecodec.ray import Compressor

    out = Compressor("hyperprior-fast", quality=Q, effort=1)({"image": [crop]})
    assert bytes(out["aec"][0]) == streams[1]
    with pytest.raises(ValueError, match="effort"):
        Compressor("hyperprior-fast", quality=Q, effort=9)


@pytest.mark.parametrize("args, message", [
    (["--effort", "5"], "0<=x<=4"),
    (["--effort", "1", "--model", "hyperprior-ctx"], "effort > 0 needs"),
])
def test_cli_bad_effort_is_one_line_and_writes_nothing(tmp_path, crop, args, message):
    from click.testing import CliRunner

    from aecodec.cli import main

    Image.fromarray(crop).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-o",
                                  str(tmp_path / "a.aec"), *args])
    assert r.exit_code != 0 and message in r.output, r.output
    assert not (tmp_path / "a.aec").exists()


def test_cli_without_torch_names_the_extra(tmp_path, crop):
    Image.fromarray(crop).save(tmp_path / "a.png")
    code = (BLOCK + "from aecodec.cli import main\n"
            f"main(['compress', {str(tmp_path / 'a.png')!r}, '-o', "
            f"{str(tmp_path / 'a.aec')!r}, '--effort', '2'])\n")
    r = _py(code)
    assert r.returncode == 1 and "pip install 'aecodec[effort]'" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "a.aec").exists()


def test_digit_models_effort_is_their_search():
    """For the fixed-size digit models, effort N runs the greedy search (REFINE_ROUNDS[N]):
    the same bytes as the old `refine=` rounds, never a higher RD cost than effort 0."""
    digit = (np.arange(28 * 28).reshape(28, 28) * 7 % 256).astype(np.uint8)
    c = aecodec.Codec("mnist-rd", profile="compact")
    old = aecodec.Codec("mnist-rd", profile="compact", refine=E.REFINE_ROUNDS[4])
    e4 = c.compress(digit, 50, effort=4)
    assert e4 == old.compress(digit, 50)
    assert c.decompress(e4).shape == (28, 28)
    lam = float(rate.at_quality(np.asarray(c.model.info.manifest["rate"]["lambdas"]), 50))

    def cost(d):  # the search's own objective: bits + lambda * SSE on [0, 1]
        x = c.decompress(d).astype(np.float64) / 255 - digit / 255
        return 8 * len(d) + lam * float((x**2).sum())

    assert cost(e4) <= cost(c.compress(digit, 50)) + 16  # coder granularity: real bytes


def test_large_images_are_optimised_block_by_block(codec, kodak, monkeypatch):
    """Over MAX_PIXELS, y is optimised in blocks with a halo (z as analysed): the same bytes
    twice, never worse than effort 0, and the blocks do move the symbols."""
    img = np.asarray(Image.open(kodak[22]).convert("RGB"))[64:192, 128:256]  # 128 x 128
    monkeypatch.setattr(E, "MAX_PIXELS", 64 * 64)
    monkeypatch.setattr(E, "BLOCK", 4)  # 2 x 2 blocks of 4 latents
    monkeypatch.setattr(E, "HALO", 2)
    calls = []
    real = E.optimise_blocks
    monkeypatch.setattr(E, "optimise_blocks", lambda *a, **k: calls.append(1) or real(*a, **k))
    e0 = codec.compress(img, Q)
    e1 = codec.compress(img, Q, effort=1)
    assert calls and codec.compress(img, Q, effort=1) == e1
    assert _cost(codec, e1, img) <= _cost(codec, e0, img)
    a, _ = codec.prepare(img)
    y = codec.analyse(a)
    gain, _ = codec.model.gains(Q)
    z_sym, y_sym = real(codec, a, y, gain, Q, 12)
    assert z_sym.shape == codec.latent.z_shape(E._grid(codec, 128, 128)) and y_sym.shape == y.shape
