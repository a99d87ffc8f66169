"""docs/training.md's fine-tune recipe as a newcomer runs it, from a folder outside the checkout
(no `checkpoints/` at hand), on a handful of the shared training photos with a tiny budget:
the exported model is no worse than the shipped one it started from on the validation image,
keeps its rate levels and gets a name of its own; or the run refuses, in one `Error:` line,
and writes no model. Skips without the shared data."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("onnx")

from conftest import REPO, shared_dir  # noqa: E402

NOISE = ("[torch.onnx]", "torchvision", "FutureWarning", "DeprecationWarning", "UserWarning")


def recipe() -> list[str]:
    """The first `aecodec train photo my_photos/ ...` command of the section, as written."""
    doc = (REPO / "docs" / "training.md").read_text()
    section = doc.split("## Train on your own photos\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    line = next(x for x in block.splitlines() if x.startswith("aecodec train photo my_photos/"))
    return shlex.split(line)


@pytest.fixture(scope="module")
def my_photos(tmp_path_factory) -> Path:
    source = shared_dir() / "data" / "train" / "bsds500" / "train"
    files = sorted(source.glob("*.jpg"))[:4]
    if len(files) < 4:
        pytest.skip("shared training photos not found (set AECODEC_SHARED)")
    folder = tmp_path_factory.mktemp("newcomer") / "my_photos"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def run_recipe(cwd: Path, *tiny: str) -> subprocess.CompletedProcess:
    args = recipe()
    assert args[:4] == ["aecodec", "train", "photo", "my_photos/"] and "--init" in args
    return subprocess.run([sys.executable, "-m", "aecodec.cli", *args[1:], *tiny], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def cost(codec, img: np.ndarray, qualities: list[int], lambdas: list[float]) -> float:
    """The training loss through the runtime: mean of lambda * 255^2 * MSE + bpp."""
    total = 0.0
    for q, lam in zip(qualities, lambdas, strict=True):
        data = codec.compress(img, quality=q)
        out = codec.decompress(data).astype(np.float64)
        mse = np.mean((out - img) ** 2) / 255**2
        total += lam * 255**2 * mse + len(data) * 8 / (img.shape[0] * img.shape[1])
    return total / len(qualities)


def check(r: subprocess.CompletedProcess, cwd: Path, photos: Path) -> None:
    output = r.stdout + r.stderr
    assert not [n for n in NOISE if n in output], output
    runs = cwd / "runs" / "mine"
    points = [json.loads(line) for line in (runs / "log.jsonl").open()]
    assert points[0]["step"] == 0  # the baseline, always
    if r.returncode != 0:  # the run refused: said so, nothing exported
        errors = [x for x in output.splitlines() if x.startswith("Error:")]
        assert r.returncode == 1 and len(errors) == 1 and "worse" in errors[0], output
        assert not (runs / "model").exists()
        return
    import torch

    import aecodec

    assert "validation on 1 held-out image(s): step 0 (start)" in r.stdout
    exported = torch.load(runs / "weights.pt", weights_only=False)["record"]["validation"]
    assert exported["cost"] <= points[0]["cost"]  # the torch estimate: no worse
    shipped, tuned = aecodec.Codec("hyperprior", threads=1), aecodec.Codec(
        str(runs / "model"), threads=1)
    s, t = shipped.model.info.manifest, tuned.model.info.manifest
    assert t["name"] not in {"hyperprior", ""} and t["rate"]["lambdas"] == s["rate"]["lambdas"]
    assert t["rate"]["extended_low"] == s["rate"]["extended_low"] > 0
    # through the runtime, at the qualities of three trained levels: no worse than the start
    img = np.asarray(Image.open(sorted(photos.iterdir())[0]).convert("RGB"))[:256, :256]
    levels = s["rate"]["levels"]
    positions = [2, 5, levels - 1]
    qualities = [round(1 + p * 99 / (levels - 1)) for p in positions]
    lambdas = [s["rate"]["lambdas"][p] for p in positions]
    before, after = cost(shipped, img, qualities, lambdas), cost(tuned, img, qualities, lambdas)
    # the export's float synthesis against the shipped 8-bit one: docs/training.md
    assert after <= before * 1.02, (before, after)


def test_the_documented_fine_tune_on_a_few_photos(my_photos, tmp_path):
    shutil.copytree(my_photos, tmp_path / "my_photos")
    r = run_recipe(tmp_path, "--steps", "3", "--crop", "64", "--batch", "2", "--threads", "1")
    check(r, tmp_path, tmp_path / "my_photos")


@pytest.mark.slow
def test_the_documented_fine_tune_longer(my_photos, tmp_path):
    """Thirty steps of 128-pixel crops, validated every ten: the best point exported."""
    shutil.copytree(my_photos, tmp_path / "my_photos")
    r = run_recipe(tmp_path, "--steps", "30", "--crop", "128", "--batch", "4",
                   "--validate-every", "10", "--threads", "1")
    check(r, tmp_path, tmp_path / "my_photos")
