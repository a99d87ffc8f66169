"""The one writer of model folders (docs/model-format.md), for photo and MNIST exporters alike.

A folder is built in a temporary sibling and renamed into place, so a reader never sees half a
model; its files are hashed with the runtime's own helpers, so export and loading cannot
disagree about a model's id. Results live in the manifest outside the hash and are updated
atomically (`aecodec.manifest`, which the benches use too).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aecodec.manifest import dump as _dump
from aecodec.manifest import update_manifest  # noqa: F401  (the exporters' name for it)
from aecodec.model import file_sha256, folder_sha256

FORMAT = 1  # model folder format


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
