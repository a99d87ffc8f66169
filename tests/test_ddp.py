"""Data-parallel training: `torchrun --nproc-per-node 2` on the CPU (gloo) trains, and one step of
two processes is the update one process makes on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed")

from PIL import Image  # noqa: E402

WORKER = """
import sys
from pathlib import Path

import torch

import aecodec.export.models as models

models.noisy = lambda x: x  # a deterministic step: the test compares updates, not noise draws
from aecodec.export.loop import Recipe, fit
from aecodec.export.models import Config
from aecodec.export.tasks.photo import PhotoTask

torch.set_num_threads(1)
cfg = Config(family="hyperprior", n=8, m=8, nz=8, lambdas=(0.01, 0.1))
recipe = Recipe(steps=1, batch=4, crop=64, lr=1e-3, bf16=False, checkpoint_minutes=100)
fit(PhotoTask(Path(sys.argv[1]), cfg), recipe, Path(sys.argv[2]))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", "2", *args]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ddp_imgs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    for i in range(3):
        base = np.stack([np.sin(xx / (5 + c + i) + yy / 9) for c in range(3)], -1) * 80 + 128
        a = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(d / f"img{i}.png")
    return d


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def test_two_processes_make_the_single_process_update(images, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, str(worker), str(images), str(one)], check=True,
                   env=_env(), timeout=300)
    subprocess.run(_torchrun(str(worker), str(images), str(two)), check=True, env=_env(),
                   timeout=300)
    a, b = _weights(one / "weights.pt"), _weights(two / "weights.pt")
    assert a["record"]["runs"][-1]["processes"] == 1
    assert b["record"]["runs"][-1]["processes"] == 2
    torch.manual_seed(0)  # the initial model both started from (train seeds 0)
    from aecodec.export.models import Config, build

    init = build(Config(family="hyperprior", n=8, m=8, nz=8, lambdas=(0.01, 0.1))).state_dict()
    moved = 0
    for k, v in a["model"].items():
        if not v.is_floating_point():
            continue
        assert torch.allclose(v, b["model"][k], atol=1e-5, rtol=0), k
        moved += int(torch.count_nonzero(v != init[k]))
    assert moved > 1000  # the step did change the model


def test_aecodec_train_under_torchrun(images, tmp_path):
    out = tmp_path / "run"  # (torchrun's own parser would take --n / --m: default sizes here)
    subprocess.run(_torchrun("-m", "aecodec.export.cli", str(images), "--out", str(out),
                             "--family", "factorized", "--iterations", "3", "--batch", "4",
                             "--crop", "64", "--threads", "1"),
                   check=True, env=_env(), timeout=300)
    w = _weights(out / "weights.pt")
    assert w["record"]["iterations"] == 3
    assert w["record"]["runs"][-1]["processes"] == 2
