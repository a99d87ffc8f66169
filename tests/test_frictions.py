"""What a newcomer trips on, each tried as they tried it: default names, wrong suffixes, lossy
output formats, quiet decoding, paths in the API, short reprs, info on folders, the demo twice,
the model list, `python -m aecodec`."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import aecodec
from aecodec.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="aecodec")


@pytest.fixture()
def pair(tmp_path, photo, synth) -> tuple[Path, Path, str]:
    """photo.png and the photo.aec compress wrote beside it, with the synthetic model."""
    src = tmp_path / "photo.png"
    Image.fromarray(photo).save(src)
    model = str(synth["hyperprior"])
    r = invoke("compress", src, "--model", model)
    assert r.exit_code == 0, r.output
    return src, tmp_path / "photo.aec", model


def test_decompress_by_default_never_writes_over_the_original(pair):
    src, aec, model = pair
    before = src.read_bytes()
    r = invoke("decompress", aec, "--model", model)
    assert r.exit_code == 0, r.output
    out = aec.with_name("photo.decoded.png")
    assert out.is_file() and src.read_bytes() == before
    assert np.asarray(Image.open(out)).shape == np.asarray(Image.open(src)).shape
    r = invoke("decompress", aec, "-o", src.with_name("mine.png"), "--model", model)
    assert r.exit_code == 0 and src.with_name("mine.png").is_file()  # -o as before


def test_an_output_suffix_that_says_another_format_is_refused(pair):
    src, aec, model = pair
    out = src.with_name("out.webp")
    r = invoke("compress", src, "-o", out, "--model", model)
    assert r.exit_code == 2 and "names a WEBP image" in r.output and not out.exists()
    r = invoke("decompress", aec, "-o", src.with_name("back.aec"), "--model", model)
    assert r.exit_code == 2 and "decompress writes images" in r.output
    assert not src.with_name("back.aec").exists()
    r = invoke("compress", src, "-o", src.with_name("raw.bin"), "--model", model)
    assert r.exit_code == 0  # a name that says no image format is the user's choice


@pytest.mark.parametrize("suffix, said", [(".gif", "256-colour palette"),
                                          (".ico", "written as"),
                                          (".bmp", "alpha dropped")])
def test_lossy_output_formats_are_warned(tmp_path, synth, photo, suffix, said):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)])
    big = np.tile(rgba, (7, 5, 1))  # 315x350: over what an icon holds
    aec = tmp_path / "a.aec"
    aec.write_bytes(aecodec.compress(big, model=synth["hyperprior"]))
    r = invoke("decompress", aec, "-o", tmp_path / f"a{suffix}", "--model",
               synth["hyperprior"])
    warned = [line for line in r.output.splitlines() if line.startswith("Warning:")]
    assert r.exit_code == 0 and len(warned) == 1 and said in warned[0], r.output


def test_decompress_q_is_quiet(pair):
    _, aec, model = pair
    r = invoke("decompress", aec, "-q", "-o", aec.with_name("q.png"), "--model", model)
    assert r.exit_code == 0 and r.output == "" and aec.with_name("q.png").is_file()


def test_compress_takes_a_path_and_encoded_prints_short(pair, photo):
    src, _, model = pair
    for path in (str(src), src):
        data = aecodec.compress(path, model=model)
        assert aecodec.decompress(data, model=model).shape == photo.shape
    with pytest.raises(aecodec.UnreadableImageError):
        aecodec.compress(src.with_name("missing.png"), model=model)
    enc = aecodec.Codec(model).encode(str(src), quality=60)
    text = repr(enc)
    assert len(text) < 100 and f"{len(enc.data):,} bytes" in text and "70x45" in text
    assert "quality 60" in text


def test_info_reads_a_folder(pair, tmp_path):
    _, aec, model = pair
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.aec").write_bytes(aec.read_bytes())
    r = invoke("info", tmp_path)
    assert r.exit_code == 0, r.output
    assert r.output.count("model_id") == 2 and str(sub / "b.aec") in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = invoke("info", empty)
    assert r.exit_code == 1 and r.output.startswith("Error:") and "no input files" in r.output


def test_the_demo_runs_twice_and_keeps_foreign_files(tmp_path, synth):
    model = synth["hyperprior"]
    assert invoke("demo", "--out", tmp_path / "d", "--model", model).exit_code == 0
    r = invoke("demo", "--out", tmp_path / "d", "--model", model)
    assert r.exit_code == 0, r.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "kodim23.aec").write_bytes(b"my own file")
    r = invoke("demo", "--out", mine, "--model", model)
    assert r.exit_code == 1 and "not written by the demo" in r.output
    assert (mine / "kodim23.aec").read_bytes() == b"my own file"


def test_models_lists_photo_and_digit_models_apart():
    r = invoke("models")
    assert r.exit_code == 0
    infos = aecodec.models()
    photo = [i.name for i in infos if not i.fixed_size]
    digits = [i.name for i in infos if i.fixed_size]
    if not (photo and digits):
        pytest.skip("needs shipped photo and digit models")
    head, tail = r.output.split("Digit models", 1)
    assert all(f"  {n}" in head for n in photo) and not any(f"  {n}:" in head for n in digits)
    assert all(f"  {n}:" in tail for n in digits)


def test_python_m_aecodec_runs():
    r = subprocess.run([sys.executable, "-m", "aecodec", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("Usage: aecodec "), r.stderr


def test_no_warning_is_left_unsaid_by_the_api(tmp_path, photo, synth):
    """The API says the same losses as the CLI, as LossWarnings (for BMP with alpha here)."""
    from aecodec.imageio import encode_image

    rgba = np.dstack([photo, np.full(photo.shape[:2], 9, np.uint8)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encode_image(rgba, "BMP")
    assert [w.category for w in caught] == [aecodec.LossWarning]


def test_one_slow_file_shows_its_own_progress(tmp_path, synth, photo_like, monkeypatch):
    """A large image runs its networks by squares: the listener sees each stage's steps, and
    the CLI draws them as a bar on stderr for a single input (here without its delay)."""
    from aecodec import cli_report, progress, tiles

    monkeypatch.setattr(tiles, "RUN_TILE_ABOVE", 64 * 64)
    monkeypatch.setattr(tiles, "RUN_TILE", 64)
    img = photo_like(3, 192, 256)
    codec = aecodec.Codec(synth["hyperprior"])
    seen: list[tuple[str, int, int]] = []
    with progress.listening(lambda *a: seen.append(a)):
        data = codec.compress(img)
        codec.decompress(data)
    for stage in ("analysis", "synthesis"):
        steps = [(d, t) for s, d, t in seen if s == stage]
        assert steps[0] == (0, 12) and steps[-1] == (12, 12), (stage, steps)
    codec.compress(img)  # nobody listening: nothing called, nothing kept
    assert len(seen) == 2 * 13

    src = tmp_path / "big.png"
    Image.fromarray(img).save(src)
    monkeypatch.setattr(cli_report, "PROGRESS_DELAY", 0)
    r = invoke("compress", src, "--model", synth["hyperprior"])
    assert r.exit_code == 0 and "analysis:" in r.output and "/12 [" in r.output, r.output
    assert r.output.rstrip().endswith("quality 75") or "quality 75\n" in r.output
    r = invoke("compress", src, "--model", synth["hyperprior"], "--quiet", "-f")
    assert r.exit_code == 0 and r.output == "", r.output


# ---- one CLI style ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_no_argparse_entry_point_is_left():
    """Every command is a click command reached from `aecodec`: no module parses its own
    arguments with argparse (nor by hand from sys.argv)."""
    import ast

    found = []
    for folder in ("codec", "bench", "export"):
        for f in (ROOT / folder).rglob("*.py"):
            text = f.read_text()
            for node in ast.walk(ast.parse(text)):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if "argparse" in names:
                    found.append(str(f.relative_to(ROOT)))
            if "sys.argv[1" in text:  # arguments read by hand (argv[0], a name, is fine)
                found.append(f"{f.relative_to(ROOT)}: sys.argv")
    assert not found, found


def test_every_bench_tool_is_a_subcommand_of_aecodec():
    from aecodec.bench.tools import TOOLS

    r = invoke("tools", "--help")
    assert r.exit_code == 0 and all(name in r.output for name in TOOLS), r.output
    for name in TOOLS:
        r = invoke("tools", name, "--help")
        assert r.exit_code == 0 and r.output.startswith(f"Usage: aecodec tools {name} "), name


def test_module_entry_points_run_the_same_click_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "aecodec.bench.context_projection", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "SAVING RESULTS" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "aecodec.bench.fuzz", "--streams", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Invalid value for '--streams'" in r.stderr, r.stderr


def test_train_steps_are_click_commands():
    pytest.importorskip("torch")
    for name, args in (("evaluate", "SOURCE [TARGET]"), ("eval-context", "CHECKPOINT LATENTS")):
        r = invoke("train", name, "--help")
        assert r.exit_code == 0 and f"Usage: aecodec train {name} [OPTIONS] {args}" in r.output
    r = invoke("train", "evaluate", "/no/such/results.json")
    assert r.exit_code == 2 and "does not exist" in r.output
