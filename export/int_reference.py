"""An independent torch implementation of the 8-bit synthesis graph (`int_onnx`), for checks.

It reads the integer constants from the ONNX file and computes with torch: integer sums as
float64 convolutions (exact: every sum stays far below 2^53) and the float steps as the same
float32 operations in the same order. Pixels equal to ONNX Runtime's show that the graph's
result is defined by its arithmetic, not by a runtime's kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    """QuantizeLinear(x, scale 1, zero point 128): round half to even, saturate to 0..255."""
    return torch.clamp(torch.round(x), -128, 127) + 128


class IntReference:
    """Pixels from y_hat exactly as the int_synthesis ONNX graph defines them."""

    def __init__(self, path: Path | bytes) -> None:
        model = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(str(path))
        self.c = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
                  for t in model.graph.initializer}

    def _qconv(self, k: int, q: torch.Tensor, zp_out: float) -> torch.Tensor:
        w = self.c[f"w{k}"].double()
        acc = F.conv2d(q.double() - 128, w, padding=1)
        acc = acc + self.c[f"b{k}"].double()[None, :, None, None]
        y = acc.float() * self.c[f"w{k}_scale"][None, :, None, None]
        return torch.clamp(torch.round(y) + zp_out, 0, 255)

    def _igdn(self, k: int, q: torch.Tensor) -> torch.Tensor:
        u = q.float() - 128
        sq = u * u
        hi = torch.floor(sq / 256)
        lo = sq - hi * 256
        g = self.c[f"gamma{k}"].double()
        n = F.conv2d(hi.double(), g) * 256 + F.conv2d(lo.double(), g)
        n = n + self.c[f"beta{k}"].double()
        # torch's own float32 sqrt is not correctly rounded on CPU (AVX-512: 15 % of values
        # differ from IEEE); the float64 square root rounded to float32 is.
        r = torch.sqrt((n.float() * self.c[f"k{k}"]).double()).float()
        return _to_u8(u * r)

    @torch.no_grad()
    def __call__(self, y_hat: np.ndarray) -> np.ndarray:
        """y_hat [1, M, h, w] float32 -> pixels [1, 3, 16h, 16w] uint8."""
        x = torch.from_numpy(np.ascontiguousarray(y_hat, np.float32))
        q = _to_u8(x / self.c["s_in0"])
        for k in range(4):
            q = F.pixel_shuffle(self._qconv(k, q, 0.0 if k == 3 else 128.0), 2)
            if k < 3:
                q = self._igdn(k, q)
        return q.numpy().astype(np.uint8)
