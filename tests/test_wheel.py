"""The wheel that `pip install .` builds holds every module and the shipped models.

An editable install maps the folders onto `aecodec` and hides a module the package list forgot;
a wheel does not. This builds one and compares it with the source tree.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"codec": "aecodec", "export": "aecodec/export", "bench": "aecodec/bench"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[set[str], str]:
    """The wheel's file names and the build's log (verbose: setuptools' warnings in it)."""
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out),
                        str(ROOT)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip()[-300:]}")
    (whl,) = out.glob("aecodec-*.whl")
    return set(zipfile.ZipFile(whl).namelist()), r.stdout + r.stderr


@pytest.fixture(scope="module")
def wheel_names(built) -> set[str]:
    return built[0]


def test_the_build_warns_of_nothing(built):
    """No deprecated metadata (`project.license` is an SPDX string) and no folder that Python
    could import left out of `packages` (aecodec.data): builds that will keep working."""
    log = built[1]
    assert "SetuptoolsDeprecationWarning" not in log, log[-3000:]
    assert "absent from the `packages` configuration" not in log, log[-3000:]


def test_the_wheel_is_typed_and_runs_as_a_module(wheel_names):
    assert {"aecodec/py.typed", "aecodec/__main__.py"} <= wheel_names


def test_every_module_is_in_the_wheel(wheel_names):
    missing = [str(f.relative_to(ROOT)) for src, dst in FOLDERS.items()
               for f in (ROOT / src).rglob("*.py")
               if f"{dst}/{f.relative_to(ROOT / src).as_posix()}" not in wheel_names]
    assert not missing, f"modules missing from the wheel: {missing}"


def test_shipped_models_and_sample_are_in_the_wheel(wheel_names):
    models = ROOT / "codec" / "models"
    files = [f for f in models.rglob("*") if f.is_file()] + [ROOT / "codec/data/kodim23.png"]
    assert len(files) > 10
    missing = [str(f.relative_to(ROOT)) for f in files
               if f"aecodec/{f.relative_to(ROOT / 'codec').as_posix()}" not in wheel_names]
    assert not missing, f"package data missing from the wheel: {missing}"


def test_no_test_or_checkpoint_files_in_the_wheel(wheel_names):
    assert not [n for n in wheel_names if n.startswith(("tests/", "checkpoints/", "results/"))]


def test_the_fine_tune_start_is_in_the_wheel(wheel_names):
    """`aecodec train photo DIR --init hyperprior` from a wheel: the hyperprior's weights are
    package data, and no other checkpoint rides along."""
    shipped = [n for n in wheel_names if n.endswith(".pt")]
    assert shipped == ["aecodec/checkpoints/hyperprior.pt"]
