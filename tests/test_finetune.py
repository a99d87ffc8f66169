"""Fine-tuning cannot silently make a model worse: a validation point at the start always, the
best validated weights exported, a run worse than its start refused (or forced), its own
defaults, a shipped start by name, a budget that holds the whole run. (The docs' recipe on
real photos: tests/test_training_recipe.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402

from aecodec.export import finetune, start  # noqa: E402
from aecodec.export.cli import train  # noqa: E402
from aecodec.export.loop import NoGain, Recipe, _bar, fit, load_checkpoint  # noqa: E402
from aecodec.export.models import Config  # noqa: E402
from aecodec.export.tasks.photo import PhotoTask  # noqa: E402

TINY = Config(family="hyperprior", n=8, m=8, nz=8, lambdas=(0.01, 0.1))
QUIET = {"log": lambda s: None}


class Ranked(PhotoTask):
    """The photo task with its points ranked by a given order of steps (best first)."""

    def __init__(self, *args, order: list[int], **kw) -> None:
        super().__init__(*args, **kw)
        self.order = order

    def score(self, point: dict) -> float:
        return float(self.order.index(point["step"]))


@pytest.fixture(scope="module")
def trained(photo_folder, tmp_path_factory) -> Path:
    """Weights of a tiny model trained two steps: a start to fine-tune."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("start")
    fit(PhotoTask(photo_folder, TINY), Recipe(steps=2, batch=2, crop=64, bf16=False), out,
        **QUIET)
    return out / "weights.pt"


