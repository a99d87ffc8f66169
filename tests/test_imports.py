"""The runtime's modules import one another without a cycle, read from the sources (ast), so a
function-level `from .x import` counts as much as a top-level one.

A cycle works until the day someone moves an import to the top of a file; batch and ray had
one. The folder-job package also stays free of Ray and of the CLI's presentation.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODEC = ROOT / "codec"
PACKAGES = {"aecodec": CODEC, "aecodec.export": ROOT / "export", "aecodec.bench": ROOT / "bench"}


def modules(packages: tuple[str, ...] = ("aecodec",)) -> dict[str, Path]:
    """Every module of the packages' folders by its import name (aecodec.x, aecodec.latent.y,
    aecodec.export.tasks.z)."""
    out = {}
    for package in packages:
        folder = PACKAGES[package]
        for f in folder.rglob("*.py"):
            parts = [*package.split("."), *f.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def imported(name: str, file: Path) -> set[str]:
    """The names a module imports anywhere in its body, relative imports made absolute; for
    `from .x import y` both x and x.y (y may be a submodule)."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def graph(packages: tuple[str, ...] = ("aecodec",)) -> dict[str, set[str]]:
    """Module -> the modules of `packages` its imports load: the one named and the packages
    above it (importing a.b.c runs a/__init__ and a/b/__init__), but not the packages the
    importer itself sits in, which are loaded already."""
    mods = modules(packages)
    out: dict[str, set[str]] = {}
    for name, file in mods.items():
        deps = set()
        for target in imported(name, file):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                m = ".".join(parts[:i])
                if m in mods and m != name and not name.startswith(m + "."):
                    deps.add(m)
        out[name] = deps
    return out


def cycle(g: dict[str, set[str]]) -> list[str]:
    """One import cycle in g (empty if none): a depth-first search for a back edge."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        path.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return []

    for n in sorted(g):
        if n not in state and (found := visit(n)):
            return found
    return []


def test_the_walk_sees_function_level_and_package_imports():
    g = graph()
    assert "aecodec.ray" in g["aecodec.cli"]  # imported inside choose_runner only
    assert {"aecodec.batch", "aecodec.batch.coder"} <= g["aecodec.ray"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_the_runtime():
    found = cycle(graph())
    assert not found, " -> ".join(found)


def test_no_import_cycle_in_the_torch_side_or_the_bench():
    g = graph(tuple(PACKAGES))
    assert "aecodec.export.tasks.photo" in g["aecodec.export.tasks.light"] or \
        "aecodec.export.light_synthesis" in g["aecodec.export.tasks.light"]
    found = cycle(g)
    assert not found, " -> ".join(found)


def test_the_batch_package_imports_neither_ray_nor_the_cli():
    """Runners are chosen by the CLI; the job only reports outcomes (no progress bar)."""
    mods = modules()
    for name, file in mods.items():
        if name == "aecodec.batch" or name.startswith("aecodec.batch."):
            names = imported(name, file)
            assert not {n for n in names if n.startswith(("aecodec.ray", "aecodec.cli"))}, name
            assert not {n for n in names if n.split(".")[0] in ("tqdm", "ray")}, name
