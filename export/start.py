"""Where a fine-tune starts: a shipped model's weights by name, and the level layout it keeps.

A shipped model's model-only checkpoint is package data (`aecodec/checkpoints/<name>.pt` in
the wheel, `checkpoints/<name>.pt` in a checkout), so `aecodec train photo DIR --init
hyperprior` works from an installed wheel as from a clone. Its exported folder added levels
below the trained ones (`--extend-low`); a fine-tune of it keeps that layout, so the same
quality gives about the same rate with either model.
"""

from __future__ import annotations

import json
from pathlib import Path

from aecodec import model as runtime_models

PHOTO_FAMILIES = ("hyperprior", "factorized")  # what `aecodec train photo` trains
FOLDERS = (
    Path(runtime_models.__file__).resolve().parent / "checkpoints",  # installed: package data
    Path(__file__).resolve().parents[1] / "checkpoints",  # a checkout
)


def shipped_checkpoints() -> dict[str, Path]:
    """{name: path} of the shipped photo models whose weights are here to start from."""
    found: dict[str, Path] = {}
    for folder in FOLDERS:
        for p in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
            manifest = _manifest(p.stem) or {}
            if manifest.get("family") in PHOTO_FAMILIES and \
                    manifest.get("image", {}).get("fixed_size") is None:
                found.setdefault(p.stem, p)
    return found


def resolve(value: str | Path) -> Path:
    """A weights file: `value` itself when it is a file, else a shipped model's checkpoint
    by name. Raises FileNotFoundError naming what there is."""
    path = Path(value)
    if path.is_file():
        return path
    known = shipped_checkpoints()
    if str(value) in known:
        return known[str(value)]
    names = ", ".join(known) or "none in this installation"
    raise FileNotFoundError(f"{value}: neither a weights file nor a shipped model's weights "
                            f"(here: {names}; the wheel ships hyperprior's, a checkout of "
                            f"the repository every photo model's in checkpoints/)")


def shipped_name(path: Path, record: dict) -> str | None:
    """The shipped model a weights file is the checkpoint of (the same name and training
    iterations as its manifest), or None."""
    manifest = _manifest(path.stem)
    if manifest and manifest.get("training", {}).get("iterations") == record.get("iterations"):
        return path.stem
    return None


def extended_low(path: Path, record: dict) -> int:
    """The levels the start's export added below its trained ones: written in weights this
    loop exported, else the shipped model's, else none."""
    if "extend_low" in record:
        return int(record["extend_low"])
    name = shipped_name(path, record)
    if name is None:
        return 0
    return int(_manifest(name)["rate"].get("extended_low", 0))


def _manifest(name: str) -> dict | None:
    path = runtime_models.MODELS_DIR / name / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None
