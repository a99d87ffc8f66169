"""Hostile files and folders against the command line: outputs whole and right, folder jobs
over regular files only, workers that end with their parent, one `Error:` line each."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import aecodec
from aecodec.cli import main
from aecodec.errors import LossWarning
from aecodec.imageio import encode_image


def _cli(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_error_line(r) -> str:
    lines = r.stderr.splitlines()
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert [line for line in lines if line.startswith("Error:")] == lines[-1:], r.stderr
    return lines[-1]


# ---- A5: EXIF written for another frame does not shape a TIFF output ------------------------

def test_a5_portrait_photo_with_orientation_6_to_tiff_is_the_upright_image(tmp_path):
    stored = np.zeros((32, 48, 3), np.uint8)  # the frame as stored: 48 wide, 32 high
    stored[:, :, 0] = np.arange(48, dtype=np.uint8)[None, :] * 5
    stored[:, :, 1] = np.arange(32, dtype=np.uint8)[:, None] * 7
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    exif[0x0100], exif[0x0101] = 48, 32  # ImageWidth, ImageLength of the stored frame
    im.save(tmp_path / "phone.png", exif=exif.tobytes())
    assert _cli("compress", tmp_path / "phone.png", "--model", "hyperprior-fast").exit_code == 0
    upright = aecodec.decompress(str(tmp_path / "phone.aec"))
    assert upright.shape == (48, 32, 3)
    r = _cli("decompress", tmp_path / "phone.aec", "-o", tmp_path / "out.tif")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "out.tif") as out:
        assert out.size == (32, 48)
        assert np.array_equal(np.asarray(out.convert("RGB")), upright)


# ---- A6: what a JPEG cannot hold is warned and dropped, the rest written --------------------

def test_a6_jpeg_output_with_long_xmp_and_huge_dpi_is_written_with_a_warning(tmp_path):
    pixels = np.full((16, 16, 3), 80, np.uint8)
    info = {"xmp": b"<x>" + b"a" * 70_000 + b"</x>", "dpi": (70_000.0, 70_000.0),
            "exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00"}
    with pytest.warns(LossWarning, match="xmp not written.*dpi not written"):
        data = encode_image(pixels, "JPEG", info)
    with Image.open(io.BytesIO(data)) as out:
        assert out.size == (16, 16) and "exif" in out.info  # the rest is written
        assert "xmp" not in out.info and out.info.get("dpi", (0, 0))[0] != 70_000 % 65_536
    im = Image.fromarray(pixels)
    im.info.update(info)
    (tmp_path / "x.aec").write_bytes(aecodec.compress(im, model="hyperprior-fast"))
    r = _cli("decompress", tmp_path / "x.aec", "-o", tmp_path / "x.jpg")
    assert r.exit_code == 0 and "Warning:" in r.stderr and "xmp" in r.stderr, r.output
    assert (tmp_path / "x.jpg").stat().st_size > 0


def test_a6_dpi_within_jfif_range_is_still_written():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = encode_image(np.zeros((8, 8, 3), np.uint8), "JPEG", {"dpi": (300.0, 65_535.0)})
    with Image.open(io.BytesIO(data)) as out:
        assert out.info["dpi"] == (300, 65_535)


# ---- A9: folder jobs take regular files only -----------------------------------------------

def test_a9_fifos_and_links_to_devices_in_a_folder_are_left_out(tmp_path):
    from aecodec.batch import expand

    tree = tmp_path / "in"
    (tree / "sub").mkdir(parents=True)
    Image.fromarray(np.full((16, 16, 3), 50, np.uint8)).save(tree / "a.png")
    os.mkfifo(tree / "fifo.png")
    (tree / "sub" / "zero.png").symlink_to("/dev/zero")
    (tree / "link.png").symlink_to(tree / "a.png")  # a link to a regular file is one
    assert [rel.as_posix() for _, rel in expand([str(tree)], {".png"})] == ["a.png",
                                                                           "link.png"]
    r = _cli("compress", tree, "-o", tmp_path / "out", "-j", 1, "--model", "hyperprior-fast")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["a.aec", "link.aec"]


# ---- A10: workers end with their parent -------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal")
def test_a10_workers_end_when_the_job_is_killed(tmp_path):
    tree = tmp_path / "in"
    tree.mkdir()
    for i in range(24):
        Image.fromarray(np.full((32, 32, 3), i * 9, np.uint8)).save(tree / f"{i:02}.png")
    job = subprocess.Popen([sys.executable, "-m", "aecodec.cli", "compress", str(tree), "-o",
                            str(tmp_path / "out"), "-j", "2", "--quiet", "--model",
                            "hyperprior-fast"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(_children(job.pid)) < 3 and job.poll() is None:  # 2 workers, the tracker
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        children = _children(job.pid)
        assert len(children) >= 3, "the job ended before it could be killed"
        job.send_signal(signal.SIGKILL)
        job.wait()
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)], "processes outlived the job"
    finally:  # nothing left behind, whatever failed
        job.kill()
        for pid in set(children) | set(_children(job.pid)):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# ---- A11: bad folders for train and bench are one Error: line -------------------------------

@pytest.fixture
def bad_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((80, 80, 3), 50, np.uint8)).save(folder / "a.png")
    (folder / "empty.png").write_bytes(b"")
    return folder


def test_a11_bench_on_a_zero_byte_png_and_on_an_empty_folder(bad_folder, tmp_path):
    pytest.importorskip("aecodec.bench.cli")
    r = _cli("bench", bad_folder, "--out", tmp_path / "b", "--codecs", "jpeg")
    assert "empty.png" in _one_error_line(r) and "cannot read image" in r.stderr
    (bad_folder / "empty.png").write_bytes(b"not an image at all")
    r = _cli("bench", bad_folder, "--out", tmp_path / "b", "--codecs", "jpeg")
    assert "empty.png" in _one_error_line(r)
    empty = tmp_path / "none"
    empty.mkdir()
    r = _cli("bench", empty, "--out", tmp_path / "b", "--codecs", "jpeg")
    assert "no images" in _one_error_line(r)


def test_a11_train_photo_on_a_zero_byte_png(bad_folder, tmp_path):
    pytest.importorskip("torch")
    r = _cli("train", "photo", bad_folder, "--out", tmp_path / "run", "--n", 8, "--m", 8,
             "--nz", 8, "--batch", 2, "--crop", 64, "--threads", 1, "--steps", 1)
    assert "empty.png" in _one_error_line(r) and "cannot read image" in r.stderr
    r = _cli("train", "photo", bad_folder, "--out", tmp_path / "pack", "--pack")
    assert "empty.png" in _one_error_line(r)


def test_a11_train_evaluate_help_is_its_usage():
    pytest.importorskip("torch")
    r = _cli("train", "evaluate", "--help")
    assert r.exit_code == 0 and "--folder MODEL IMAGES" in r.output, r.output
    r = _cli("train", "evaluate")
    assert r.exit_code == 2 and "usage" in r.output.lower()


# ---- A12: a newline in a file name cannot split or forge a line -----------------------------

def test_a12_a_newline_in_a_file_name_is_escaped(tmp_path):
    bad = tmp_path / "x\nError: forged.png"
    bad.write_bytes(b"not an image")
    r = _cli("compress", bad)
    line = _one_error_line(r)
    assert "x\\nError: forged.png" in line and len(r.stderr.splitlines()) == 1
    stream = tmp_path / "y\nmodel          forged.aec"
    stream.write_bytes(b"\xae\xcd junk")
    r = _cli("info", stream)
    assert r.exit_code == 1 and "y\\nmodel" in r.stderr and len(r.stderr.splitlines()) == 1
    assert r.stdout == ""
    good = tmp_path / "ok\r.png"
    Image.fromarray(np.full((16, 16, 3), 50, np.uint8)).save(good)
    r = _cli("compress", good, "--model", "hyperprior-fast")
    assert r.exit_code == 0 and "ok\\r.png ->" in r.stdout and len(r.stdout.splitlines()) == 1
