"""The MNIST codecs on the one loop: a killed run resumes exactly, and `aecodec train mnist`
and `aecodec mnist train` train and export through it, on a tiny synthetic IDX folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from click.testing import CliRunner  # noqa: E402

import aecodec  # noqa: E402
from aecodec.export.loop import Recipe, fit, load_checkpoint  # noqa: E402
from aecodec.export.tasks.mnist import MnistTask, load_model  # noqa: E402
from aecodec.idx import write_idx  # noqa: E402


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """Blurry strokes as 48 training and 16 test digits, in the four standard IDX files."""
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for stem, n in (("train", 48), ("t10k", 16)):
        imgs = np.zeros((n, 28, 28), np.uint8)
        for i in range(n):
            r, c = rng.integers(6, 22, 2)
            imgs[i, r - 4:r + 4, c - 2:c + 2] = 255
        write_idx(d / f"{stem}-images-idx3-ubyte.gz", imgs)
        write_idx(d / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return d


def _recipe(steps: int) -> Recipe:
    return Recipe(steps=steps, batch=16, lr=1e-3, bf16=False, clip=None, schedule="cosine",
                  checkpoint_minutes=0)


@pytest.mark.parametrize("kind", ["vae", "denoise", "sparse"])
def test_a_killed_mnist_run_resumes_exactly(digits, tmp_path, kind):
    """Five steps in one run, or two, a stop and the rest: the same weights and optimiser
    state, bit for bit (the epoch's permutation, levels, input noise and the VAE's sample all
    come from the step), across an epoch boundary (3 steps of 16 of 48 digits)."""
    torch.set_num_threads(1)

    def task() -> MnistTask:
        return MnistTask(kind, digits, latent=4, lambdas=(2.0, 8.0), val_digits=8,
                         folder=tmp_path / f"m-{kind}")

    quiet = {"log": lambda s: None}
    fit(task(), _recipe(5), tmp_path / "whole", **quiet)
    fit(task(), _recipe(5), tmp_path / "split", budget_steps=2, **quiet)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 2
    split = fit(task(), _recipe(5), tmp_path / "split", **quiet)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["step"] == b["step"] == 5
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimisers"]["main"]["state"], b["optimisers"]["main"]["state"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert [r["start_step"] for r in split["runs"]] == [0, 2]
    points = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").open()]
    assert [p["step"] for p in points] == [0, 2, 5] and "psnr_level1" in points[-1]
    # the export is a model folder the runtime reads, its record the loop's runs
    man = json.loads((tmp_path / f"m-{kind}" / "manifest.json").read_text())
    assert man["training"]["steps"] == 5 and len(man["training"]["runs"]) == 2
    assert man["rate"]["levels"] == 2 and man["name"] == f"mnist-{kind}"
    codec = aecodec.Codec(str(tmp_path / f"m-{kind}"), threads=1)
    digit = np.zeros((28, 28), np.uint8)
    assert codec.decompress(codec.compress(digit, 50)).shape == (28, 28)


def test_a_checkpoint_of_another_kind_is_refused(digits, tmp_path):
    fit(MnistTask("dense", digits, latent=4, val_digits=4), _recipe(1), tmp_path,
        log=lambda s: None)
    with pytest.raises(ValueError, match="another task or configuration"):
        fit(MnistTask("deep", digits, latent=4, val_digits=4), _recipe(1), tmp_path,
            log=lambda s: None)


def test_train_mnist_command_trains_resumes_and_exports(digits, tmp_path):
    """`aecodec train mnist` with a tiny budget: a model folder, a log, a checkpoint that
    `aecodec mnist export` turns into the same folder, and a run that resumes."""
    from aecodec.cli import main

    run = tmp_path / "run"
    args = ["train", "mnist", "--model", "dense", "--data", str(digits), "--out", str(run),
            "--steps", "2", "--batch", "16", "--threads", "1", "--val-digits", "8"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "model:" in r.output and (run / "model" / "manifest.json").is_file()
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").open()] == [0, 2]
    r = CliRunner().invoke(main, ["mnist", "export", str(run / "checkpoint.pt"), "--out",
                                  str(tmp_path / "again"), "--data", str(digits)])
    assert r.exit_code == 0, r.output
    ids = [json.loads((f / "manifest.json").read_text())["id"]
           for f in (run / "model", tmp_path / "again")]
    assert ids[0] == ids[1]  # the same weights, the same files
    assert load_model(run / "checkpoint.pt").kind == "dense"
    longer = [*args]
    longer[args.index("--steps") + 1] = "3"  # a longer schedule continues the run
    r = CliRunner().invoke(main, longer)
    assert r.exit_code == 0 and "resumed mnist at step 2" in r.output, r.output


def test_mnist_train_is_the_same_code_path(digits, tmp_path):
    """`aecodec mnist train --model K` runs `aecodec train mnist` into RUNS/K and exports
    EXPORT_TO/mnist-K (never the shipped folders in a test)."""
    from aecodec.cli import main

    r = CliRunner().invoke(main, ["mnist", "train", "--model", "sparse", "--data", str(digits),
                                  "--runs", str(tmp_path / "runs"), "--minutes", "0.002",
                                  "--export-to", str(tmp_path / "models")])
    assert r.exit_code == 0, r.output
    state = load_checkpoint(tmp_path / "runs" / "sparse" / "checkpoint.pt")
    assert state["task"] == "mnist" and state["task_config"]["kind"] == "sparse"
    man = json.loads((tmp_path / "models" / "mnist-sparse" / "manifest.json").read_text())
    assert man["name"] == "mnist-sparse" and "L1 activity penalty" in man["training"]["loss"]


def test_missing_data_is_one_line(tmp_path):
    from aecodec.cli import main

    r = CliRunner().invoke(main, ["train", "mnist", "--data", str(tmp_path), "--out",
                                  str(tmp_path / "run"), "--steps", "1"])
    assert r.exit_code == 1 and "nothing is downloaded" in r.output, r.output
