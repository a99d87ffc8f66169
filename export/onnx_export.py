"""Export a trained model to the folder the runtime reads (docs/model-format.md).

One ONNX file per graph (no external data), the entropy tables, the exact integer hyper-decoder
and a manifest with the training record. Each graph is checked against torch on a real image
before the folder is written.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from .data import load_images
from .entropy import gaussian_tables
from .folder import write_model_folder
from .int_analysis import equalize, quantize_analysis
from .int_onnx import build_graph
from .int_reference import IntReference
from .int_synthesis import IntSynthesis
from .intnet import MEAN_BITS
from .models import Codec, Hyperprior, load_weights


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The exporter's own chatter off: its `[torch.onnx]` progress lines, the registry's
    "torchvision is not installed" log lines and the deprecation warnings of the libraries
    it drives. None of it is about the model; the parity checks below are."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", module=r"(torch|onnx|onnxscript|onnx_ir)\b")
            yield
    finally:
        logger.setLevel(level)


def _export_graph(body: nn.Module, arg: str, out_name: str, example: torch.Tensor, path: Path,
                  fp16: bool) -> None:
    h, w = torch.export.Dim("h", min=1), torch.export.Dim("w", min=1)
    with quiet():
        torch.onnx.export(
            body.eval(), (example,), str(path), dynamo=True, external_data=False,
            input_names=[arg], output_names=[out_name], verbose=False,
            dynamic_shapes=({2: h, 3: w},),  # positional: the graph input named freely
        )
    finalize(path, fp16)
    # Parity with torch on the example (a real image, or its latents).
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {arg: example.numpy()})[0]
    with torch.no_grad():
        ref = body(example).numpy()
    err = float(np.max(np.abs(got - ref)) / (np.max(np.abs(ref)) + 1e-12))
    if err > (2e-3 if fp16 else 1e-4):
        raise RuntimeError(f"{path.name}: ONNX differs from torch (relative error {err:.2e})")


def finalize(path: Path, fp16: bool) -> None:
    """Drop the exporter's per-node metadata (source paths, object ids) so the same weights
    always give the same bytes, and so the same model id; optionally store weights as fp16."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for info in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        del info.metadata_props[:]
    del model.metadata_props[:]
    if fp16:
        _weights_to_fp16(model.graph)
    onnx.save(model, str(path))


def _weights_to_fp16(g: onnx.GraphProto) -> None:
    """Store large float32 initializers as float16 with a Cast back: half the bytes, same math."""
    casts = []
    for init in list(g.initializer):
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < 4096:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), name + "_fp16"))
        casts.append(onnx.helper.make_node("Cast", [name + "_fp16"], [name], to=1))
    for i, node in enumerate(casts):
        g.node.insert(i, node)


def _image_example(eval_dir: Path | None, size: int = 256) -> torch.Tensor:
    from PIL import Image

    files = sorted(eval_dir.glob("*.png")) if eval_dir else []
    if files:
        a = np.asarray(Image.open(files[0]).convert("RGB"))[:size, :size]
    else:
        a = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255


def _table_arrays(prefix: str, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_pmf": t["pmf"].astype(np.float64),
        f"{prefix}_len": t["len"].astype(np.int32),
        f"{prefix}_offset": t["offset"].astype(np.int32),
    }


def export_model(weights: Path, folder: Path, name: str, eval_dir: Path | None = None,
                 version: str = "1.0.0", fp16: bool = True, description: str = "",
                 extend_low: int = 0, calib: Path | None = None) -> Path:
    """Write the model folder for `weights` at `folder` (replaced atomically).

    `extend_low` prepends that many rate levels below the lowest trained one, continuing the
    gains log-linearly: measured on Kodak, the hyperprior's curve stays smooth two levels down
    (0.32 -> 0.13 bpp on a Kodak subset), which stretches quality 1 towards 0.1 bpp.

    A weights file with an 8-bit synthesis (the `int8` task, export/tasks/int8.py) exports
    it in place of the float one: exact pixels on every runtime (docs/model-format.md).

    `calib` (training images, never the evaluation set) makes the analysis 8-bit, calibrated
    on them (`int_analysis`): faster encoding; decoding is unaffected.
    """
    model, state = load_weights(weights)
    model.eval()
    net, int_record = _load_int_synthesis(model, state.get("int_synthesis"))
    model.freeze()
    cfg = model.cfg

    def build(tmp: Path) -> dict:
        x = _image_example(eval_dir)
        with torch.no_grad():
            y = model.g_a(x)
        if calib is None:
            _export_graph(model.g_a, "x", "y", x, tmp / "analysis.onnx", fp16)
        else:
            _export_int_analysis(model.g_a, x, calib, tmp)
        if net is None:
            _export_graph(model.g_s, "y_hat", "x_hat", torch.round(y * 4) / 4,
                          tmp / "synthesis.onnx", fp16)
        else:
            export_int_graph(net, torch.round(y * 4) / 4, tmp / "synthesis.onnx")
        log_gain, log_inv = _extend_low(model.gains.log_gain.detach(),
                                        model.gains.log_inv_gain.detach(), extend_low)
        gain = torch.exp(log_gain).numpy().astype(np.float32)
        inv_gain = torch.exp(log_inv).numpy().astype(np.float32)
        lambdas = _extend_lambdas(cfg.lambdas, extend_low)
        tables = {"gain": gain, "inv_gain": inv_gain}
        if isinstance(model, Hyperprior):
            export_hyper_analysis(model.h_a, y * torch.from_numpy(gain[-1])[None, :, None, None],
                                  tmp / "hyper_analysis.onnx", fp16)
            np.savez_compressed(tmp / "hyper_synthesis.npz", **model.h_s.to_numpy())
            tables |= _table_arrays("z", model.bottleneck.tables())
            tables |= _table_arrays("y", gaussian_tables())
        else:
            tables |= _table_arrays("y", model.bottleneck.tables())
        np.savez_compressed(tmp / "tables.npz", **tables)
        return {
            "name": name,
            "version": version,
            "family": cfg.family,
            "description": description or _describe(model, net is not None, calib is not None),
            "image": {"channels": 3, "pad_multiple": 64, "fixed_size": None},
            "latent": {"channels": cfg.m, "stride": 16, "hyper_channels": cfg.nz,
                       "hyper_stride": 64},
            "rate": {"levels": len(lambdas), "lambdas": lambdas, "extended_low": extend_low},
            "mean_bits": MEAN_BITS,
            "architecture": cfg.to_dict() | {"analysis": "float" if calib is None else "int8",
                                             "synthesis": "float" if net is None else "int8"},
            "training": _training_record(state) | (
                {"int_synthesis": int_record} if int_record else {}),
            "results": {},
            "exported": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }

    write_model_folder(folder, build)
    return folder


