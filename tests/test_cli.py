"""The command line, run as a user would (subprocesses), on synthetic and shipped models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import aecodec
from aecodec import cli
from aecodec.metrics import psnr

needs_photo_model = pytest.mark.skipif(
    not [i for i in aecodec.models() if not i.fixed_size], reason="no shipped photo model yet"
)


def run(*args: str, stdin: bytes | None = None, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "aecodec.cli", *map(str, args)], input=stdin,
                          capture_output=True, cwd=cwd, timeout=600)


@pytest.fixture()
def images(tmp_path, photo) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(photo[::-1, :, 0].copy()).save(folder / "b.png")
    return folder


def test_compress_decompress_folders(images, synth, tmp_path):
    model = synth["hyperprior"]
    r = run("compress", images, "-o", tmp_path / "aec", "-q", 80, "--model", model)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "aec").iterdir()) == ["a.aec", "b.aec"]
    r = run("decompress", tmp_path / "aec", "-o", tmp_path / "out", "--model", model)
    assert r.returncode == 0, r.stderr
    a = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    b = np.asarray(Image.open(tmp_path / "out" / "b.png"))
    assert a.shape == (45, 70, 3) and b.shape == (45, 70)
    r = run("info", tmp_path / "aec" / "a.aec")
    assert r.returncode == 0 and b"quality         80.0" in r.stdout and b"bpp" in r.stdout


def test_default_names_force_and_formats(images, synth):
    model = synth["factorized"]
    src = images / "a.png"
    assert run("compress", src, "--model", model).returncode == 0
    aec = images / "a.aec"
    before = aec.read_bytes()
    r = run("compress", src, "-q", 10, "--model", model)
    assert r.returncode == 1 and b"exists" in r.stderr and b"--force" in r.stderr
    assert aec.read_bytes() == before
    assert run("compress", src, "-q", 10, "--model", model, "--force").returncode == 0
    assert run("decompress", aec, "-o", images / "a.bmp", "--model", model).returncode == 0
    assert Image.open(images / "a.bmp").format == "BMP"
    assert run("decompress", aec, "--model", model).returncode == 0  # a.decoded.png
    assert run("decompress", aec, "--model", model).returncode == 1  # now it exists


def test_bad_inputs_give_one_line_and_no_output(images, synth, tmp_path):
    model = synth["factorized"]
    (tmp_path / "junk.png").write_text("not an image")
    r = run("compress", tmp_path / "junk.png", "--model", model)
    assert r.returncode == 1 and b"cannot read image" in r.stderr
    assert not (tmp_path / "junk.aec").exists()
    r = run("compress", images / "a.png", "-o", tmp_path / "x.aec", "--model", model)
    assert r.returncode == 0
    data = (tmp_path / "x.aec").read_bytes()
    (tmp_path / "cut.aec").write_bytes(data[:-5])
    r = run("decompress", tmp_path / "cut.aec", "--model", model)
    assert r.returncode == 1
    assert r.stderr.decode().strip().count("\n") == 0 and "checksum" in r.stderr.decode()
    assert not (tmp_path / "cut.png").exists() and (tmp_path / "cut.aec").read_bytes() == data[:-5]
    assert not list(tmp_path.glob(".*.tmp"))
    r = run("decompress", tmp_path / "x.aec")  # synthetic model is not shipped
    assert r.returncode == 1 and b"not installed" in r.stderr
    r = run("info", images / "a.png")
    assert r.returncode == 1 and b"not an aecodec stream" in r.stderr
    assert run("compress", tmp_path / "missing.png", "--model", model).returncode == 1
    r = run("compress", images / "a.png", "--model", "no-such-model", "-o", tmp_path / "y.aec")
    assert r.returncode == 1 and b"unknown model" in r.stderr


def test_stdin_stdout_and_bpp(images, synth):
    model = synth["hyperprior"]
    png = (images / "a.png").read_bytes()
    r = run("compress", "-", "--bpp", 20, "--model", model, stdin=png)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) * 8 / (45 * 70) <= 20
    d = run("decompress", "-", "--model", model, stdin=r.stdout)
    assert d.returncode == 0 and Image.open(__import__("io").BytesIO(d.stdout)).size == (70, 45)


def test_lazy_commands(monkeypatch):
    runner = CliRunner()
    r = runner.invoke(cli.main, ["--help"])
    assert r.exit_code == 0 and "bench" in r.output and "train" in r.output
    monkeypatch.setitem(cli.LAZY, "bench", ("aecodec.no_such_module:bench", "x", "bench"))
    r = runner.invoke(cli.main, ["bench"])
    assert r.exit_code == 1 and "pip install 'aecodec[bench]'" in r.output


def test_demo_and_models(synth, tmp_path):
    r = run("demo", "--out", tmp_path, "--model", synth["hyperprior"], "-q", 90)
    assert r.returncode == 0, r.stderr
    assert b"PSNR" in r.stdout and b"JPEG" in r.stdout
    assert (tmp_path / "kodim23.aec").is_file() and (tmp_path / "kodim23-decoded.png").is_file()
    assert run("demo", "--out", tmp_path, "--model", synth["hyperprior"]).returncode == 0
    assert run("models").returncode == 0


@needs_photo_model
def test_kodak_round_trips_through_the_cli(kodak, tmp_path):
    """All 24 images at two qualities: one compress and one decompress call per quality."""
    originals = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in kodak}
    pixels = sum(a.shape[0] * a.shape[1] for a in originals.values())
    curve = []
    for q in (15, 85):
        aec, png = tmp_path / f"aec{q}", tmp_path / f"png{q}"
        r = run("compress", *kodak, "-o", aec, "-q", q)
        assert r.returncode == 0, r.stderr
        r = run("decompress", aec, "-o", png)
        assert r.returncode == 0, r.stderr
        bits = sum(f.stat().st_size * 8 for f in aec.iterdir())
        scores = []
        for name, a in originals.items():
            b = np.asarray(Image.open(png / f"{name}.png"))
            assert b.shape == a.shape
            scores.append(psnr(a, b))
        curve.append((bits / pixels, float(np.mean(scores))))
    print("kodak (bpp, psnr):", curve)
    assert curve[0][0] < curve[1][0] and curve[0][1] < curve[1][1]


@needs_photo_model
def test_demo_with_the_default_model(tmp_path):
    r = run("demo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aecodec-demo"]  # a folder it names
    assert (tmp_path / "aecodec-demo" / "kodim23.aec").is_file()


def test_the_cli_chooses_the_runner():
    """--ray / --ray-address: Ray actors; -j 1: this process; else a pool of -j workers."""
    from aecodec import batch
    from aecodec.ray import RayRunner

    assert isinstance(cli.choose_runner(1), batch.InProcess)
    pool = cli.choose_runner(None)
    assert isinstance(pool, batch.ProcessPool) and pool.jobs is None
    assert cli.choose_runner(3).jobs == 3
    on_ray = cli.choose_runner(2, ray=True)
    assert isinstance(on_ray, RayRunner) and (on_ray.jobs, on_ray.address) == (2, None)
    assert cli.choose_runner(None, ray_address="h:6379").address == "h:6379"
