"""Write a trained MNIST codec as a `factorized` model folder (docs/model-format.md)."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from .models import DESCRIPTIONS, AnalysisGraph, MnistCodec, SynthesisGraph

TAIL_MASS = 1e-9  # mass left out at each end of a table (goes to the escape)
MAX_LEN = 1024


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_sha256(files: dict[str, str]) -> str:
    text = "".join(f"{name}\0{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def integer_tables(model: MnistCodec, radius: int = 400) -> dict[str, np.ndarray]:
    """Each channel's probabilities at the integers that hold all but ~2*TAIL_MASS of its mass."""
    pmf = model.density.integer_pmf(radius)  # [M, 2r+1] float64
    m = pmf.shape[0]
    rows, lens, offs = [], [], []
    for c in range(m):
        p = pmf[c]
        cdf = np.cumsum(p)
        total = cdf[-1]
        lo = int(np.searchsorted(cdf, TAIL_MASS))
        hi = int(np.searchsorted(cdf, total - TAIL_MASS))
        hi = max(hi, lo)
        if hi - lo + 1 > MAX_LEN:  # keep the mode's neighbourhood
            mid = int(np.argmax(p))
            lo, hi = max(0, mid - MAX_LEN // 2), min(len(p) - 1, mid - MAX_LEN // 2 + MAX_LEN - 1)
        rows.append(p[lo : hi + 1])
        lens.append(hi - lo + 1)
        offs.append(lo - radius)
    width = max(lens)
    table = np.zeros((m, width), np.float64)
    for c, r in enumerate(rows):
        table[c, : len(r)] = r
    g, ig = model.gains()
    return {
        "gain": g.detach().numpy().astype(np.float32),
        "inv_gain": ig.detach().numpy().astype(np.float32),
        "y_pmf": table,
        "y_len": np.array(lens, np.int32),
        "y_offset": np.array(offs, np.int32),
    }


def _export_graph(module: torch.nn.Module, arg: torch.Tensor, in_name: str, out_name: str,
                  path: Path, dynamic_batch: bool = False) -> None:
    """`dynamic_batch`: the first dimension is free (the encoder's latent search runs many
    candidate latents through the synthesis in one call)."""
    module.eval()
    shapes = {in_name: {0: torch.export.Dim("batch", min=1, max=1 << 16)}} if dynamic_batch \
        else None
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "g.onnx"
        torch.onnx.export(module, (arg,), str(tmp_path), dynamo=True, external_data=False,
                          input_names=[in_name], output_names=[out_name], verbose=False,
                          dynamic_shapes=shapes)
        data = tmp_path.read_bytes()
    path.write_bytes(data)


def parity(folder: Path, model: MnistCodec, x: torch.Tensor) -> dict[str, float]:
    """Max abs difference torch vs onnxruntime for analysis and synthesis on real digits."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    a = ort.InferenceSession(str(folder / "analysis.onnx"), opts,
                             providers=["CPUExecutionProvider"])
    s = ort.InferenceSession(str(folder / "synthesis.onnx"), opts,
                             providers=["CPUExecutionProvider"])
    da = ds = 0.0
    with torch.no_grad():
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            y_t = AnalysisGraph(model)(xi).numpy()
            y_o = a.run(["y"], {"x": xi.numpy()})[0]
            da = max(da, float(np.abs(y_t - y_o).max()))
            yh = np.round(y_t * 2) / 2
            x_t = SynthesisGraph(model)(torch.from_numpy(yh)).numpy()
            x_o = s.run(["x_hat"], {"y_hat": yh.astype(np.float32)})[0]
            ds = max(ds, float(np.abs(x_t - x_o).max()))
    return {"analysis_max_abs": da, "synthesis_max_abs": ds}


def export_model(model: MnistCodec, folder: str | Path, name: str | None = None,
                 record: dict | None = None, results: dict | None = None,
                 check: torch.Tensor | None = None, version: str = "1.0.0") -> dict:
    """Write manifest.json, analysis.onnx, synthesis.onnx and tables.npz; returns the manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    name = name or f"mnist-{model.kind}"
    x0 = torch.zeros(1, 1, 28, 28)
    y0 = torch.zeros(1, model.M, 1, 1)
    _export_graph(AnalysisGraph(model), x0, "x", "y", folder / "analysis.onnx")
    _export_graph(SynthesisGraph(model), y0, "y_hat", "x_hat", folder / "synthesis.onnx",
                  dynamic_batch=True)
    tables = integer_tables(model)
    buf = io.BytesIO()
    np.savez(buf, **tables)
    (folder / "tables.npz").write_bytes(buf.getvalue())
    files = {f: _sha256(folder / f) for f in ("analysis.onnx", "synthesis.onnx", "tables.npz")}
    digest = folder_sha256(files)
    record = dict(record or {})
    if check is not None:
        record["onnx_parity"] = parity(folder, model, check)
    lambdas = record.get("lambdas")
    ev = record.get("eval_test2000") or []
    bpp = [round(e["bits"] / 784, 4) for e in ev]
    manifest = {
        "format": 1,
        "name": name,
        "version": version,
        "family": "factorized",
        "description": f"MNIST 28x28 digits: {DESCRIPTIONS[model.kind]}",
        "image": {"channels": 1, "pad_multiple": 1, "fixed_size": [28, 28]},
        "latent": {"channels": model.M, "stride": 28},
        "rate": {"levels": model.K, "lambdas": lambdas,
                 "bpp_range": [min(bpp), max(bpp)] if bpp else None},
        "files": files,
        "sha256": digest,
        "id": digest[:8],
        "training": record,
        "results": results or {},
    }
    if model.kind == "vae":
        manifest["sampling"] = "synthesis(y_hat = z), z ~ N(0, I) [1,M,1,1] (aecodec mnist sample)"
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if check is not None:  # the real stream sizes (header included) through the runtime
        import aecodec

        codec = aecodec.Codec(str(folder), threads=1)
        digits = np.clip(np.rint(check[:, 0].numpy() * 255), 0, 255).astype(np.uint8)
        sizes = [np.mean([len(codec.compress(d, q)) for d in digits]) for q in (1, 100)]
        manifest["rate"]["bpp_range"] = [round(float(b) * 8 / 784, 4) for b in sizes]
        manifest["rate"]["bpp_note"] = "whole streams (header included) of MNIST test digits"
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def update_results(folder: str | Path, results: dict) -> None:
    """Replace the manifest's free-form results (does not change the files, sha256 or id)."""
    p = Path(folder) / "manifest.json"
    m = json.loads(p.read_text())
    m["results"] = results
    p.write_text(json.dumps(m, indent=1) + "\n")
