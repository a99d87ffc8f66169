"""The MNIST IDX reader: gzip and raw files, both name spellings, clear errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from aecodec.bench.mnist_data import (
    MnistNotFoundError,
    default_folder,
    load_mnist,
    read_idx,
    write_idx,
)


def _fixture(folder, n=5, gz=True, sep="-"):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    ext = ".gz" if gz else ""
    for stem in ("train", "t10k"):
        write_idx(folder / f"{stem}-images{sep}idx3-ubyte{ext}", imgs)
        write_idx(folder / f"{stem}-labels{sep}idx1-ubyte{ext}", labels)
    return imgs, labels


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("sep", ["-", "."])
def test_load_roundtrip(tmp_path, gz, sep):
    imgs, labels = _fixture(tmp_path, gz=gz, sep=sep)
    for split in ("train", "test"):
        x, y = load_mnist(split, tmp_path)
        assert x.dtype == np.uint8 and x.shape == (5, 28, 28)
        np.testing.assert_array_equal(x, imgs)
        np.testing.assert_array_equal(y, labels)
    x, y = load_mnist("test", tmp_path, limit=2)
    assert x.shape == (2, 28, 28) and y.shape == (2,)


def test_gzip_detected_by_content(tmp_path):
    """A gzipped file without the .gz suffix is still read."""
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    p = tmp_path / "x-idx2-ubyte"
    write_idx(p, arr, gz=True)
    assert p.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(p), arr)


def test_missing_files_error(tmp_path):
    with pytest.raises(MnistNotFoundError) as e:
        load_mnist("train", tmp_path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg
    assert str(tmp_path.resolve()) in msg and "nothing is downloaded" in msg
    assert isinstance(e.value, FileNotFoundError)
    # only the labels missing: the message names just them
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(MnistNotFoundError, match="t10k-labels") as e:
        load_mnist("test", tmp_path)
    assert "t10k-images" not in str(e.value)


def test_bad_files(tmp_path):
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(p)
    data = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in (10, 28, 28))
    p.write_bytes(gzip.compress(data + b"\0" * 100))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(p)
    with pytest.raises(MnistNotFoundError):
        read_idx(tmp_path / "nope")
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid", tmp_path)


def test_label_count_mismatch(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="labels"):
        load_mnist("test", tmp_path)


def test_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("AECODEC_MNIST", str(tmp_path))
    assert default_folder() == tmp_path
    _fixture(tmp_path, n=3)
    assert load_mnist("test")[0].shape == (3, 28, 28)


def test_real_mnist():
    folder = default_folder()
    try:
        x, y = load_mnist("test", folder)
    except MnistNotFoundError:
        pytest.skip(f"MNIST not found in {folder}")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert np.bincount(y, minlength=10).min() > 800
    xt, yt = load_mnist("train", folder, limit=100)
    assert xt.shape == (100, 28, 28) and yt[:5].tolist() == [5, 0, 4, 1, 9]


def test_cli_reports_missing_data(tmp_path):
    from click.testing import CliRunner

    from aecodec.cli import main

    res = CliRunner().invoke(main, ["mnist", "bench", "--data", str(tmp_path), "--digits", "5"])
    assert res.exit_code != 0
    assert "t10k-images-idx3-ubyte" in res.output and "nothing is downloaded" in res.output


def test_cli_bench_searches_only_the_named_models(tmp_path):
    """`--refine-model` limits the encoder-side search (slow on 256 latents) to the models
    named; the bench's JSON then has search rows for those alone."""
    import json

    from click.testing import CliRunner

    from aecodec.cli import main

    folder = default_folder()
    try:
        load_mnist("test", folder, limit=1)
    except MnistNotFoundError:
        pytest.skip(f"MNIST not found in {folder}")
    args = ["mnist", "bench", "--digits", "3", "--model", "mnist-rd", "--model", "mnist-rd-hq",
            "--refine", "1", "--refine-model", "mnist-rd", "--out", str(tmp_path)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    learned = json.loads((tmp_path / "mnist_bench.json").read_text())["learned"]
    assert "mnist-rd +search1" in learned and "mnist-rd-hq" in learned
    assert not any(k.startswith("mnist-rd-hq +search") for k in learned)