def _load_int_synthesis(model: Codec, state: dict | None) -> tuple[IntSynthesis | None, dict]:
    """The fine-tuned 8-bit synthesis over `model` (it shares the float layers), or None."""
    if state is None:
        return None, {}
    n, m = model.cfg.n, model.cfg.m
    net = IntSynthesis(model.g_s, [torch.ones(m)] + [torch.ones(n)] * 3, [torch.ones(n)] * 3)
    net.load_state_dict({k: v.float() for k, v in state["net"].items()})
    return net, state["record"]


def export_int_graph(net: IntSynthesis, y_hat: torch.Tensor, path: Path) -> None:
    """Write the 8-bit graph; its pixels must equal the independent torch reference's."""
    data = build_graph(net).SerializeToString()
    path.write_bytes(data)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"y_hat": y_hat.numpy()})[0]
    if not np.array_equal(got, IntReference(data)(y_hat.numpy())):
        raise RuntimeError(f"{path.name}: ONNX Runtime and the reference disagree")


def _export_int_analysis(g_a: nn.Module, x: torch.Tensor, calib: Path, tmp: Path) -> None:
    """The analysis quantized to 8 bits, calibrated on every 20th image of `calib`."""
    export_analysis(g_a, x, [a for _, a in load_images(calib, 256)][::20], tmp / "analysis.onnx")


def export_hyper_analysis(h_a: nn.Module, y: torch.Tensor, path: Path, fp16: bool = True) -> None:
    """The hyper-analysis graph (`y` gained latents of an example), checked against torch."""
    _export_graph(h_a, "y", "z", y, path, fp16)


def export_analysis(g_a: nn.Module, x: torch.Tensor, images: list[np.ndarray],
                    path: Path) -> None:
    """The analysis quantized to 8 bits, calibrated on `images` (training images, never the
    evaluation set); checked against torch within quantization error (relative RMS error of
    the latents under 10 %)."""
    f32 = path.with_name(path.stem + "_f32.onnx")
    _export_graph(equalize(g_a, images), "x", "y", x, f32, fp16=False)
    quantize_analysis(f32, path, images)
    f32.unlink()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ref = g_a(x).numpy()
    err = float(np.sqrt(np.mean((got - ref) ** 2) / (np.mean(ref**2) + 1e-12)))
    if err > 0.1:
        raise RuntimeError(f"8-bit analysis differs from torch (relative RMS error {err:.2e})")


def _extend_low(log_gain: torch.Tensor, log_inv: torch.Tensor,
                n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend n levels that continue the two lowest levels' log-linear step."""
    if n == 0:
        return log_gain, log_inv
    steps = torch.arange(n, 0, -1, dtype=log_gain.dtype)[:, None]
    low = log_gain[0] - steps * (log_gain[1] - log_gain[0])
    low_inv = log_inv[0] - steps * (log_inv[1] - log_inv[0])
    return torch.cat([low, log_gain]), torch.cat([low_inv, log_inv])


def _extend_lambdas(lambdas: tuple[float, ...], n: int) -> list[float]:
    if n == 0:
        return list(lambdas)
    ratio = lambdas[1] / lambdas[0]
    return [lambdas[0] / ratio**k for k in range(n, 0, -1)] + list(lambdas)


def _describe(model: Codec, int_synthesis: bool = False, int_analysis: bool = False) -> str:
    c = model.cfg
    kind = {"hyperprior": "Mean-scale hyperprior (Minnen 2018) with an integer hyper-decoder",
            "factorized": "Factorized prior (Ballé 2018)"}[c.family]
    extra = (", exact 8-bit synthesis" if int_synthesis else "") + (
        ", 8-bit analysis" if int_analysis else "")
    return (f"{kind}, GDN, N={c.n} M={c.m}, {c.upsample} decoder{extra}, "
            f"{len(c.lambdas)} gain levels")


def _training_record(state: dict) -> dict:
    rec = state.get("record", {})
    return {
        "iterations": rec.get("iterations"),
        "runs": rec.get("runs", []),
        "validation_estimate": rec.get("validation"),
        "loss": "lambda * 255^2 * MSE + bpp, lambda per image from the level's lambda",
        "data": "BSDS500 + photos (shared/data/train); Kodak never used for training",
    }
