"""8-bit analysis transform: ONNX Runtime's static quantization of its convolutions.

Why: encoding time is mostly the analysis convolutions, and 8-bit QLinearConv runs several
times faster than float32 Conv on CPUs with VNNI. Unlike the synthesis, the analysis needs no
exactness (only the encoder runs it; the stream fixes what every decoder sees), so ORT's own
quantizer does: convolutions with per-channel int8 weights and uint8 activations calibrated on
training images (never the evaluation set), GDN left in float32.

ORT's QLinearConv takes one activation scale per tensor, while the analysis's channels span
very different ranges; `equalize` first rescales every channel to a range of about 1, folding
the scales into the GDN parameters and the next convolution's weights (the same function).
Only the second convolution (128 -> 128 at half resolution, 60 % of the multiply-adds) goes to
8 bits: measured on Kodak, quantizing all strided convolutions but the last cost 0.7 % BD-rate
against 0.26 % for this one alone, for little more speed (docs/training.md).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)


class _Images(CalibrationDataReader):
    def __init__(self, images: list[np.ndarray], size: int) -> None:
        self.feeds = iter(
            {"x": np.ascontiguousarray(
                a[:size, :size].transpose(2, 0, 1)[None].astype(np.float32) / 255)}
            for a in images)

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


@torch.no_grad()
def equalize(g_a: torch.nn.Sequential, images: list[np.ndarray], size: int = 512):
    """A copy of the frozen analysis (conv, GDN, conv, GDN, conv, GDN, conv) computing the
    same function with every conv and GDN output channel scaled to max |value| = 1."""
    g = copy.deepcopy(g_a)
    xs = [torch.from_numpy(np.ascontiguousarray(a[:size, :size].transpose(2, 0, 1)))[None]
          .float() / 255 for a in images]

    def peak(upto: int) -> torch.Tensor:
        return torch.stack([g[:upto](x).abs().amax(dim=(0, 2, 3)) for x in xs]).amax(0)

    for k in (0, 2, 4):
        conv, gdn, nxt = g[k], g[k + 1], g[k + 2]
        a = peak(k + 1).clamp_min(1e-6)  # conv output x = a x'
        conv.weight /= a[:, None, None, None]
        conv.bias /= a
        beta, gamma = gdn.frozen
        gamma = gamma * (a**2)[None, :, None, None] / (a**2)[:, None, None, None]
        beta = beta / a**2
        gdn.frozen = (beta, gamma)
        b = peak(k + 2).clamp_min(1e-6)  # GDN output y = b y'
        gdn.frozen = (beta * b**2, gamma * (b**2)[:, None, None, None])
        nxt.weight *= b[None, :, None, None]
    return g


def quantize_analysis(float_graph: Path, out: Path, images: list[np.ndarray],
                      size: int = 512) -> None:
    """Write `out`: the float32 analysis graph `float_graph` (of an equalized analysis) with
    its second strided convolution in 8 bits."""
    graph = onnx.load(str(float_graph)).graph
    kernel = {t.name: t.dims[2] for t in graph.initializer if len(t.dims) == 4}
    # the strided 5x5 convolutions, not the GDN normalisers' 1x1 ones (sums of squares)
    convs = [n.name for n in graph.node if n.op_type == "Conv" and kernel.get(n.input[1], 1) > 1]
    with tempfile.TemporaryDirectory() as tmp:  # the quantizer writes side files
        quantize_static(str(float_graph), str(Path(tmp) / "q.onnx"), _Images(images, size),
                        quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"],
                        nodes_to_quantize=convs[1:2], per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        out.write_bytes((Path(tmp) / "q.onnx").read_bytes())
