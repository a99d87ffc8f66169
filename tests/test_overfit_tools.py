"""The overfit family's two measurement tools: steps against RD cost, and the step's parts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")


def _image(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([4 * x + 60, 5 * y + 40, (x * y) % 200], -1).astype(np.uint8)


def test_overfit_steps_measures_real_streams_and_resumes(tmp_path, monkeypatch):
    from aecodec.bench import overfit_steps

    img = _image()
    done = overfit_steps.run([("tiny", img)], [2, 4], 60.0, tmp_path, log=lambda s: None)
    assert set(done) == {"tiny|default|60", "tiny|2|60", "tiny|4|60"}
    for p in done.values():  # a real stream: its size, and the cost from its decoded pixels
        assert p["bytes"] > 0 and p["bpp"] == pytest.approx(8 * p["bytes"] / img[..., 0].size)
        assert p["cost"] > p["bpp"]
    md = (tmp_path / "steps.md").read_text()
    assert "| default model |" in md and "| 4 |" in md
    # a second run measures nothing again, and adds only the new step count
    calls = []
    real = overfit_steps.overfit_point
    monkeypatch.setattr(overfit_steps, "overfit_point",
                        lambda im, q, n, seed=0: calls.append(n) or real(im, q, n, seed))
    again = overfit_steps.run([("tiny", img)], [2, 4, 6], 60.0, tmp_path, log=lambda s: None)
    assert calls == [6] and again["tiny|2|60"] == done["tiny|2|60"]
    assert json.loads((tmp_path / "steps.json").read_text())["points"].keys() == again.keys()


def test_overfit_steps_command_refuses_bad_step_lists(tmp_path):
    from PIL import Image

    from aecodec.cli import main

    Image.fromarray(_image()).save(tmp_path / "a.png")
    for bad in ("x", "0", ""):
        r = CliRunner().invoke(main, ["tools", "overfit-steps", str(tmp_path / "a.png"),
                                      "--steps", bad, "--out", str(tmp_path / "o")])
        assert r.exit_code == 2 and "--steps" in r.output, (bad, r.output)


def test_overfit_step_profile_times_every_part(tmp_path):
    from aecodec.bench import overfit_step

    times = overfit_step.profile(_image(40, 56), threads=1, repeats=1)
    assert {"whole step", "ARM term, fused (forward + backward)",
            "synthesis term, fused (forward + backward)"} <= set(times)
    assert all(t > 0 for t in times.values())
    md = overfit_step.report(times, "56x40", 1, "quiet")
    assert md.count("\n| ") == len(times) + 1
