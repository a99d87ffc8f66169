"""Export a context model as a model folder of the `context` family.

The folder is the base hyperprior's files unchanged (the same transforms, hyper networks,
tables and gains) plus `context.npz`, the exact integer context networks. Its id differs from
the base model's, so streams of the two never mix: the base model keeps decoding its own.

aecodec train context-export runs/ctx/context.pt codec/models/hyperprior-ctx \
    --base codec/models/hyperprior --name hyperprior-ctx
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import numpy as np
import torch

from .eval_context import load_context
from .folder import write_model_folder


def export_context_model(ckpt: Path, folder: Path, base: Path, name: str,
                         version: str = "1.0.0", record: dict | None = None,
                         scale_only: bool = False) -> Path:
    """`scale_only`: ship only the scale-index refinements (the mean ones zeroed), so y_hat and
    the pixels are exactly the base model's and the context changes the rate alone."""
    model = load_context(ckpt, scale_only)
    st = torch.load(ckpt, weights_only=False, map_location="cpu")
    base_manifest = json.loads((base / "manifest.json").read_text())
    cfg = model.cfg
    kind = {(1, 2): "checkerboard", (cfg.slices, 1): f"{cfg.slices} channel slices"}.get(
        (cfg.slices, cfg.phases), f"{cfg.slices} channel slices x checkerboard")

    def build(tmp: Path) -> dict:
        for f in base_manifest["files"]:
            shutil.copy2(base / f, tmp / f)
        np.savez(tmp / "context.npz", **model.to_numpy())
        manifest = {k: v for k, v in base_manifest.items()
                    if k not in ("format", "results", "default", "files", "sha256", "id")}
        training = dict(base_manifest.get("training", {}))
        training["context"] = {
            "crops": int(st.get("seen", 0)),
            "hardware": f"{platform.processor() or platform.machine()} (CPU)",
            "data": "latents of ../shared/data/train (bsds500 + photos, 1024 px), frozen "
                    "transforms",
            **(record or {}),
        }
        return manifest | {
            "name": name,
            "version": version,
            "family": "context",
            "description": f"{base_manifest['name']} {base_manifest['version']} with a "
                           f"parallel context entropy model ({kind}, exact integer networks)",
            "context": {**cfg.to_dict(), "refines": "scale" if scale_only else "mean and scale",
                        "base": f"{base_manifest['name']} {base_manifest['version']} "
                                f"({base_manifest['id']})"},
            "training": training,
        }

    write_model_folder(folder, build)
    return folder
