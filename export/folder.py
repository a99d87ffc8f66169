"""The one writer of model folders (docs/model-format.md), for photo and MNIST exporters alike.

A folder is built in a temporary sibling and renamed into place, so a reader never sees half a
model; its files are hashed with the runtime's own helpers, so export and loading cannot
disagree about a model's id. Results live in the manifest outside the hash and are updated
atomically.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aecodec.model import file_sha256, folder_sha256

FORMAT = 1  # model folder format


def _dump(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=1) + "\n"


def write_model_folder(folder: Path, build: Callable[[Path], dict[str, Any]],
                       shared: dict[str, str] | None = None) -> dict[str, Any]:
    """`build(tmp)` writes the data files into `tmp` and returns the manifest's other fields;
    the files' SHA-256s, the folder hash and the id are added here, and the folder replaces
    any old one at `folder` in one rename. `shared` lists files (name: SHA-256) the folder
    does not hold but reads through `shares_files_with`; they count in the hash and id like
    its own. Returns the manifest."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    tmp.chmod(0o755)
    try:
        manifest = {"format": FORMAT, **build(tmp)}
        files = dict(sorted(((shared or {}) | {p.name: file_sha256(p)
                                                for p in tmp.iterdir()}).items()))
        digest = folder_sha256(files)
        manifest |= {"files": files, "sha256": digest, "id": digest[:8]}
        (tmp / "manifest.json").write_text(_dump(manifest))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.replace(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


def update_manifest(folder: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply `change` to a folder's manifest.json atomically (fields outside the hash only:
    results, measured bpp range)."""
    path = Path(folder) / "manifest.json"
    manifest = json.loads(path.read_text())
    before = {k: manifest.get(k) for k in ("files", "sha256", "id")}
    change(manifest)
    if {k: manifest.get(k) for k in before} != before:
        raise ValueError("update_manifest may not change the files, sha256 or id")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(_dump(manifest))
    tmp.replace(path)
    return manifest
