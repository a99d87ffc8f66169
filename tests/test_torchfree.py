"""The runtime must work where torch (and onnx) cannot even be imported."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BLOCK = "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; "


def py(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code, *args], capture_output=True,
                          text=True, timeout=300)


def test_api_without_torch(synth):
    code = (
        "import numpy as np, aecodec; "
        "img = np.full((20, 30, 3), 120, np.uint8); "
        f"c = aecodec.Codec({str(synth['hyperprior'])!r}); "
        "assert c.decompress(c.compress(img)).shape == img.shape; "
        "aecodec.models(); "
        "assert sys.modules.get('torch') is None and sys.modules.get('onnx') is None; "
        "print('ok')"
    )
    r = py(code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_cli_without_torch(synth, tmp_path, photo):
    from PIL import Image

    Image.fromarray(photo).save(tmp_path / "p.png")
    main = "from aecodec.cli import main; main(prog_name='aecodec')"
    for args in (["--help"], ["models"],
                 ["compress", str(tmp_path / "p.png"), "--model", str(synth["factorized"])],
                 ["info", str(tmp_path / "p.aec")],
                 ["decompress", str(tmp_path / "p.aec"), "-o", str(tmp_path / "q.png"),
                  "--model", str(synth["factorized"])]):
        r = py(main, *args)
        assert r.returncode == 0, (args, r.stderr)


def test_runtime_sources_never_import_torch():
    codec = Path(__file__).resolve().parents[1] / "codec"
    pattern = re.compile(r"^\s*(import|from)\s+torch\b", re.MULTILINE)
    for f in codec.glob("*.py"):
        assert not pattern.search(f.read_text()), f
