"""8-bit analysis transform: ONNX Runtime's static quantization of its convolutions.

Why: encoding time is mostly the analysis convolutions, and 8-bit QLinearConv runs several
times faster than float32 Conv on CPUs with VNNI. Unlike the synthesis, the analysis needs no
exactness (only the encoder runs it; the stream fixes what every decoder sees), so ORT's own
quantizer does: convolutions with per-channel int8 weights and uint8 activations calibrated on
training images (never the evaluation set), GDN left in float32.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
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


def quantize_analysis(float_graph: Path, out: Path, images: list[np.ndarray],
                      size: int = 512) -> None:
    """Write `out`, the 8-bit version of the float32 analysis graph `float_graph`."""
    with tempfile.TemporaryDirectory() as tmp:  # the quantizer writes side files
        quantize_static(str(float_graph), str(Path(tmp) / "q.onnx"), _Images(images, size),
                        quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"],
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        out.write_bytes((Path(tmp) / "q.onnx").read_bytes())
