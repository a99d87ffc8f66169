"""Write a trained MNIST codec as a `factorized` model folder (docs/model-format.md)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ..folder import update_manifest, write_model_folder
from ..onnx_export import finalize
from .models import AnalysisGraph, MnistCodec, SynthesisGraph, describe

TAIL_MASS = 1e-9  # mass left out at each end of a table (goes to the escape)
MAX_LEN = 1024


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
    """Export at the fixed digit size, with the exporter's metadata stripped: the same weights
    always give the same bytes, so the same model id. `dynamic_batch`: the first dimension is
    free (the encoder's latent search runs many candidate latents through the synthesis in one
    call)."""
    module.eval()
    shapes = {in_name: {0: torch.export.Dim("batch", min=1, max=1 << 16)}} if dynamic_batch \
        else None
    torch.onnx.export(module, (arg,), str(path), dynamo=True, external_data=False,
                      input_names=[in_name], output_names=[out_name], verbose=False,
                      dynamic_shapes=shapes)
    finalize(path, fp16=False)


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
    model = model.float().eval()
    name = name or f"mnist-{model.kind}"
    record = dict(record or {})

    def build(tmp: Path) -> dict:
        x0 = torch.zeros(1, 1, 28, 28)
        y0 = torch.zeros(1, model.M, 1, 1)
        _export_graph(AnalysisGraph(model), x0, "x", "y", tmp / "analysis.onnx")
        _export_graph(SynthesisGraph(model), y0, "y_hat", "x_hat", tmp / "synthesis.onnx",
                      dynamic_batch=True)
        buf = io.BytesIO()
        np.savez(buf, **integer_tables(model))
        (tmp / "tables.npz").write_bytes(buf.getvalue())
        if check is not None:
            record["onnx_parity"] = parity(tmp, model, check)
        ev = record.get("eval_test2000") or []
        bpp = [round(e["bits"] / 784, 4) for e in ev]
        return {
            "name": name,
            "version": version,
            "family": "factorized",
            "description": f"MNIST 28x28 digits: {describe(model)}",
            "image": {"channels": 1, "pad_multiple": 1, "fixed_size": [28, 28]},
            "latent": {"channels": model.M, "stride": 28},
            "rate": {"levels": model.K, "lambdas": record.get("lambdas"),
                     "bpp_range": [min(bpp), max(bpp)] if bpp else None},
            "training": record,
            "results": results or {},
        } | ({"sampling": "synthesis(y_hat = z), z ~ N(0, I) [1,M,1,1] (aecodec mnist sample)"}
             if model.kind == "vae" else {})

    folder = Path(folder)
    manifest = write_model_folder(folder, build)
    if check is not None:  # the real stream sizes (header included) through the runtime
        import aecodec

        codec = aecodec.Codec(str(folder), threads=1)
        digits = np.clip(np.rint(check[:, 0].numpy() * 255), 0, 255).astype(np.uint8)
        sizes = [np.mean([len(codec.compress(d, q)) for d in digits]) for q in (1, 100)]

        def change(m: dict) -> None:
            m["rate"]["bpp_range"] = [round(float(b) * 8 / 784, 4) for b in sizes]
            m["rate"]["bpp_note"] = "whole streams (header included) of MNIST test digits"

        manifest = update_manifest(folder, change)
    return manifest
