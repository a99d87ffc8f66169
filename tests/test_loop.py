"""The one training loop (aecodec.export.loop): resume exactly, budgets, tasks, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from aecodec.export.loop import Recipe, fit, load_checkpoint  # noqa: E402
from aecodec.export.models import Config  # noqa: E402
from aecodec.export.tasks.photo import PhotoTask  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "hyperprior.pt"


TINY = Config(family="hyperprior", n=8, m=8, nz=8, lambdas=(0.01, 0.1))


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_killed_run_resumes_exactly(photo_folder, tmp_path):
    """Four steps in one run, or two, a stop, and the rest: the same weights, bit for bit
    (the batch and the noise of a step come from its number; the optimisers are saved)."""
    torch.set_num_threads(1)
    recipe = Recipe(steps=4, batch=2, crop=64, lr=1e-3, bf16=False, checkpoint_minutes=0)
    whole = fit(PhotoTask(photo_folder, TINY), recipe, tmp_path / "whole", log=lambda s: None)
    fit(PhotoTask(photo_folder, TINY), recipe, tmp_path / "split", budget_steps=2,
        log=lambda s: None)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 2
    split = fit(PhotoTask(photo_folder, TINY), recipe, tmp_path / "split", log=lambda s: None)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4 and _states_equal(a["model"], b["model"])
    assert [r["start_step"] for r in split["runs"]] == [0, 2] and len(whole["runs"]) == 1
    for k in a["optimisers"]:
        sa, sb = a["optimisers"][k]["state"], b["optimisers"][k]["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    # the log holds every validation point; the export is the old weights format
    points = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").open()]
    assert [p["step"] for p in points] == [0, 2, 4]  # the start is always a point
    weights = torch.load(tmp_path / "split" / "weights.pt", weights_only=False)
    assert weights["record"]["iterations"] == 4 and weights["config"]["n"] == 8


def test_a_checkpoint_of_another_task_is_refused(photo_folder, tmp_path):
    recipe = Recipe(steps=1, batch=2, crop=64, bf16=False)
    fit(PhotoTask(photo_folder, TINY), recipe, tmp_path, log=lambda s: None)
    other = Config(family="factorized", n=8, m=8, lambdas=(0.01, 0.1))
    with pytest.raises(ValueError, match="another task or configuration"):
        fit(PhotoTask(photo_folder, other), recipe, tmp_path, log=lambda s: None)


@pytest.mark.slow
def test_encoder_task_through_the_command(photo_folder, photo_like, tmp_path):
    """`aecodec train encoder` with a tiny budget: a model folder whose streams decode with
    the shipped decoder's files, and a run folder that resumes."""
    if not CHECKPOINT.is_file():
        pytest.skip("no hyperprior checkpoint")
    from click.testing import CliRunner

    import aecodec
    from aecodec.export.cli import train

    args = ["encoder", str(photo_folder), "--out", str(tmp_path / "run"), "--steps", "2",
            "--batch", "1", "--crop", "64", "--threads", "1", "--validate-every", "1"]
    r = CliRunner().invoke(train, args)
    assert r.exit_code == 0, r.output
    folder = tmp_path / "run" / "model"
    shipped = aecodec.Codec("hyperprior-fast", threads=1)
    tuned = aecodec.Codec(str(folder), threads=1)
    for name in ("synthesis.onnx", "tables.npz", "hyper_synthesis.npz"):
        assert (folder / name).read_bytes() == shipped.model.file(name).read_bytes()
    img = photo_like(9, 64, 96)
    out = tuned.decompress(tuned.compress(img, 50))
    assert out.shape == img.shape
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
    r = CliRunner().invoke(train, [*args[:5], "4", *args[6:]])  # a longer schedule resumes
    assert r.exit_code == 0 and "resumed encoder at step 2" in r.output, r.output


@pytest.mark.slow
def test_encoder_gains_train_alone_and_export_into_the_tables(photo_folder, tmp_path):
    """`--parts gains`: only the encoder's per-level gains learn, and the exported folder's
    tables carry them (inv_gain, the decoder's, as shipped)."""
    if not CHECKPOINT.is_file():
        pytest.skip("no hyperprior checkpoint")
    import aecodec
    from aecodec.export.tasks.encoder import EncoderTask

    torch.set_num_threads(1)
    task = EncoderTask(photo_folder, CHECKPOINT, parts="gains", val_images=1)
    task.recipe = Recipe(crop=64)
    model = task.build("cpu")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["log_scale"]
    with torch.no_grad():
        model.log_scale[3, :5] = 0.1
    folder = task.export(model, tmp_path)
    shipped = aecodec.Codec("hyperprior-fast", threads=1).model
    with np.load(folder / "tables.npz") as f:
        gain, inv = f["gain"], f["inv_gain"]
    want = shipped.gain.copy()
    want[3, :5] *= np.exp(0.1)
    assert np.allclose(gain, want, rtol=1e-6) and np.array_equal(inv, shipped.inv_gain)


def test_torch_gain_interpolation_mirrors_the_runtime():
    """`models.at_positions(quality_position(q))` is `aecodec.rate.at_quality(q)`: the torch
    side trains at the gains the runtime will use, at every quality."""
    import aecodec
    from aecodec import rate
    from aecodec.export.models import at_positions, quality_position

    gain = aecodec.Codec("hyperprior-fast").model.gain.astype(np.float64)
    qs = torch.tensor([1.0, 1.1, 12.3, 50.0, 77.7, 99.9, 100.0])
    got = at_positions(torch.log(torch.from_numpy(gain)), quality_position(qs, len(gain)))
    want = np.stack([rate.at_quality(gain, float(q)) for q in qs])
    assert np.allclose(got.numpy(), want, rtol=1e-6, atol=0)  # positions in float32
