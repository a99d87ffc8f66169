"""`aecodec web-export`: what the browser decoder (web/) needs from a model folder.

The browser runs the same integer steps as `aecodec.decompress`, so it needs the same data in
a form it can read without numpy: the entropy tables as the integer CDFs constriction builds
from them (`Categorical(probs, perfect=False)`: its fast quantization, reproduced here in
float64 operations in the same order), the gains, the shipped tables' legacy inverse-gain
deltas, the integer hyper-decoder's arrays, and the synthesis graph as it is. Written as
`OUT/<id>/model.json` + `arrays.bin` + `synthesis.onnx`, and `OUT/index.json` (id -> folder),
merged with what OUT already holds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from . import legacy_gains
from .entropy import _HEAD_MODEL, _HEAD_PROBS, TableSet
from .fast_synthesis import rewrite as rewrite_synthesis
from .model import Model

PRECISION = 24  # constriction's DefaultContiguousCategoricalEntropyModel
FORMAT = 1
FAMILIES = ("hyperprior", "context", "factorized")  # what web/src/decoder.js decodes


def constriction_cdf(probs: np.ndarray) -> list[int]:
    """The left cumulatives (and 2^24 at the end) of constriction's fast quantization: each
    symbol gets floor(cumulative * (2^24 - n) / sum) + its index (sum and cumulative summed
    left to right in float64, as its Rust iterators do)."""
    p = [float(x) for x in np.asarray(probs, np.float64)]
    n = len(p)
    norm = 0.0
    for x in p:
        norm += x
    scale = float((1 << PRECISION) - n) / norm
    cdf, cum = [], 0.0
    for i, x in enumerate(p):
        cdf.append(int(cum * scale) + i)
        cum += x
    cdf.append(1 << PRECISION)
    return cdf


def conv_integer_graph(w: np.ndarray) -> bytes:
    """One hyper-decoder layer's integer sums as an ONNX ConvInteger: x uint8 [1, C, H, W]
    with its zero point (an input: 0 or 128), the weights as uint8 with zero point 128
    (uint8 x uint8: no kernel pairs products in saturating 16 bits), 'same' padding with the
    zero point; exact int32 sums, as codec/intnet.py's MatMulInteger."""
    from .onnx_wire import Graph, Node, write_model

    k = int(w.shape[-1])
    p = k // 2
    wt = (np.asarray(w).astype(np.int16) + 128).astype(np.uint8)
    g = Graph([Node("ConvInteger", ["x", "w", "x_zp", "w_zp"], ["y"],
                    {"pads": [p, p, p, p], "kernel_shape": [k, k]})],
              {"w": wt, "w_zp": np.uint8(128)}, ["x", "x_zp"], ["y"])
    return write_model(g, {"x": (np.uint8, 4), "x_zp": (np.uint8, 0)}, {"y": (np.int32, 4)})


class _Arrays:
    """Typed arrays laid end to end in one file; JSON refers to them by name."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.index: dict[str, dict] = {}
        self.size = 0

    def add(self, name: str, a: np.ndarray, dtype: str) -> str:
        a = np.ascontiguousarray(np.asarray(a).astype(dtype))
        pad = -self.size % 8
        self.parts.append(b"\0" * pad)
        self.size += pad
        self.index[name] = {"dtype": dtype, "offset": self.size, "length": int(a.size),
                            "shape": list(a.shape)}
        data = a.astype(a.dtype.newbyteorder("<")).tobytes()
        self.parts.append(data)
        self.size += len(data)
        return name


def _table_set(arrays: _Arrays, name: str, ts: TableSet, compact: bool = False) -> dict:
    cdfs = [constriction_cdf(p) for p in ts._probs]
    if compact:  # the compact profile's byte coder: its own integer frequencies
        freqs = [ts._int_model(i).freqs for i in range(len(ts))]
        arrays.add(f"{name}_freq", np.concatenate(freqs), "uint32")
    starts = np.cumsum([0] + [len(c) for c in cdfs])
    arrays.add(f"{name}_cdf", np.concatenate(cdfs), "uint32")
    arrays.add(f"{name}_cdf_start", starts, "int32")
    arrays.add(f"{name}_len", ts.lengths, "int32")
    arrays.add(f"{name}_offset", ts.offsets, "int32")
    return {"count": len(ts), "min_bits": [float(b) for b in ts.min_bits]}


def note_unsupported(info, out: Path) -> None:
    """Name a model the browser decoder does not decode in `out/index.json`, so that its
    streams are refused naming it rather than as an unknown id."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index_file = out / "index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    index[info.id] = {"name": info.name, "family": info.family,
                      "unsupported": f"the {info.family} family is not decoded in the browser"}
    index_file.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


def _int_type(w: np.ndarray) -> str:
    """int8 for integer weights that fit it (a quarter of the download), else int32."""
    w = np.asarray(w)
    return "int8" if w.size and w.min() >= -128 and w.max() <= 127 else "int32"


