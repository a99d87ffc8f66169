"""Every task on the one training loop: a run stopped midway and resumed ends where an
uninterrupted one does (weights and optimiser state bit for bit), and each runs through
`aecodec train` with a tiny budget. (The photo task: tests/test_loop.py; MNIST:
tests/test_mnist_task.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402

from aecodec.export.cli import train  # noqa: E402
from aecodec.export.context import ContextConfig  # noqa: E402
from aecodec.export.loop import Recipe, fit, load_checkpoint  # noqa: E402
from aecodec.export.models import Config  # noqa: E402
from aecodec.export.tasks.context import ContextTask  # noqa: E402
from aecodec.export.tasks.int8 import Int8Task  # noqa: E402
from aecodec.export.tasks.light import LightSynthesisTask  # noqa: E402
from aecodec.export.tasks.photo import PhotoTask  # noqa: E402

TINY = Config(family="hyperprior", n=8, m=8, nz=8, lambdas=(0.01, 0.1))


def _run(*args) -> str:
    r = CliRunner().invoke(train, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def tiny(photo_folder, tmp_path_factory) -> dict[str, Path]:
    """A tiny photo model trained two steps, its 8-bit synthesis, its model folder and the
    latents of the photos through it: what the other tasks start from."""
    from aecodec.export.latents import write_latents
    from aecodec.export.onnx_export import export_model

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("tiny")
    fit(PhotoTask(photo_folder, TINY), Recipe(steps=2, batch=2, crop=64, bf16=False),
        d / "run", log=lambda s: None)
    weights = d / "run" / "weights.pt"
    fit(Int8Task(weights, photo_folder, target=weights),
        Recipe(steps=1, batch=2, crop=64, bf16=False), d / "int8", log=lambda s: None)
    folder = export_model(weights, d / "model", name="tiny")
    write_latents(d / "latents.npz", [photo_folder], str(folder), max_side=None, threads=1)
    return {"weights": weights, "folder": folder, "latents": d / "latents.npz",
            "photos": photo_folder}


def _tasks(t: dict[str, Path]) -> dict:
    ctx = ContextConfig(m=8, hidden=8, kernel=3)
    return {
        "int8": (lambda: Int8Task(t["weights"], t["photos"]),
                 Recipe(steps=4, batch=2, crop=64, bf16=False, schedule="cosine")),
        "context": (lambda: ContextTask(t["latents"], ctx, t["weights"], str(t["folder"]),
                                        qat_from=0.5),
                    Recipe(steps=4, batch=2, crop=4, lr=1e-3, schedule="cosine")),
        "light-synthesis": (lambda: LightSynthesisTask(t["latents"], [t["photos"]], t["weights"],
                                                       str(t["folder"]), stage=2, width=4, halo=1),
                            Recipe(steps=4, batch=2, crop=4, bf16=False, schedule="cosine")),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["int8", "context", "light-synthesis"])
def test_a_stopped_task_resumes_exactly(name, tiny, tmp_path):
    make, recipe = _tasks(tiny)[name]
    recipe.checkpoint_minutes = 0
    quiet = {"log": lambda s: None}
    fit(make(), recipe, tmp_path / "whole", **quiet)
    fit(make(), recipe, tmp_path / "split", budget_steps=2, **quiet)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 2
    record = fit(make(), recipe, tmp_path / "split", **quiet)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4 and [r["start_step"] for r in record["runs"]] == [0, 2]
    assert a["model"].keys() == b["model"].keys()
    moved = False
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    init = make()
    init.recipe = recipe
    start = init.build("cpu").state_dict()
    moved = any(not torch.equal(start[k], v) for k, v in a["model"].items())
    assert moved  # the run did train
    for k, opt in a["optimisers"].items():
        for i, s in opt["state"].items():
            assert torch.equal(s["exp_avg"], b["optimisers"][k]["state"][i]["exp_avg"])
    assert Path(record["export"]).is_file()


@pytest.mark.slow
def test_int8_and_context_through_the_command(tiny, tmp_path, photo_like):
    """`aecodec train int8` and `aecodec train context` + `context-export`, tiny: the context
    model folder codes an image with the base model's transforms."""
    import aecodec

    out = _run("int8", tiny["weights"], tiny["photos"], "--out", tmp_path / "int8", "--steps",
               2, "--batch", 2, "--crop", 64)
    copy = tmp_path / "int8" / "weights.pt"
    assert f"weights: {copy}" in out
    stored = torch.load(copy, weights_only=False)["int_synthesis"]["record"]
    assert stored["iterations"] == 1 + 2  # the fine-tune the weights held, continued
    _run("context", tiny["latents"], "--out", tmp_path / "ctx", "--checkpoint", tiny["weights"],
         "--model", tiny["folder"], "--steps", 2, "--batch", 2, "--crop", 4, "--hidden", 8,
         "--kernel", 3)
    folder = tmp_path / "ctx-model"
    _run("context-export", tmp_path / "ctx" / "context.pt", folder, "--base", tiny["folder"],
         "--name", "tiny-ctx")
    img = photo_like(3, 64, 80)
    codec = aecodec.Codec(str(folder), threads=1)
    assert codec.decompress(codec.compress(img, quality=50)).shape == img.shape