def _points(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").open()]


def test_the_start_is_always_a_point_and_the_best_point_is_exported(photo_folder, tmp_path):
    """The log has step 0 (without --validate-every too: the stopped run below), and the
    export holds the weights of the best point (here step 2 of 4), not the last."""
    recipe = Recipe(steps=4, batch=2, crop=64, bf16=False, validate_every=3)
    record = fit(Ranked(photo_folder, TINY, order=[2, 3, 1, 4, 0]), recipe, tmp_path / "whole",
                 budget_steps=2, **QUIET)
    assert [p["step"] for p in _points(tmp_path / "whole")] == [0, 2]
    at2 = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    recipe.validate_every = 1
    record = fit(Ranked(photo_folder, TINY, order=[2, 3, 1, 4, 0]), recipe, tmp_path / "whole",
                 **QUIET)  # resumed: the best point's weights came through the checkpoint
    assert [p["step"] for p in _points(tmp_path / "whole")] == [0, 2, 3, 4]
    assert record["best"]["step"] == 2 and record["exported_step"] == 2
    exported = torch.load(tmp_path / "whole" / "weights.pt", weights_only=False)
    assert all(torch.equal(v, at2[k]) for k, v in exported["model"].items())
    assert exported["record"]["validation"]["step"] == 2
    assert exported["record"]["iterations"] == 2  # the steps behind the exported weights
    last = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert last["step"] == 4 and not torch.equal(last["model"]["g_a.0.weight"],
                                                 at2["g_a.0.weight"])  # training went on


def test_a_fine_tune_worse_than_its_start_exports_nothing_unless_forced(photo_folder, trained,
                                                                         tmp_path):
    recipe = Recipe(steps=2, batch=2, crop=64, bf16=False, lr=100.0)  # a rate that wrecks it
    with pytest.raises(NoGain, match="worse"):
        fit(PhotoTask(photo_folder, init=trained), recipe, tmp_path / "bad", **QUIET)
    assert not (tmp_path / "bad" / "weights.pt").exists()
    assert load_checkpoint(tmp_path / "bad" / "checkpoint.pt")["step"] == 2  # kept
    record = fit(PhotoTask(photo_folder, init=trained), recipe, tmp_path / "forced",
                 force=True, **QUIET)
    assert record["exported_step"] == 2 and (tmp_path / "forced" / "weights.pt").is_file()
    # from scratch the random start is no competitor: the trained point is exported
    record = fit(Ranked(photo_folder, TINY, order=[0, 2]), Recipe(steps=2, batch=2, crop=64),
                 tmp_path / "scratch", **QUIET)
    assert record["exported_step"] == 2


def test_the_command_says_so_in_one_error_line_after_its_table(photo_folder, trained,
                                                               tmp_path):
    tiny = ["--batch", 2, "--crop", 64, "--threads", 1, "--steps", 2]
    r = CliRunner().invoke(train, [str(a) for a in [
        "photo", photo_folder, "--out", tmp_path / "run", "--init", trained, "--lr", 100,
        "--export", tmp_path / "model", *tiny]])
    lines = r.output.splitlines()
    assert r.exit_code == 1, r.output
    assert [x for x in lines if x.startswith("Error:")] == [lines[-1]]
    assert "made the model worse" in lines[-1] and "--force" in lines[-1]
    assert any("validation on 1 held-out image(s): step 0 (start)" in x for x in lines)
    assert not (tmp_path / "model").exists() and not (tmp_path / "run" / "weights.pt").exists()


def test_fine_tune_defaults_differ_from_scratch(photo_folder, trained, tmp_path):
    """--init picks the fine-tune rate, warm-up and a quantization-aware hyper-decoder from
    the first step; given options win."""
    assert finetune.recipe_defaults(False, None, None, None) == finetune.SCRATCH
    tuned = finetune.recipe_defaults(True, None, None, None)
    assert tuned == finetune.FINE_TUNE and tuned["lr"] < finetune.SCRATCH["lr"]
    assert tuned["warmup"] > 0 and tuned["qat_from"] == 0
    assert finetune.recipe_defaults(True, 3e-4, 0, 0.5) == {"lr": 3e-4, "warmup": 0,
                                                              "qat_from": 0.5}
    r = CliRunner().invoke(train, [str(a) for a in [
        "photo", photo_folder, "--out", tmp_path / "ft", "--init", trained, "--batch", 2,
        "--crop", 64, "--threads", 1, "--steps", 1, "--force"]])
    assert r.exit_code == 0, r.output
    run = load_checkpoint(tmp_path / "ft" / "checkpoint.pt")["record"]["runs"][-1]["recipe"]
    assert (run["lr"], run["warmup"]) == (tuned["lr"], tuned["warmup"])
    assert load_checkpoint(tmp_path / "ft" / "checkpoint.pt")["task_config"]["qat_from"] == 0


def test_a_time_budget_is_the_bar_and_leaves_room_for_the_end(photo_folder, tmp_path):
    bar = _bar(200_000, 0, 90.0, 0)
    assert bar.total == 90 and bar.unit == "s"
    bar.close()
    said = []
    record = fit(PhotoTask(photo_folder, TINY), Recipe(steps=5, batch=2, crop=64, bf16=False),
                 tmp_path / "run", minutes=0.5, reserve_s=30.0, log=said.append)
    assert record["runs"][-1]["end_step"] == 1  # one step, not five, and said so
    assert any(x.startswith("Warning: --minutes 0.5 is less than") for x in said)


def test_a_shipped_start_by_name_and_its_level_layout(tmp_path):
    known = start.shipped_checkpoints()
    assert "mnist-rd-hq" not in known and "hyperprior-ctx" not in known  # photo models only
    r = CliRunner().invoke(train, ["photo", str(tmp_path), "--out", str(tmp_path / "x"),
                                   "--init", "no-such-model"])
    assert r.exit_code == 2 and "no-such-model" in r.output and "shipped" in r.output
    if "hyperprior" not in known:
        pytest.skip("the hyperprior's weights are not in this installation")
    path = start.resolve("hyperprior")
    record = torch.load(path, map_location="cpu", weights_only=False)["record"]
    assert start.shipped_name(path, record) == "hyperprior"
    from aecodec.model import find

    assert start.extended_low(path, record) == find("hyperprior").manifest["rate"][
        "extended_low"] > 0
    assert start.extended_low(path, {**record, "extend_low": 0}) == 0  # an export's own word
    assert start.shipped_name(path, {**record, "iterations": 1}) is None


def test_the_default_name_is_never_a_shipped_one():
    from aecodec.model import shipped

    for out in ("runs/mine", "fast", "ctx", "runs/a b"):
        name = finetune.default_name("hyperprior", "hyperprior", Path(out))
        assert name.startswith("hyperprior-") and " " not in name
        assert name not in {m.name for m in shipped()} | {"hyperprior"}
