"""Folders as one job: the mirrored tree, worker processes, a bad file, resume, the summary;
the job's contract with its runners (resume, Ctrl-C) with a stand-in runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aecodec import batch
from aecodec.codec import Codec
from aecodec.errors import AecodecError


def run(*args: str):
    return subprocess.run([sys.executable, "-m", "aecodec.cli", *map(str, args)],
                          capture_output=True, timeout=600)


def files(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones included) by its relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def tree(tmp_path, photo) -> Path:
    """in/a.png, in/sub/b.png, in/sub/deep/c.jpg (RGB and gray), a corrupt in/sub/bad.png,
    and files the walk must leave out (not images, hidden)."""
    root = tmp_path / "in"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    Image.fromarray(photo).save(root / "a.png")
    Image.fromarray(photo[::-1, :, 1].copy()).save(root / "sub" / "b.png")
    Image.fromarray(np.roll(photo, 9, axis=1)).save(root / "sub" / "deep" / "c.jpg", quality=95)
    (root / "sub" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(photo).save(root / ".hidden" / "x.png")
    Image.fromarray(photo).save(root / "sub" / ".y.png")
    return root


def test_folder_job_with_workers_a_bad_file_and_resume(tree, synth, tmp_path):
    model = synth["hyperprior"]
    out = tmp_path / "out"
    r = run("compress", tree, "-o", out, "-j", 2, "-q", 60, "--model", model)
    assert r.returncode == 1  # one input failed
    err = r.stderr.decode()
    assert err.count("Error:") == 1 and "bad.png" in err and "cannot read image" in err
    got = files(out)
    assert sorted(got) == ["a.aec", "sub/b.aec", "sub/deep/c.aec"]  # no partial, no temp file
    codec = Codec(model)
    for rel in ("a.png", "sub/b.png", "sub/deep/c.jpg"):  # same streams as one in-process call
        stream = got[str(Path(rel).with_suffix(".aec"))]
        assert stream == codec.compress(np.asarray(Image.open(tree / rel)), 60)
    summary = r.stdout.decode().strip().splitlines()[-1]
    assert summary.startswith("compressed 3 files (1 failed, 0 skipped): ")
    bytes_in = sum((tree / f).stat().st_size for f in ("a.png", "sub/b.png", "sub/deep/c.jpg"))
    bits = sum(len(v) for v in got.values()) * 8
    assert f"{bytes_in:,} bytes in, {bits // 8:,} bytes out" in summary
    assert f"mean {bits / (3 * 45 * 70):.4f} bpp" in summary

    # a run stopped midway: one output missing; --skip-existing redoes only that one
    (out / "sub" / "b.aec").unlink()
    before = {p: (out / p).stat().st_mtime_ns for p in ("a.aec", "sub/deep/c.aec")}
    r = run("compress", tree, "-o", out, "-j", 2, "-q", 60, "--model", model, "--skip-existing")
    assert r.returncode == 1 and r.stderr.decode().count("Error:") == 1
    assert "compressed 1 files (1 failed, 2 skipped)" in r.stdout.decode()
    assert files(out) == got
    assert before == {p: (out / p).stat().st_mtime_ns for p in before}

    # without --skip-existing or --force existing outputs are errors, and left alone
    r = run("compress", tree, "-o", out, "-j", 2, "-q", 10, "--model", model)
    assert r.returncode == 1 and r.stderr.decode().count("exists (use --force") == 3
    assert files(out) == got
    assert run("compress", tree, "-o", out, "--skip-existing", "--force").returncode == 2

    # decompress mirrors the tree back
    png = tmp_path / "png"
    r = run("decompress", out, "-o", png, "-j", 2, "--model", model)
    assert r.returncode == 0, r.stderr
    assert sorted(files(png)) == ["a.png", "sub/b.png", "sub/deep/c.png"]
    assert np.asarray(Image.open(png / "sub" / "b.png")).shape == (45, 70)
    assert r.stdout.decode().startswith("decompressed 3 files (0 failed, 0 skipped): ")
    assert np.array_equal(np.asarray(Image.open(png / "a.png")),
                          codec.decompress(got["a.aec"]))


def test_plan_mirrors_folders_and_keeps_file_forms(tree, tmp_path):
    found = batch.expand([str(tree)], {".png", ".jpg"})
    assert [str(rel) for _, rel in found] == ["a.png", "sub/b.png", "sub/bad.png",
                                               "sub/deep/c.jpg"]
    out = tmp_path / "o"
    pairs = batch.plan(found, str(out), ".aec")
    assert pairs[3] == (str(tree / "sub/deep/c.jpg"), str(out / "sub/deep/c.aec"))
    # next to the inputs without -o
    assert batch.plan(found, None, ".aec")[1][1] == str(tree / "sub" / "b.aec")
    # a file named alone may be written to a file name; a folder's single file may not
    single = batch.expand([str(tree / "a.png")], {".png"})
    assert batch.plan(single, str(tmp_path / "x.aec"), ".aec")[0][1] == str(tmp_path / "x.aec")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "p.png").write_bytes(b"")
    folder = batch.expand([str(tmp_path / "one")], {".png"})
    assert batch.plan(folder, str(tmp_path / "y"), ".aec")[0][1] == str(tmp_path / "y" / "p.aec")
    with pytest.raises(AecodecError, match="no input files"):
        batch.expand([str(tree / ".hidden")], {".jpg"})
    with pytest.raises(AecodecError, match="would both write"):
        batch.plan(batch.expand([str(tree / "a.png"), str(tree)], {".png"}), str(out), ".aec")


def test_a_killed_worker_fails_its_files_and_the_rest_go_on(tree, tmp_path):
    """Workers killed midway (SIGKILL, as the OOM killer does) break the pool: the files in
    flight fail with a clear message, a new pool codes the rest, every input is reported."""
    import multiprocessing
    import os
    import signal
    import threading
    import time

    from aecodec.bench.large import mosaic

    (tree / "sub" / "bad.png").unlink()
    Image.fromarray(mosaic(2048, 2048, None)).save(tree / "0big.png", compress_level=1)  # seconds
    for i in range(4):
        Image.open(tree / "a.png").rotate(90 * i).save(tree / f"r{i}.png")
    out = tmp_path / "o"
    pairs = batch.plan(batch.expand([str(tree)], {".png", ".jpg"}), str(out), ".aec")
    assert pairs[0][0].endswith("0big.png")  # submitted first
    outcomes: list[batch.Outcome] = []
    job = threading.Thread(target=batch.run, args=(pairs, batch.Settings("compress")),
                           kwargs={"runner": batch.ProcessPool(2), "report": outcomes.append})
    job.start()
    deadline = time.monotonic() + 120
    while not outcomes and time.monotonic() < deadline:  # the small files are being coded
        time.sleep(0.05)
    assert outcomes and not (out / "0big.aec").exists()
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGKILL)
    job.join(300)
    assert not job.is_alive()
    assert sorted(o.src for o in outcomes) == sorted(src for src, _ in pairs)
    failed = {o.src: o.error for o in outcomes if o.status == "failed"}
    assert str(tree / "0big.png") in failed and 1 <= len(failed) <= 4
    assert all("worker process died" in e for e in failed.values())
    done = [o for o in outcomes if o.status == "done"]
    assert len(done) == len(pairs) - len(failed) and all(Path(o.dst).is_file() for o in done)
    assert not (out / "0big.aec").exists() and not list(out.rglob(".*"))


def test_workers_that_cannot_open_the_model_fail_each_file_clearly(tree, synth, tmp_path):
    """The manifest reads (so the CLI starts the job) but a model file fails its checksum in
    every worker: each file gets that one-line reason, the job ends, nothing is written."""
    import shutil

    model = tmp_path / "damaged"
    shutil.copytree(synth["factorized"], model)
    with open(model / "analysis.onnx", "ab") as f:
        f.write(b"\0")
    r = run("compress", tree, "-o", tmp_path / "o", "-j", 2, "--model", model)
    assert r.returncode == 1
    lines = r.stderr.decode().replace("\r", "\n").splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 4 and all("checksum" in e or "sha256" in e for e in errors), errors
    assert "compressed 0 files (4 failed, 0 skipped)" in r.stdout.decode()
    assert not (tmp_path / "o").exists()


class Scripted:
    """A stand-in runner that, like the pool, answers Ctrl-C by finishing the file it has in
    flight (the next one), reporting it, and stopping."""

    def __init__(self) -> None:
        self.given: list[tuple[str, str]] = []

    def outcomes(self, todo, settings):
        self.given = list(todo)
        for i, (src, dst) in enumerate(todo):
            try:
                yield batch.Outcome(src, dst, "done", 10, 2, 8, f"{src} -> {dst}")
            except KeyboardInterrupt:
                src, dst = todo[i + 1]
                yield batch.Outcome(src, dst, "done", 10, 2, 8, f"{src} -> {dst}")
                raise


def test_run_skips_what_exists_and_counts_it_before_coding(tmp_path):
    (tmp_path / "b.aec").write_bytes(b"whole")
    pairs = [(f"{n}.png", str(tmp_path / f"{n}.aec")) for n in "abc"]
    runner, seen, started = Scripted(), [], []
    summary = batch.run(pairs, batch.Settings("compress"), runner, skip_existing=True,
                        report=seen.append, started=started.append)
    assert started == [1] and [src for src, _ in runner.given] == ["a.png", "c.png"]
    assert [o.src for o in seen] == ["a.png", "c.png"]
    assert (summary.done, summary.skipped, summary.failed, summary.bytes_out) == (2, 1, 0, 4)
    assert summary.bpp == 4 * 8 / 16 and not summary.interrupted
    assert batch.resume(pairs, False) == (pairs, [])


def test_ctrl_c_keeps_the_outcomes_of_files_written_in_flight(tmp_path):
    """Ctrl-C midway: the summary says so and counts the file the runner still finished."""
    pairs = [(f"{n}.png", str(tmp_path / f"{n}.aec")) for n in "abcd"]
    seen: list[batch.Outcome] = []

    def report(o: batch.Outcome) -> None:
        seen.append(o)
        if len(seen) == 1:
            raise KeyboardInterrupt  # Ctrl-C while the first file is being reported

    summary = batch.run(pairs, batch.Settings("compress"), Scripted(), report=report)
    assert summary.interrupted and summary.done == 2  # the first and the one in flight
    assert [o.src for o in seen] == ["a.png", "b.png"]


def test_the_summary_line_and_the_per_file_report(capsys):
    from aecodec.cli_report import Report, summary_line

    s = batch.Summary("compress", done=3, failed=1, skipped=2, bytes_in=12345, bytes_out=678,
                      pixels=1000, seconds=2.04)
    assert summary_line(s) == ("compressed 3 files (1 failed, 2 skipped): 12,345 bytes in, "
                               "678 bytes out, mean 5.4240 bpp, 2.0 s")
    s.interrupted, s.mode = True, "decompress"
    assert summary_line(s).startswith("interrupted: decompressed 3 files")
    report = Report(2, verbose=True, quiet=False, to_stdout=False)
    report.started(0)
    report(batch.Outcome("a.png", "a.aec", "done", line="a.png -> a.aec: 9 bytes"))
    report(batch.Outcome("b.png", "b.aec", "failed", error="cannot read image",
                         notes=("16-bit samples",)))
    report.close()
    out, err = capsys.readouterr()
    assert out == "a.png -> a.aec: 9 bytes\n"
    assert "Warning: b.png: 16-bit samples\n" in err and "Error: b.png: cannot read image\n" in err