def test_the_loop_subcommands_share_their_options():
    """The same name for the same thing in every training on the loop."""
    shared = {"--out", "--steps", "--minutes", "--batch", "--crop", "--lr", "--device",
              "--threads", "--bf16", "--validate-every", "--checkpoint-minutes", "--seed",
              "--resume", "--schedule"}
    for name in ("photo", "int8", "encoder", "context", "light-synthesis"):
        opts = {o for p in train.commands[name].params for o in (*p.opts, *p.secondary_opts)}
        assert shared <= opts, (name, shared - opts)


def test_the_packed_training_set_keeps_to_its_size(photo_folder, tmp_path):
    from aecodec.export.data import build_archive, load_images

    size = build_archive([photo_folder], tmp_path / "a.tar", max_bytes=40_000, crop=32)
    assert 0 < size <= 40_000
    items = load_images(tmp_path / "a.tar", 32)
    assert items and all(a.shape == (32, 32, 3) for _, a in items)
    assert len(items) < 3 * 12  # the budget stopped it before every tile
    again = build_archive([photo_folder], tmp_path / "b.tar", max_bytes=40_000, crop=32)
    assert again == size and np.array_equal(load_images(tmp_path / "b.tar", 32)[0][1],
                                            items[0][1])  # seeded


@pytest.mark.slow
def test_the_lean_run_from_a_pack_and_a_checkpoint_kept_elsewhere(photo_folder, photo_like,
                                                                  tmp_path):
    """docs/training.md's lean run, tiny: pack the photos, start from a checkpoint of a run
    made elsewhere (on other data), train for a time budget, export the model folder."""
    import aecodec

    tiny = ["--n", 8, "--m", 8, "--nz", 8, "--batch", 2, "--crop", 64, "--threads", 1]
    _run("photo", photo_folder, "--pack", "--pack-mib", 0.1, "--pack-crop", 64,
         "--out", tmp_path / "pack")
    pack = tmp_path / "pack" / "train.tar"
    assert pack.stat().st_size <= 0.1 * 2**20
    _run("photo", photo_folder, "--out", tmp_path / "elsewhere", "--steps", 1, *tiny)
    start = tmp_path / "elsewhere" / "checkpoint.pt"
    out = _run("photo", pack, "--out", tmp_path / "run", "--resume", start, "--steps", 3,
               "--minutes", 5, *tiny, "--export", tmp_path / "run" / "model")
    assert f"resumed photo at step 1 from {start}" in out
    record = torch.load(tmp_path / "run" / "weights.pt", weights_only=False)["record"]
    assert record["iterations"] == 3 and [r["start_step"] for r in record["runs"]] == [0, 1]
    codec = aecodec.Codec(str(tmp_path / "run" / "model"), threads=1)
    img = photo_like(4, 64, 96)
    assert codec.decompress(codec.compress(img, quality=50)).shape == img.shape


def test_the_cli_reference_shows_the_real_train_help():
    """docs/cli.md's `aecodec train` section is the group's --help and photo's, verbatim."""
    from aecodec.cli import main

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    section = doc.split("## aecodec train\n", 1)[1].split("\n## ", 1)[0]
    shown = [block.split("```", 1)[0] for block in section.split("```\n")[1::2]]
    for args, text in zip((["train", "--help"], ["train", "photo", "--help"]), shown,
                          strict=True):
        r = CliRunner().invoke(main, args, prog_name="aecodec", terminal_width=80)
        assert r.exit_code == 0 and r.output == text, args


def test_bad_training_inputs_are_one_line_errors(photo_folder, tmp_path):
    """A file that is no checkpoint, a checkpoint of another task, a folder without images:
    a non-zero exit and one `Error:` line, not a traceback."""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    tiny = ["--n", 8, "--m", 8, "--nz", 8, "--batch", 2, "--crop", 64, "--threads", 1]
    r = CliRunner().invoke(train, [str(a) for a in ["photo", photo_folder, "--out",
                                                    tmp_path / "a", "--resume", junk, *tiny]])
    assert r.exit_code == 2 and "not a checkpoint or weights file" in r.output, r.output
    _run("photo", photo_folder, "--out", tmp_path / "b", "--steps", 1, *tiny)
    r = CliRunner().invoke(train, [str(a) for a in ["int8", tmp_path / "b" / "weights.pt",
                                                    photo_folder, "--out", tmp_path / "b",
                                                    "--steps", 1, "--crop", 64]])
    assert r.exit_code == 1 and "another task or configuration" in r.output, r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(train, [str(a) for a in ["photo", empty, "--out", tmp_path / "c",
                                                    *tiny]])
    assert r.exit_code == 1 and r.output.startswith("Error: no image"), r.output
    assert not (tmp_path / "c").exists()  # no run folder left behind