def _context(arrays: _Arrays, net: dict) -> dict:
    """The context family's step networks (codec/ctxnet.py): per step (slice, phase) but the
    first, three integer layers."""
    slices, phases = int(net["slices"]), int(net["phases"])
    steps = {}
    for s in range(slices):
        for p in range(phases):
            key = f"{s}_{p}"
            if (s, p) == (0, 0):
                continue
            layers = []
            for i in range(3):
                k = f"{key}.{i}"
                o = len(net[f"{k}.b"])
                layer = {"shift": int(net[f"{k}.shift"])}
                for name in ("b", "m", "lo", "hi"):
                    layer[name] = arrays.add(f"{k}.{name}", np.broadcast_to(
                        np.asarray(net[f"{k}.{name}"], np.float64).reshape(-1), (o,)), "float64")
                if f"{k}.w" in net:
                    layer["w"] = arrays.add(f"{k}.w", net[f"{k}.w"], _int_type(net[f"{k}.w"]))
                if f"{k}.wh" in net:
                    layer["wh"] = arrays.add(f"{k}.wh", net[f"{k}.wh"], _int_type(net[f"{k}.wh"]))
                layers.append(layer)
            steps[key] = layers
    return {"slices": slices, "phases": phases, "ctx_limit": int(net["ctx_limit"]),
            "steps": steps}


def export(model: Model, out: Path) -> Path:
    """Write `out/<id>/` for one model and add it to `out/index.json`; returns the folder."""
    from .container import compact_index

    family = model.family
    if family not in FAMILIES:
        raise ValueError(f"the browser decoder does not decode the {family} family "
                         f"(model '{model.name}'): only {', '.join(FAMILIES)}")
    out = Path(out)
    folder = out / model.id
    tmp = out / f".{model.id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    arrays = _Arrays()
    latent = model.latent
    meta: dict = {
        "format": FORMAT, "id": model.id, "name": model.name, "family": family,
        "version": model.info.manifest.get("version"),
        "channels": model.info.channels,
        "fixed_size": list(model.info.fixed_size) if model.info.fixed_size else None,
        "pad_multiple": model.info.pad_multiple, "stride": model.stride,
        "synthesis_halo": model.synthesis_halo,
        "synthesis_output": model.synthesis.get_outputs()[0].name,
        "synthesis_int8": model.info.manifest.get("architecture", {}).get("synthesis") == "int8",
        "compact_index": compact_index(model.id),
        "inv_gain": [[float(v) for v in row] for row in model.inv_gain],
        "head_cdf": constriction_cdf(_HEAD_PROBS / _HEAD_PROBS.sum()),
    }
    legacy = legacy_gains.deltas(model.inv_gain) if len(model.inv_gain) > 1 else None
    meta["legacy"] = arrays.add("legacy", legacy, "int8") if legacy is not None else None
    if family in ("hyperprior", "context"):
        meta["tables"] = {"z": _table_set(arrays, "z", latent.z.tables),
                          "y": _table_set(arrays, "y", latent.y.tables)}
        net = latent.hyper.net
        layers = []
        i = 0
        while f"w{i}" in net:
            w = np.asarray(net[f"w{i}"])
            if not np.array_equal(w, np.rint(w)) or np.abs(w).max() >= 2**31:
                raise ValueError("hyper-decoder weights must be integers")
            (tmp / f"hyper{i}.onnx").write_bytes(conv_integer_graph(w))
            layers.append({
                "graph": f"hyper{i}.onnx",
                "row_sum": float(np.abs(w).reshape(len(w), -1).sum(1).max())
                if w.min() >= -128 and w.max() <= 127 else None,
                "w": arrays.add(f"w{i}", w, _int_type(w)),
                "b": arrays.add(f"b{i}", np.asarray(net[f"b{i}"]).reshape(-1), "float64"),
                "m": arrays.add(f"m{i}", np.asarray(net[f"m{i}"]).reshape(-1), "float64"),
                "lo": arrays.add(f"lo{i}", np.broadcast_to(
                    np.asarray(net[f"lo{i}"], np.float64).reshape(-1), (len(w),)), "float64"),
                "hi": arrays.add(f"hi{i}", np.broadcast_to(
                    np.asarray(net[f"hi{i}"], np.float64).reshape(-1), (len(w),)), "float64"),
                "shift": int(net[f"shift{i}"]), "ps": int(net[f"ps{i}"])})
            i += 1
        meta["intnet"] = layers
        meta["z_factor"] = model.z_factor
        meta["mean_bits"] = model.mean_bits
        meta["hyper_halo"] = latent.hyper.halo
    if family == "context":
        meta["context"] = _context(arrays, latent.y.net)
    if family == "factorized":
        compact = compact_index(model.id) is not None
        meta["tables"] = {"y": _table_set(arrays, "y", latent.y.tables, compact)}
        if compact:
            meta["head_freq"] = list(_HEAD_MODEL.freqs)
    meta["arrays"] = arrays.index
    (tmp / "arrays.bin").write_bytes(b"".join(arrays.parts))
    (tmp / "model.json").write_text(json.dumps(meta, separators=(",", ":")))
    # the 8-bit synthesis as codec/fast_synthesis.py rebuilds it (the same integers, cheaper
    # operators; u8 x u8 sums, exact on every kernel), else the file as it is
    blob = model.blob("synthesis.onnx")
    fast = rewrite_synthesis(blob, signed_gamma=False)
    (tmp / "synthesis.onnx").write_bytes(fast if fast is not None else blob)
    meta["synthesis_rewritten"] = fast is not None
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    index_file = out / "index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    index[model.id] = {"name": model.name, "folder": model.id, "family": family,
                       "compact_index": meta["compact_index"]}
    index_file.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return folder
