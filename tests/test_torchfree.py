"""The runtime must work where torch (and onnx) cannot even be imported."""

from __future__ import annotations

import ast
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
    """No `import torch` in codec/ but inside functions (indented) of the encoders that train:
    the effort module (tests/test_effort.py) and the overfit family's trainer (`overfit/fit.py`,
    `fused.py`, `soap.py`), so torch loads only when an encode asks for them. The trainer is
    imported only by `overfit/family.py`, inside the function that encodes."""
    codec = Path(__file__).resolve().parents[1] / "codec"
    pattern = re.compile(r"^\s*(import|from)\s+torch\b", re.MULTILINE)
    top_level = re.compile(r"^(import|from)\s+torch\b", re.MULTILINE)
    trainer = {codec / "overfit" / n for n in ("fit.py", "fused.py", "soap.py")}
    allowed = {codec / "effort.py", *trainer}
    importers = re.compile(r"^\s*from \.(fit|fused|soap)? ?import .*\b(fit|fused|soap)\b|"
                           r"^\s*from \.(fit|fused|soap) import", re.MULTILINE)
    for f in codec.rglob("*.py"):
        text = f.read_text()
        if f in allowed:
            assert not top_level.search(text), f
        else:
            assert not pattern.search(text), f
        if f in trainer:
            continue
        for m in importers.finditer(text):  # the trainer only from inside a function
            assert f == codec / "overfit" / "family.py" and m.group(0).startswith(" "), f



def test_bench_without_torch(tmp_path, photo):
    """The bench needs its extra, not torch: every module imports and `aecodec bench` runs."""
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.fromarray(photo).save(tmp_path / "img" / "a.png")
    code = (
        "import importlib, pkgutil, aecodec.bench as b; "
        "[importlib.import_module('aecodec.bench.' + m.name)"
        " for m in pkgutil.iter_modules(b.__path__) if m.name != '__main__']; "
        "from aecodec.cli import main; main(prog_name='aecodec')"
    )
    r = py(code, "bench", str(tmp_path / "img"), "--codecs", "jpeg,webp", "--points", "2",
           "--repeats", "0", "--no-plots", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "results.json").is_file()
    r = py("from aecodec.cli import main; main(prog_name='aecodec')", "mnist", "bench", "--help")
    assert r.returncode == 0 and "--digits" in r.stdout, r.stderr


def test_bench_sources_never_import_the_torch_side():
    bench = Path(__file__).resolve().parents[1] / "bench"
    pattern = re.compile(r"^\s*(import|from)\s+(torch|onnx|aecodec\.export)\b", re.MULTILINE)
    for f in bench.rglob("*.py"):
        assert not pattern.search(f.read_text()), f


REPO = Path(__file__).resolve().parents[1]
ROOTS = {"codec": "aecodec", "export": "aecodec.export", "bench": "aecodec.bench"}


def imports_of(file: Path, package: str) -> set[str]:
    """Every module a source file imports, at the top or inside a function (ast), relative
    imports made absolute against `package` (the file's own package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def sources(root: str) -> dict[Path, str]:
    """The .py files under a top folder, each with the package it sits in."""
    top = REPO / root
    return {f: ".".join([ROOTS[root], *f.parent.relative_to(top).parts])
            for f in top.rglob("*.py")}


def test_dependencies_go_one_way():
    """export -> runtime <- bench: export imports no bench code, bench and the runtime no
    export code, the runtime no bench code; function-level imports count (commands of the
    other side are reached by name: `aecodec.cli`, `aecodec.mnist_cli`, PASSTHROUGH)."""
    forbidden = {"export": ("aecodec.bench",), "bench": ("aecodec.export",),
                 "codec": ("aecodec.export", "aecodec.bench")}
    bad = []
    for root, prefixes in forbidden.items():
        for f, package in sources(root).items():
            for name in imports_of(f, package):
                if any(name == p or name.startswith(p + ".") for p in prefixes):
                    bad.append(f"{f.relative_to(REPO)}: {name}")
    assert not bad, bad


def test_the_import_walk_sees_relative_and_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from ..bench import sweep\n    import aecodec.export.loop\n")
    names = imports_of(f, "aecodec.export")
    assert {"aecodec.bench", "aecodec.bench.sweep", "aecodec.export.loop"} <= names
