"""The torch side: training runs and resumes, export writes a folder the runtime decodes, and the
integer hyper-decoder the runtime runs is the one that was trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


import aecodec  # noqa: E402
from aecodec import intnet  # noqa: E402
from aecodec.export.data import build_archive, load_images  # noqa: E402
from aecodec.export.entropy import gaussian_tables  # noqa: E402
from aecodec.export.loop import Recipe, fit  # noqa: E402
from aecodec.export.models import (  # noqa: E402
    Config,
    build,
    load_weights,  # noqa: E402
)
from aecodec.export.onnx_export import export_model  # noqa: E402
from aecodec.export.tasks.photo import PhotoTask  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "hyperprior.pt"


def test_archive_round_trip(photo_folder, tmp_path):
    size = build_archive([photo_folder], tmp_path / "train.tar", max_side=64)
    assert 0 < size == (tmp_path / "train.tar").stat().st_size
    items = load_images(tmp_path / "train.tar", min_side=32)
    assert len(items) == 3
    assert all(max(a.shape[:2]) == 64 for _, a in items)  # downscaled to max_side


@pytest.mark.slow
@pytest.mark.parametrize("family", ["hyperprior", "factorized"])
def test_train_resume_export_decode(family, photo_folder, photo_like, tmp_path):
    cfg = Config(family=family, n=8, m=8, nz=8, lambdas=(0.01, 0.1))
    recipe = Recipe(steps=3, batch=2, crop=64, bf16=False)
    torch.set_num_threads(2)
    run = tmp_path / "run"
    weights = Path(fit(PhotoTask(photo_folder, cfg), recipe, run, log=print)["export"])
    first = torch.load(weights, weights_only=False)
    assert first["record"]["iterations"] == 3 and "optimisers" not in first
    recipe.steps = 5  # a longer schedule: the same --out continues
    weights = Path(fit(PhotoTask(photo_folder, cfg), recipe, run, log=print)["export"])
    record = torch.load(weights, weights_only=False)["record"]
    assert record["iterations"] == 5 and len(record["runs"]) == 2
    assert record["runs"][1]["start_step"] == 3
    fit(PhotoTask(photo_folder, cfg), recipe, run, log=print)  # nothing to do: no step
    assert torch.load(weights, weights_only=False)["record"]["iterations"] == 5
    # weights elsewhere, fine-tuned: a new run that counts on from their iterations
    tuned = fit(PhotoTask(photo_folder, cfg, init=weights), Recipe(steps=1, batch=2, crop=64,
                                                                  bf16=False),
                tmp_path / "tuned", log=print)
    assert torch.load(tuned["export"], weights_only=False)["record"]["iterations"] == 6

    folder = export_model(weights, tmp_path / "model", name=f"tiny-{family}")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["training"]["iterations"] == 5 and manifest["family"] == family
    img = photo_like(7, 80, 100)
    codec = aecodec.Codec(str(folder), threads=1)
    out = codec.decompress(codec.compress(img, quality=90))
    assert out.shape == img.shape and out.dtype == np.uint8


def test_gaussian_tables_are_normalised():
    t = gaussian_tables()
    sums = t["pmf"].sum(axis=1)
    assert np.all(sums <= 1 + 1e-12) and np.all(sums > 1 - 1e-9)  # the rest: the escape
    assert np.all(t["len"] == -2 * t["offset"] + 1)


@pytest.fixture(scope="module")
def shipped_hyper():
    if not CHECKPOINT.is_file():
        pytest.skip("no hyperprior checkpoint")
    model, _ = load_weights(CHECKPOINT)
    model.h_s.quantize = True
    return model.eval()


def test_integer_hyper_decoder_matches_training(shipped_hyper):
    """The runtime's exact integer network computes what the quantization-aware torch net did."""
    h_s = shipped_hyper.h_s
    net = h_s.to_numpy()
    rng = np.random.default_rng(0)
    z = rng.laplace(0, 2, size=(1, h_s.layers[0].conv.in_channels, 6, 5)).round()
    with torch.no_grad():
        mean, idx = h_s(torch.from_numpy(z).float())
    out = intnet.run(net, z[0])
    m = h_s.m
    assert np.mean(out[m:] == idx[0].numpy().astype(np.int64)) > 0.999
    assert np.max(np.abs(out[:m] / 2**4 - mean[0].numpy())) <= 1 / 16 + 1e-6


def test_integer_hyper_decoder_stays_exact(shipped_hyper):
    """Every accumulator times its multiplier stays below 2**53, for any z the runtime accepts."""
    net = shipped_hyper.h_s.to_numpy()
    for i in range(intnet.layer_count(net)):
        w = net[f"w{i}"].astype(np.float64)
        in_max = intnet.Z_CLIP if i == 0 else 255
        acc = np.abs(w).sum(axis=(1, 2, 3)) * in_max + np.abs(net[f"b{i}"])
        assert float(np.max(acc * net[f"m{i}"])) < 2.0**53


@pytest.mark.slow
def test_export_parity_with_torch_on_model(tmp_path):
    """Exporting the same architecture twice gives the same folder id (deterministic export)."""
    cfg = Config(family="factorized", n=8, m=8, lambdas=(0.01,))
    torch.manual_seed(0)
    model = build(cfg)
    state = {"config": cfg.to_dict(), "model": model.state_dict(), "record": {"iterations": 0}}
    torch.save(state, tmp_path / "w.pt")
    a = export_model(tmp_path / "w.pt", tmp_path / "a", name="a")
    b = export_model(tmp_path / "w.pt", tmp_path / "b", name="a")
    ids = [json.loads((f / "manifest.json").read_text())["id"] for f in (a, b)]
    assert ids[0] == ids[1]
