"""The top of the quality scale, said and warned: a budget above quality 100's rate is a
RateWarning (an error with --strict-bpp), and the CLI's help, `models`, `info` and the README
say what quality 100 reaches, from the models' own measured curves."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import aecodec
from aecodec.cli import main
from aecodec.model import default_info
from aecodec.top_end import top_end

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="aecodec")


def rate_warnings(call) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    return out, [str(w.message) for w in caught if w.category is aecodec.RateWarning]


def test_a_budget_above_the_top_is_warned(photo, synth):
    codec = aecodec.Codec(synth["hyperprior"])
    top = codec.encode(photo, 100).bpp
    low = codec.encode(photo, 1).bpp
    enc, said = rate_warnings(lambda: codec.encode_to_bpp(photo, top * 1.5))
    assert enc.quality == 100 and len(said) == 1 and "above what the top quality" in said[0]
    _, said = rate_warnings(lambda: codec.encode_to_bpp(photo, (top + low) / 2))
    assert said == []  # a budget in reach: nothing to say
    _, said = rate_warnings(lambda: aecodec.compress(photo, model=synth["hyperprior"],
                                                     bpp=top * 2))
    assert len(said) == 1


def test_the_cli_warns_or_with_strict_bpp_refuses(tmp_path, photo, synth):
    src = tmp_path / "a.png"
    Image.fromarray(photo).save(src)
    model = synth["hyperprior"]
    r = invoke("compress", src, "--bpp", 10_000, "--model", model)
    lines = [line for line in r.output.splitlines() if line.startswith("Warning:")]
    assert r.exit_code == 0 and len(lines) == 1 and "top quality" in lines[0], r.output
    out = tmp_path / "strict.aec"
    r = invoke("compress", src, "--bpp", 10_000, "--strict-bpp", "-o", out, "--model", model)
    assert r.exit_code == 1 and "--strict-bpp" in r.output and not out.exists(), r.output


def shipped_top():
    try:
        info = default_info()
    except aecodec.AecodecError:
        pytest.skip("no shipped model")
    top = top_end(info)
    if top is None:
        pytest.skip("the default model has no measured curve")
    return info, top


def test_top_end_is_the_manifests_own_measurement():
    info, top = shipped_top()
    curve = json.loads((info.path / "manifest.json").read_text())["results"]["kodak"]["curve"]
    last = max(curve, key=lambda p: p["setting"])
    assert (top.quality, top.bpp, top.psnr) == (100.0, last["bpp"], last["psnr"])


def test_help_models_info_and_readme_say_the_top():
    info, top = shipped_top()
    numbers = f"{top.bpp:.2f} bpp, {top.psnr:.2f} dB"
    r = CliRunner().invoke(main, ["compress", "--help"], terminal_width=200)
    assert "Quality 100 is the top: " + numbers in r.output, r.output
    r = invoke("models")
    assert f"top: quality 100 reaches {numbers} PSNR (Kodak, 24 images)" in r.output, r.output
    readme = (ROOT / "README.md").read_text()
    assert f"{top.bpp:.2f} bpp and {top.psnr:.2f} dB on Kodak" in " ".join(readme.split())


def test_info_says_the_streams_top(tmp_path, photo):
    _, top = shipped_top()
    f = tmp_path / "a.aec"
    f.write_bytes(aecodec.compress(photo[:16, :16]))
    r = invoke("info", f)
    assert r.exit_code == 0 and f"top_quality     {top.text()}" in r.output, r.output


@pytest.mark.parametrize("colour", [(200, 30, 40), (20, 200, 90), (128, 128, 128)])
def test_flat_colours_at_the_top_quality(colour):
    """Flat colours within a few levels away from the grid's top and left edges; the edges
    themselves err more, for the reason docs/results.md states (the trained decoder at the
    latent grid's border), and the document keeps saying so."""
    shipped_top()
    a = np.zeros((96, 160, 3), np.uint8) + np.array(colour, np.uint8)
    back = aecodec.decompress(aecodec.compress(a, quality=100)).astype(int)
    err = np.abs(back - a)
    assert err[8:, 8:].max() <= 10, err[8:, 8:].max()  # 3 to 7 measured
    assert err.max() <= 40  # the corner, bounded
    doc = (ROOT / "docs" / "results.md").read_text()
    assert "**Flat colours.**" in doc and "latent grid" in doc
