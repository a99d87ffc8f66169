"""The 8-bit synthesis (`IntSynthesis`) as an ONNX graph of integer operators.

Input `y_hat` (float32 [1, M, h, w]), output `pixels` (uint8 [1, 3, 16h, 16w]). Every step is
either integer arithmetic (QLinearConv and ConvInteger accumulate in int32; DepthToSpace, Add)
or one elementwise IEEE float operation in a fixed order (Div, Sub, Mul, Floor, Sqrt, Cast,
QuantizeLinear with scale 1), so any conforming runtime computes the same pixels. The scales
that QLinearConv multiplies together are powers of two (x_scale = y_scale = 1), so no
implementation can round their product differently.
See docs/model-format.md.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from .int_synthesis import GMAX, QMAX, IntSynthesis, gdn_grid, weight_scale

OPSET = 17


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, kind: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        self.n += 1
        out = out or f"{kind.lower()}_{self.n}"
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def to_u8(self, x: str) -> str:
        """float levels -> saturate(round(x) + 128) as uint8 (QuantizeLinear with scale 1)."""
        return self.op("QuantizeLinear", [x, "one", "zp128"])


def _per_channel(v: torch.Tensor) -> np.ndarray:
    return v.detach().double().cpu().numpy()[None, :, None, None].astype(np.float32)


@torch.no_grad()
def build_graph(net: IntSynthesis) -> onnx.ModelProto:
    """The ONNX model of `net`, its integer constants derived exactly as the network's forward."""
    g = _Graph()
    one = g.const("one", np.float32(1.0))
    zp = g.const("zp128", np.uint8(128))
    zero_u8 = g.const("zp0", np.uint8(0))
    for name, v in (("f128", 128), ("f256", 256), ("inv256", 1 / 256)):
        g.const(name, np.float32(v))
    s_in = [torch.exp(p).double() for p in net.log_s_in]
    s_out = [torch.exp(p).double() for p in net.log_s_out]
    x = g.op("Div", ["y_hat", g.const("s_in0", _per_channel(s_in[0]))])
    x = g.to_u8(x)
    for k in range(4):
        conv = net.convs[k]
        w = conv.weight.double() * s_in[k][None, :, None, None]
        sw = weight_scale(w)
        wq = torch.clamp(torch.round(w / sw[:, None, None, None]), -QMAX, QMAX)
        bias = torch.round(conv.bias.double() / sw)
        last = k == 3
        # output units: IGDN levels (u = real / s_out, per channel after the pixel shuffle)
        # or pixels (255 * real); QLinearConv rounds acc * w_scale to them
        unit = torch.full_like(sw, 1 / 255) if last else s_out[k].repeat_interleave(4)
        x = g.op("QLinearConv", [
            x, one, zp,
            g.const(f"w{k}", wq.cpu().numpy().astype(np.int8)),
            g.const(f"w{k}_scale", (sw / unit).cpu().numpy().astype(np.float32)),
            g.const(f"w{k}_zp", np.zeros(wq.shape[0], np.int8)),
            one, zero_u8 if last else zp,
            g.const(f"b{k}", bias.cpu().numpy().astype(np.int32)),
        ], pads=[1, 1, 1, 1])
        x = g.op("DepthToSpace", [x], "pixels" if last else None, blocksize=2, mode="CRD")
        if last:
            break
        beta, gamma = net.gdns[k].params()
        c, beta_q, gamma_q = gdn_grid(beta.double(), gamma.double(), s_out[k])
        assert int(beta_q.max()) + gamma_q.sum(1).max() * 128**2 < 2**31
        gq = g.const(f"gamma{k}", gamma_q.cpu().numpy().astype(np.uint8)[:, :, None, None])
        # u = q - 128 and u^2 as float32 (exact: u^2 <= 2^14), split into two bytes
        u = g.op("Sub", [g.op("Cast", [x], to=TensorProto.FLOAT), "f128"])
        sq = g.op("Mul", [u, u])
        hi = g.op("Floor", [g.op("Mul", [sq, "inv256"])])
        lo = g.op("Sub", [sq, g.op("Mul", [hi, "f256"])])
        hi = g.op("ConvInteger", [g.op("Cast", [hi], to=TensorProto.UINT8), gq])
        lo = g.op("ConvInteger", [g.op("Cast", [lo], to=TensorProto.UINT8), gq])
        n = g.op("Add", [g.op("Mul", [hi, g.const(f"s256_{k}", np.int32(256))]), lo])
        n = g.op("Add", [n, g.const(f"beta{k}", beta_q.cpu().numpy().astype(np.int32)[
            None, :, None, None])])
        scale = c * (s_out[k] / s_in[k + 1]) ** 2  # norm and requantization in one constant
        r = g.op("Sqrt", [g.op("Mul", [g.op("Cast", [n], to=TensorProto.FLOAT),
                                       g.const(f"k{k}", _per_channel(scale))])])
        x = g.to_u8(g.op("Mul", [u, r]))
    graph = helper.make_graph(
        g.nodes,
        "int_synthesis",
        [helper.make_tensor_value_info("y_hat", TensorProto.FLOAT, [1, len(s_in[0]), "h", "w"])],
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, [1, 3, "H", "W"])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


assert GMAX <= 255  # gamma travels as uint8
