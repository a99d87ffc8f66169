"""The README is the front door: its Python examples run as written, its commands exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import aecodec  # noqa: F401 - registers the AEC format with Pillow

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_python_examples_run_as_written(tmp_path, photo):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 2
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(photo).save(tmp_path / "a.jpg", quality=90)
    code = "\n".join(blocks)  # the later blocks continue the first, as a reader would type them
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "photo.aec").is_file()
    assert np.asarray(Image.open(tmp_path / "photo.aec")).shape == photo.shape


def test_cli_commands_in_the_readme_exist():
    from click.testing import CliRunner

    from aecodec.cli import main

    named = set(re.findall(r"^aecodec (\w+)", README, re.M)) - {"train", "bench", "mnist"}
    assert {"compress", "decompress", "info", "models"} <= named
    for name in named:
        r = CliRunner().invoke(main, [name, "--help"])
        assert r.exit_code == 0, (name, r.output)


def test_cli_reference_names_every_option_of_every_command():
    import click

    from aecodec.cli import main

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    ctx = click.Context(main)
    for name in ("compress", "decompress", "info", "models", "demo"):
        section = doc.split(f"## aecodec {name}\n", 1)[1].split("\n## ", 1)[0]
        for param in main.get_command(ctx, name).params:
            if isinstance(param, click.Option):
                assert any(o in section for o in param.opts), (name, param.opts)
