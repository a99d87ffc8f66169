"""Shared fixtures: tiny synthetic model folders (built with onnx.helper) and the shared data.

The synthetic models are exact space-to-depth / depth-to-space transforms with real tables,
gains and an integer hyper-decoder, so every code path of the runtime runs in milliseconds
without trained weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = 4  # latent stride of the synthetic models


def shared_dir() -> Path:
    return Path(os.environ.get("AECODEC_SHARED") or REPO.parent / "shared")


@pytest.fixture(scope="session")
def kodak() -> list[Path]:
    files = sorted((shared_dir() / "data" / "kodak").glob("kodim*.png"))
    if len(files) < 24:
        pytest.skip("Kodak images not found (set AECODEC_SHARED to the shared folder)")
    return files


def _laplace_tables(scales: list[float], half: int) -> dict[str, np.ndarray]:
    x = np.arange(-half, half + 1, dtype=np.float64)
    pmf = np.stack([np.exp(-np.abs(x) / s) for s in scales])
    pmf = pmf / pmf.sum(axis=1, keepdims=True) * (1 - 1e-4)
    n = len(scales)
    return {
        "pmf": pmf,
        "len": np.full(n, 2 * half + 1, np.int32),
        "offset": np.full(n, -half, np.int32),
    }


def _graph(path: Path, nodes, name_in: str, shape_in, name_out: str, shape_out, inits=()) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(name_in, TensorProto.FLOAT, shape_in)],
        [helper.make_tensor_value_info(name_out, TensorProto.FLOAT, shape_out)],
        initializer=list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_model(
    folder: Path,
    family: str = "factorized",
    channels: int = 3,
    fixed_size: tuple[int, int] | None = None,
    levels: int = 3,
    name: str | None = None,
) -> Path:
    """Write a complete, valid synthetic model folder and return it."""
    from onnx import helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    m = channels * BLOCK * BLOCK
    hw = list(fixed_size) if fixed_size else ["H", "W"]
    lw = [d // BLOCK for d in fixed_size] if fixed_size else ["h", "w"]
    _graph(folder / "analysis.onnx",
           [helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=BLOCK)],
           "x", [1, channels, *hw], "y", [1, m, *lw])
    _graph(folder / "synthesis.onnx",
           [helper.make_node("DepthToSpace", ["y_hat"], ["x_hat"], blocksize=BLOCK, mode="DCR")],
           "y_hat", [1, m, *lw], "x_hat", [1, channels, *hw])
    gain = np.geomspace(8.0, 128.0, levels)[:, None] * np.ones((1, m))
    arrays: dict[str, np.ndarray] = {
        "gain": gain.astype(np.float32), "inv_gain": (1 / gain).astype(np.float32)
    }
    latent = {"channels": m, "stride": BLOCK}
    if family == "factorized":
        # values 0..gain; the table covers 0..63 only, so high qualities exercise escapes
        pmf = np.full((m, 64), 0.999 / 64)
        arrays |= {"y_pmf": pmf, "y_len": np.full(m, 64, np.int32),
                   "y_offset": np.zeros(m, np.int32)}
        pad = BLOCK
    else:
        nz, a, t = 8, 8, 6
        w = np.zeros((nz, m, 1, 1), np.float32)
        for c in range(m):
            w[c % nz, c, 0, 0] = 0.1
        _graph(folder / "hyper_analysis.onnx",
               [helper.make_node("AveragePool", ["y"], ["p"], kernel_shape=[4, 4], strides=[4, 4]),
                helper.make_node("Conv", ["p", "wz"], ["z"])],
               "y", [1, m, "h", "w"], "z", [1, nz, "hz", "wz"],
               [numpy_helper.from_array(w, "wz")])
        w0 = np.zeros((4 * a, nz, 1, 1), np.int32)
        for o in range(4 * a):
            w0[o, (o // 4) % nz] = 1
        w1 = np.zeros((8 * m, a, 1, 1), np.int32)
        for o in range(8 * m):
            w1[o, (o // 4) % a] = 1 if o < 4 * m else -1
        big = 2**15
        arrays |= {
            "w0": w0, "b0": np.zeros(4 * a, np.int64), "m0": np.full(4 * a, 2, np.int64),
            "shift0": np.array(1), "ps0": np.array(2), "lo0": np.array(-big), "hi0": np.array(big),
            "w1": w1, "b1": np.r_[np.zeros(4 * m), np.full(4 * m, 3)].astype(np.int64),
            "m1": np.r_[np.full(4 * m, 16), np.ones(4 * m)].astype(np.int64),
            "shift1": np.array(0), "ps1": np.array(2),
            "lo1": np.r_[np.full(4 * m, -big), np.zeros(4 * m)].astype(np.int64),
            "hi1": np.r_[np.full(4 * m, big), np.full(4 * m, t - 1)].astype(np.int64),
        }
        net = {k: arrays.pop(k) for k in list(arrays) if k[0] in "wbmslph" and k[1:].isdigit()
               or k.startswith(("shift", "lo", "hi", "ps"))}
        np.savez(folder / "hyper_synthesis.npz", **net)
        for key, tab in (("y", _laplace_tables([0.5, 1, 2, 4, 8, 16], 64)),
                         ("z", _laplace_tables([4.0] * nz, 32))):
            arrays |= {f"{key}_{k}": v for k, v in tab.items()}
        latent |= {"hyper_channels": nz, "hyper_stride": BLOCK * 4}
        pad = BLOCK * 4
    np.savez(folder / "tables.npz", **arrays)
    files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
             for f in sorted(folder.iterdir()) if f.name != "manifest.json"}
    text = "".join(f"{n}\0{files[n]}\n" for n in sorted(files))
    digest = hashlib.sha256(text.encode()).hexdigest()
    manifest = {
        "format": 1, "name": name or folder.name, "version": "0.0.1", "family": family,
        "description": "synthetic test model", "mean_bits": 4,
        "image": {"channels": channels, "pad_multiple": pad,
                  "fixed_size": list(fixed_size) if fixed_size else None},
        "latent": latent, "rate": {"levels": levels, "lambdas": [0.0] * levels},
        "files": files, "sha256": digest, "id": digest[:8],
        "training": {}, "results": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> dict[str, Path]:
    """Synthetic model folders: factorized RGB, hyperprior RGB, fixed-size 28x28 grayscale."""
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("models")
    return {
        "factorized": make_model(root / "synth-factorized"),
        "hyperprior": make_model(root / "synth-hyperprior", family="hyperprior"),
        "mnist": make_model(root / "synth-mnist", channels=1, fixed_size=(28, 28), levels=1),
    }


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A small deterministic RGB test image with edges and gradients (not a multiple of 16)."""
    y, x = np.mgrid[0:45, 0:70]
    img = np.stack([x * 3, y * 5, (x + y) * 2 % 256], axis=2)
    img[10:20, 30:50] = [250, 10, 10]
    return img.clip(0, 255).astype(np.uint8)


def _photo_like(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (7 + 3 * c) + yy / 11) for c in range(3)], -1) * 80 + 128
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def photo_like():
    """Smooth photo-like RGB images with noise: photo_like(seed, h=96, w=128)."""
    return _photo_like


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """A folder of three 96x128 photo-like PNGs, for tiny trainings."""
    from PIL import Image

    d = tmp_path_factory.mktemp("imgs")
    for i in range(3):
        Image.fromarray(_photo_like(i)).save(d / f"img{i}.png")
    return d

