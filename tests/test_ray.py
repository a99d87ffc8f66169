"""Ray: the CLI's --ray job and the map_batches classes give the plain CLI's streams.

One local Ray (2 CPUs) serves every test here; they skip when ray is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import aecodec
from aecodec import cli

BLOCK_RAY = "import sys; sys.modules['ray'] = None; "


def run(*args: str, **kw):
    return subprocess.run([sys.executable, "-m", "aecodec.cli", *map(str, args)],
                          capture_output=True, timeout=600, **kw)


def photos(folder: Path, n: int) -> list[np.ndarray]:
    """n 64x64 photos (RGB and one gray) in folder and folder/sub."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    out = []
    for i in range(n):
        img = np.stack([x * 4, y * 4, (x * y + 40 * i) % 256], axis=2)
        img = (img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
        if i == 1:
            img = img[:, :, 0].copy()
        sub = folder / ("sub" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sub / f"p{i}.png")
        out.append(img)
    return out


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_runtime_imports_without_ray(tmp_path):
    """aecodec.ray loads without ray; a job asks for the extra in one clear line."""
    code = (BLOCK_RAY + "import numpy as np, aecodec.ray as r; "
            "out = r.Compressor()({'image': np.zeros((1, 32, 32, 3), np.uint8)}); "
            "assert len(out['aec'][0]) > 12; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    main = BLOCK_RAY + "from aecodec.cli import main; main(prog_name='aecodec')"
    p = subprocess.run([sys.executable, "-c", main, "compress", str(tmp_path), "--ray"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "pip install 'aecodec[ray]'" in p.stderr
    assert not (tmp_path / "a.aec").exists()


@pytest.fixture(scope="module")
def ray_address():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if not aecodec.models():
        pytest.skip("no shipped models")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_cli_on_ray_gives_the_plain_streams(ray_address, tmp_path):
    """A folder compressed by a second process that joins this Ray (--ray-address), then
    decompressed on Ray from this process (which already runs Ray): the plain CLI's bytes."""
    src = tmp_path / "in"
    photos(src, 5)
    (src / "sub" / "bad.png").write_bytes(b"broken")
    plain, on_ray = tmp_path / "plain", tmp_path / "ray"
    r = run("compress", src, "-o", plain, "-q", 40, "-j", 2)
    assert r.returncode == 1 and r.stderr.decode().count("Error:") == 1
    r = run("compress", src, "-o", on_ray, "-q", 40, "--ray-address", ray_address)
    assert r.returncode == 1, r.stderr
    err = r.stderr.decode()
    assert err.count("Error:") == 1 and "bad.png" in err and "cannot read image" in err
    assert "compressed 5 files (1 failed, 0 skipped)" in r.stdout.decode()
    assert sorted(files(plain)) == ["p0.aec", "p2.aec", "p4.aec", "sub/p1.aec", "sub/p3.aec"]
    assert files(on_ray) == files(plain)

    (on_ray / "p2.aec").unlink()
    r = run("compress", src, "-o", on_ray, "-q", 40, "--ray-address", ray_address,
            "--skip-existing")
    assert "compressed 1 files (1 failed, 4 skipped)" in r.stdout.decode()
    assert files(on_ray) == files(plain)

    runner = CliRunner()
    r = runner.invoke(cli.main, ["decompress", str(plain), "-o", str(tmp_path / "d1"), "-j", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli.main, ["decompress", str(plain), "-o", str(tmp_path / "d2"), "--ray"])
    assert r.exit_code == 0, r.output
    assert "decompressed 5 files (0 failed, 0 skipped)" in r.output
    assert files(tmp_path / "d2") == files(tmp_path / "d1")


def test_map_batches_classes(ray_address, tmp_path):
    import ray

    import aecodec.ray as aray

    images = photos(tmp_path, 4)
    codec = aecodec.Codec(threads=1)
    rows = [{"image": img, "name": f"p{i}"} for i, img in enumerate(images)]
    ds = ray.data.from_items(rows).map_batches(
        aray.Compressor, fn_constructor_kwargs={"quality": 40}, batch_size=2,
        compute=ray.data.ActorPoolStrategy(size=2))
    coded = {r["name"]: r["aec"] for r in ds.take_all()}
    for i, img in enumerate(images):
        assert coded[f"p{i}"] == codec.compress(img, 40)
    back = ray.data.from_items([{"aec": v, "name": k} for k, v in coded.items()]).map_batches(
        aray.Decompressor, batch_size=3, compute=ray.data.ActorPoolStrategy(size=1))
    decoded = {r["name"]: r["image"] for r in back.take_all()}
    for i in range(len(images)):
        assert np.array_equal(decoded[f"p{i}"], codec.decompress(coded[f"p{i}"]))
    # image file bytes in, PNG bytes out
    files_ds = ray.data.from_items([{"image": (tmp_path / "p0.png").read_bytes()}])
    aec = files_ds.map_batches(aray.Compressor, fn_constructor_kwargs={"quality": 40},
                               compute=ray.data.ActorPoolStrategy(size=1)).take_all()
    assert aec[0]["aec"] == coded["p0"]
