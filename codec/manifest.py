"""A model folder's manifest.json rewritten in place: the fields outside the hash (results, the
measured bpp range), atomically.

In the runtime because both sides write results into manifests: the exporters
(aecodec.export) and the benches (aecodec.bench), which may not import each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def dump(manifest: dict[str, Any]) -> str:
    """The one layout of manifest.json (the exporters write it, the updates keep it)."""
    return json.dumps(manifest, indent=1) + "\n"


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
    tmp.write_text(dump(manifest))
    tmp.replace(path)
    return manifest
