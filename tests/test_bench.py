"""End-to-end bench on a tiny folder: sweep, BD, speed, results.json schema, report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aecodec.bench.classical import classical_codecs
from aecodec.bench.cli import bench
from aecodec.bench.images import synthetic_image
from aecodec.bench.learned import is_photo_model
from aecodec.bench.run import select_codecs

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
CURVE_KEYS = {"setting", "bpp", "psnr", "ms_ssim", "enc_ms", "dec_ms"}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bool]:
    """Two 192x256 images: crops of Kodak when ../shared is there, else synthesized."""
    d = tmp_path_factory.mktemp("tiny")
    real = KODAK.is_dir()
    for i, name in enumerate(("kodim05", "kodim23")):
        if real:
            img = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))[160:352, 200:456]
        else:
            img = synthetic_image(192, 256, seed=i)
        Image.fromarray(np.ascontiguousarray(img)).save(d / f"{name}.png")
    return d, real


@pytest.fixture(scope="module")
def tiny_run(tiny_folder: tuple[Path, bool], tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder, _ = tiny_folder
    out = tmp_path_factory.mktemp("out")
    codecs = ",".join(["aecodec"] + list(classical_codecs()))
    r = CliRunner().invoke(bench, [str(folder), "--codecs", codecs, "--out", str(out),
                                   "--points", "4", "--repeats", "2", "--threads", "1"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads((out / "results.json").read_text())
    res["_out"] = str(out)
    return res


def test_results_schema(tiny_run: dict) -> None:
    res = tiny_run
    assert res["schema"] == 1
    for key in ("images", "config", "environment", "curves", "per_image", "bd", "speed",
                "visual", "timing"):
        assert key in res
    assert res["images"]["count"] == 2
    codecs = res["config"]["codecs"]
    assert "jpeg" in codecs and set(res["curves"]) == set(codecs)
    for name, curve in res["curves"].items():
        assert len(curve) == 4
        for p in curve:
            assert set(p) == CURVE_KEYS
            assert p["bpp"] > 0 and 15 < p["psnr"] < 60 and 0 < p["ms_ssim"] <= 1
        assert set(res["per_image"][name]) == {"kodim05", "kodim23"}
        for pts in res["per_image"][name].values():
            assert {"bytes", *CURVE_KEYS} <= set(pts[0])
        s = res["speed"]["codecs"][name]
        assert s["enc_ms"] > 0 and s["dec_mpix_s"] > 0 and len(s["enc_ms_per_image"]) == 2
    env = res["environment"]
    for lib in ("pillow", "libjpeg-turbo", "libwebp", "openjpeg", "onnxruntime", "aecodec"):
        assert lib in env["versions"]
    assert env["threads"] == 1 and env["cpu"] and env["date"]
    bd = res["bd"]
    assert bd["anchor"] == "jpeg" and bd["codecs"]["jpeg"]["bd_rate"] == pytest.approx(0, abs=1e-9)
    out = Path(res["_out"])
    for f in ("results.json", "report.md", "visual.png", *res["plots"]):
        assert (out / f).is_file()
    assert "| codec | BD-rate" in (out / "report.md").read_text()


def test_rate_increases_with_setting(tiny_run: dict) -> None:
    for curve in tiny_run["curves"].values():
        bpp = [p["bpp"] for p in curve]
        assert bpp == sorted(bpp)


def test_sweeps_span_low_to_high_rate(tiny_run: dict, tiny_folder: tuple[Path, bool]) -> None:
    if not tiny_folder[1]:
        pytest.skip("needs Kodak crops (../shared/data/kodak)")
    for name, curve in tiny_run["curves"].items():
        if name.startswith("aecodec-"):
            continue  # a learned model's rate range is its training's, not a sweep choice
        assert curve[0]["bpp"] < 0.45, name
        assert curve[-1]["bpp"] > 1.5, name


def test_photo_models_are_the_unconstrained_rgb_ones() -> None:
    import dataclasses

    import aecodec

    for info in aecodec.models():
        assert is_photo_model(info) == (info.fixed_size is None and info.channels == 3)
        if info.fixed_size is None:
            gray = dataclasses.replace(info, channels=1)
            assert not is_photo_model(gray)


def test_real_runtime_models_are_filtered() -> None:
    """Whatever aecodec ships now: MNIST models never reach a photo bench."""
    for name in select_codecs(["aecodec"], 1, lambda s: None):
        assert "mnist" not in name


def test_reference_variant_of_a_shipped_model() -> None:
    """`aecodec-<model>-reference` runs the same model from its files: same stream, same pixels."""
    codecs = select_codecs(["aecodec-hyperprior", "aecodec-hyperprior-reference"], 1,
                           lambda s: None)
    if len(codecs) < 2:
        pytest.skip("hyperprior not shipped")
    fast, ref = codecs["aecodec-hyperprior"], codecs["aecodec-hyperprior-reference"]
    assert ref.reference and not fast.reference
    assert not ref.codec.model.rewrite and ref.codec.model.spinning
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    data = fast.encode(img, 40)
    assert ref.encode(img, 40) == data
    assert np.array_equal(ref.decode(data), fast.decode(data))


def test_effort_curves_on_their_own_images(tiny_folder, tmp_path, monkeypatch) -> None:
    """`--effort 1 --effort-every 1=2`: a `+e1` curve on every other image, its BD figures
    against effort 0 and the anchor on exactly those images, kept out of the main BD table."""
    pytest.importorskip("torch")
    from aecodec import effort

    monkeypatch.setitem(effort.STEPS, 1, 3)  # a 3-step effort 1: the bench's wiring, quickly
    folder, _ = tiny_folder
    r = CliRunner().invoke(bench, [str(folder), "--codecs", "aecodec-hyperprior-fast,jpeg",
                                   "--out", str(tmp_path), "--points", "3", "--repeats", "0",
                                   "--threads", "1", "--no-plots", "--effort", "1",
                                   "--effort-every", "1=2"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads((tmp_path / "results.json").read_text())
    name = "aecodec-hyperprior-fast+e1"
    assert list(res["per_image"][name]) == [sorted(p.stem for p in folder.glob("*.png"))[0]]
    assert name not in res["bd"]["codecs"] and name in res["curves"]
    e = res["effort"][name]
    assert e["effort"] == 1 and e["images"] == list(res["per_image"][name])
    assert e["bd_rate_vs_effort0"] is not None and e["encode_s"] > e["effort0_encode_s"]
    assert "Encoder effort" in (tmp_path / "report.md").read_text()
    bad = CliRunner().invoke(bench, [str(folder), "--effort", "1", "--effort-every", "2=3"])
    assert bad.exit_code == 2 and "--effort-every" in bad.output


def test_a_killed_sweep_resumes_where_it_stopped(tmp_path) -> None:
    """Every point is saved as measured; a second run takes them instead of encoding again,
    and one killed midway (an encode raising) keeps what it had measured."""
    from aecodec.bench.sweep import run_sweep

    class Counting:
        name = "counting"

        def __init__(self, fail_at: int | None = None):
            self.calls, self.fail_at = 0, fail_at

        def settings(self, points):
            return [float(q) for q in range(1, points + 1)]

        def encode(self, img, setting):
            self.calls += 1
            if self.calls == self.fail_at:
                raise KeyboardInterrupt  # the run is killed here
            return bytes([int(setting)]) * (10 * int(setting))

        def decode(self, data):
            return np.zeros((8, 8, 3), np.uint8)

    images = [("a", np.zeros((8, 8, 3), np.uint8)), ("b", np.ones((8, 8, 3), np.uint8))]
    state = tmp_path / "state.json"
    killed = Counting(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(images, {"c": killed}, 2, state=state)
    again = Counting()
    res = run_sweep(images, {"c": again}, 2, state=state)
    assert again.calls == 2  # the two points measured before the kill were not redone
    assert [p["bytes"] for p in res["c"]["a"] + res["c"]["b"]] == [10, 20, 10, 20]
    assert [p.get("resumed", False) for p in res["c"]["a"]] == [True, True]
    third = Counting()
    run_sweep(images, {"c": third}, 2, state=state)
    assert third.calls == 0


def test_workers_measure_the_same_points_and_resume(tmp_path) -> None:
    """--jobs: points measured in worker processes equal the serial run's, each saved as it
    comes, and a second run with the state measures nothing again."""
    import functools

    from aecodec.bench.sweep import run_sweep

    rng = np.random.default_rng(0)
    images = [(n, rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for n in "ab"]
    make = functools.partial(select_codecs, ["jpeg", "webp"], 1, print)
    serial = run_sweep(images, make(), 2)
    state = tmp_path / "state.json"
    par = run_sweep(images, make(), 2, state=state, jobs=2, make_codecs=make)
    for codec in ("jpeg", "webp"):
        for name in "ab":
            assert ([(p["bytes"], p["psnr"]) for p in par[codec][name]]
                    == [(p["bytes"], p["psnr"]) for p in serial[codec][name]])
    assert len(json.loads(state.read_text())["points"]) == 8
    again = run_sweep(images, make(), 2, state=state, jobs=2, make_codecs=make)
    assert all(p["resumed"] for c in again.values() for rows in c.values() for p in rows)


class _Failing:
    """A codec whose every encode fails (module level: the spawned workers import it)."""

    name = "failing"
    slow = True  # not warmed up, as the per-image family

    def settings(self, points: int) -> list[float]:
        return [float(q) for q in range(1, points + 1)]

    def encode(self, img: np.ndarray, setting: float) -> bytes:
        raise ValueError(f"cannot encode at {setting}")

    def decode(self, data: bytes) -> np.ndarray:
        raise AssertionError("never reached")


def _failing_codecs() -> dict:
    return {"f": _Failing()}


def test_a_failing_worker_point_stops_the_run_with_its_error(tmp_path) -> None:
    from aecodec.bench.sweep import run_sweep

    images = [(n, np.zeros((8, 8, 3), np.uint8)) for n in "abc"]
    with pytest.raises(ValueError, match="cannot encode"):
        run_sweep(images, _failing_codecs(), 2, state=tmp_path / "s.json", jobs=2,
                  make_codecs=_failing_codecs)


def test_the_slow_family_runs_only_when_named() -> None:
    names = set(select_codecs(["aecodec"], 1, lambda s: None))
    assert "aecodec-overfit" not in names and "aecodec-hyperprior-fast" in names
    assert "aecodec-overfit" in select_codecs(["aecodec-overfit"], 1, lambda s: None)


def test_missing_packages_said_up_front_and_the_load_recorded(tiny_folder, tmp_path,
                                                             monkeypatch) -> None:
    """Without matplotlib or pillow-jxl-plugin the run says first what it will skip (not
    after minutes of sweeping), and results.json and report.md record the machine's load."""
    import aecodec.bench.run as run

    monkeypatch.setattr(run, "_missing", lambda module: module in ("matplotlib", "pillow_jxl"))
    folder, _ = tiny_folder
    out = tmp_path / "out"
    r = CliRunner().invoke(bench, [str(folder), "--codecs", "jpeg,jxl", "--out", str(out),
                                   "--points", "2", "--repeats", "0", "--max-images", "1"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    first = r.output.splitlines()[:2]
    assert "skipping the RD plots" in first[0] and "matplotlib" in first[0], r.output
    assert "skipping jxl: pillow-jxl-plugin" in first[1], r.output
    res = json.loads((out / "results.json").read_text())
    assert len(res["skipped"]) == 2 and res["plots"] == [] and res["config"]["codecs"] == ["jpeg"]
    for when in ("start", "end"):
        load = res["environment"]["load"][when]
        assert len(load["loadavg"]) == 3 and isinstance(load["others"], list)
    report = (out / "report.md").read_text()
    assert "machine load at the start: load average" in report
    assert "- skipped: jxl" in report


def test_a_model_folder_is_a_codec_named_for_its_manifest(tmp_path) -> None:
    """`aecodec-<folder>` benches a model folder (a fine-tune beside its start), its curve
    named `aecodec-<manifest name>`; a folder that is no model is skipped, saying why."""
    import shutil

    import aecodec

    src = aecodec.model.find("hyperprior-fast").path
    folder = tmp_path / "mine"
    shutil.copytree(src, folder)
    said: list[str] = []
    codecs = select_codecs([f"aecodec-{folder}", f"aecodec-{tmp_path}"], 1, said.append)
    assert list(codecs) == ["aecodec-hyperprior-fast"]
    assert codecs["aecodec-hyperprior-fast"].model == str(folder)
    assert len(said) == 1 and str(tmp_path) in said[0] and "skipped" in said[0]
