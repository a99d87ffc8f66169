"""The exact 8-bit synthesis rewritten at load time into fewer, cheaper ONNX operators.

Why: the shipped graph (export/int_onnx.py, docs/model-format.md) spends most of its time in
elementwise steps on float32 tensors and in a last convolution with 12 output channels, which
ONNX Runtime's int8 kernels handle badly. The model file cannot change (its hash is the model
id in every stream), so the runtime reads its weights and builds an equivalent graph in memory
that computes the same integers and the same IEEE float32 operations in the same order:

- `u = float(q) - 128` is one DequantizeLinear (scale 1, zero point 128) instead of Cast, Sub;
- the high byte `floor(u*u / 256)` is QuantizeLinear(u*u - 127.5, scale 256): the quotient of
  an integer minus 127.5 by 256 is never a tie, so rounding gives the floor (exact powers of 2);
- the low byte `u*u mod 256` is `(q + 128) * (q + 128)` in wrapping uint8 arithmetic;
- the last QLinearConv gets 4 zero output channels (12 -> 16, sliced off again): the same sums,
  with int8 kernels that suit 16 channels;
- between the convolutions the tensors stay channels-last (ONNX Runtime runs QLinearConv in
  NHWC, so the transposes around it cancel): the convolutions' output channels are reordered
  sub-pixel first, which makes depth-to-space a copy of whole pixels, and the normaliser's
  1x1 convolution is a MatMulInteger over the last axis (the same integer sums), its gamma
  as int8 with zero point -128 on CPUs whose u8 x s8 sums are exact (`exact_u8s8`).

`rewrite()` returns None for any graph that is not exactly the shape int_onnx writes, and the
runtime then runs the file as it is. tests/test_cross_runtime.py checks the pixels against the
file's own graph and the torch reference.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

import numpy as np

from .onnx_wire import Graph, Node, WireError, read_model, write_model

_IGDN = ["Cast", "Sub", "Mul", "Mul", "Floor", "Mul", "Sub", "Cast", "ConvInteger", "Cast",
         "ConvInteger", "Mul", "Add", "Add", "Cast", "Mul", "Sqrt", "Mul", "QuantizeLinear"]
SHIPPED_OPS = (["Div", "QuantizeLinear"] + (["QLinearConv", "DepthToSpace"] + _IGDN) * 3
               + ["QLinearConv", "DepthToSpace"])
_CONSTANTS = {"one": 1.0, "zp128": 128, "zp0": 0, "f128": 128.0, "f256": 256.0,
              "inv256": 1 / 256}


def rewritable(g: Graph) -> bool:
    """Is this the graph export/int_onnx.py writes (same operators, wiring and constants)?"""
    if [n.op for n in g.nodes] != SHIPPED_OPS or g.inputs != ["y_hat"] or g.outputs != ["pixels"]:
        return False
    for name, v in _CONSTANTS.items():
        if name not in g.inits or g.inits[name].shape != () or float(g.inits[name]) != v:
            return False
    if g.inits["one"].dtype != np.float32 or g.inits["zp128"].dtype != np.uint8:
        return False
    convs = [n for n in g.nodes if n.op == "QLinearConv"]
    for k, n in enumerate(convs):
        expect = ["one", "zp128", f"w{k}", f"w{k}_scale", f"w{k}_zp", "one",
                  "zp0" if k == 3 else "zp128", f"b{k}"]
        if n.inputs[1:] != expect or n.attrs.get("pads") != [1, 1, 1, 1] or any(
            a for a in n.attrs if a not in ("pads",)
        ):
            return False
        if np.any(g.inits[f"w{k}_zp"]) or g.inits[f"w{k}"].shape[2:] != (3, 3):
            return False
    for n in g.nodes:
        if n.op == "DepthToSpace" and n.attrs != {"blocksize": 2, "mode": b"CRD"}:
            return False
    for k in range(3):  # the IGDN's constants, by the names int_onnx gives them
        for name in (f"gamma{k}", f"beta{k}", f"k{k}", f"s256_{k}"):
            if name not in g.inits:
                return False
        if int(g.inits[f"s256_{k}"]) != 256 or g.inits[f"gamma{k}"].dtype != np.uint8:
            return False
    uses = {i for n in g.nodes for i in n.inputs if i in g.inits}
    for k in range(3):
        if not {f"gamma{k}", f"beta{k}", f"k{k}"} <= uses:
            return False
    return "s_in0" in g.inits and g.nodes[0].inputs == ["y_hat", "s_in0"]


@lru_cache(maxsize=1)
def exact_u8s8() -> bool:
    """Does ONNX Runtime's uint8 x int8 product sum exactly on this CPU?

    On x86 its u8 x s8 kernels without VNNI add pairs of products in saturating 16 bits
    (VPMADDUBSW); with AVX-512 VNNI or AVX-VNNI they sum in 32 bits (VPDPBUSD). Anything not
    known to be such an x86 CPU with VNNI gets False: uint8 x uint8 kernels, exact everywhere."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return "avx512_vnni" in flags or "avx_vnni" in flags


def rewrite(data: bytes, signed_gamma: bool | None = None) -> bytes | None:
    """The faster equivalent of a shipped 8-bit synthesis graph, or None if `data` is not one.

    `signed_gamma` stores the normalisers' uint8 gamma as int8 with zero point -128 (the same
    sums; ONNX Runtime's u8 x s8 kernels are about twice as fast as its u8 x u8 ones): by
    default where `exact_u8s8()` says those kernels sum exactly."""
    if signed_gamma is None:
        signed_gamma = exact_u8s8()
    try:
        g = read_model(data)
    except WireError:
        return None
    if not rewritable(g):
        return None
    w = g.inits
    nodes: list[Node] = []
    inits: dict[str, np.ndarray] = {
        "one": np.float32(1), "zp128": np.uint8(128), "zp0": np.uint8(0),
        "u128": np.uint8(128), "h127": np.float32(127.5), "f256": np.float32(256),
        "i256": np.int32(256), "s_in0": w["s_in0"], "i1": np.array([1], np.int64),
        "i2": np.array([2], np.int64), "i3": np.array([3], np.int64),
    }
    if signed_gamma:
        inits["gzp"] = np.int8(-128)
    count = 0

    def op(kind: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        nonlocal count
        count += 1
        out = out or f"t{count}"
        nodes.append(Node(kind, inputs, [out], attrs))
        return out

    x = op("QuantizeLinear", [op("Div", ["y_hat", "s_in0"]), "one", "zp128"])  # NCHW
    for k in range(4):
        wk, scale, zp, bias = w[f"w{k}"], w[f"w{k}_scale"], w[f"w{k}_zp"], w[f"b{k}"]
        last, out_c = k == 3, len(wk)
        if last:  # zero output channels: the same sums, sliced off below
            pad = (-out_c) % 16
            wk = np.concatenate([wk, np.zeros((pad, *wk.shape[1:]), wk.dtype)])
            scale = np.concatenate([scale, np.full(pad, scale[0], scale.dtype)])
            zp = np.concatenate([zp, np.zeros(pad, zp.dtype)])
            bias = np.concatenate([bias, np.zeros(pad, bias.dtype)])
            order = np.arange(len(wk))
        else:  # output channel c*4 + s of the file becomes s*C + c: sub-pixel s outermost
            c = out_c // 4
            order = (np.arange(4)[:, None] + 4 * np.arange(c)[None, :]).reshape(-1)
        inits.update({f"w{k}": wk[order], f"w{k}_scale": scale[order], f"w{k}_zp": zp[order],
                      f"b{k}": bias[order]})
        if k:  # back to NCHW for the convolution (ORT runs it NHWC: the transposes cancel)
            x = op("Transpose", [x], perm=[0, 3, 1, 2])
        x = op("QLinearConv", [x, "one", "zp128", f"w{k}", f"w{k}_scale", f"w{k}_zp", "one",
                               "zp0" if last else "zp128", f"b{k}"], pads=[1, 1, 1, 1])
        if last:
            inits["cn"] = np.array([out_c], np.int64)
            x = op("Slice", [x, op("Sub", ["i1", "i1"]), "cn", "i1"])
            op("DepthToSpace", [x], "pixels", blocksize=2, mode=b"CRD")
            break
        # depth to space in NHWC: [1,H,W,(2,2,C)] -> [1,H,2,W,2,C] -> [1,2H,2W,C]
        x = op("Transpose", [x], perm=[0, 2, 3, 1])
        hw = op("Slice", [op("Shape", [x]), "i1", "i3"])
        inits[f"shape{k}"] = np.array([2, 2, c], np.int64)
        inits[f"c{k}"] = np.array([c], np.int64)
        x = op("Reshape", [x, op("Concat", ["i1", hw, f"shape{k}"], axis=0)])
        x = op("Transpose", [x], perm=[0, 1, 3, 2, 4, 5])
        x = op("Reshape", [x, op("Concat", ["i1", op("Mul", [hw, "i2"]), f"c{k}"], axis=0)])
        gamma = np.ascontiguousarray(w[f"gamma{k}"][:, :, 0, 0].T)  # [in, out]
        inits[f"gamma{k}"] = (gamma.astype(np.int16) - 128).astype(np.int8) if signed_gamma \
            else gamma
        g_in = [f"gamma{k}", "zp0", "gzp"] if signed_gamma else [f"gamma{k}"]
        inits[f"beta{k}"] = w[f"beta{k}"].reshape(-1)
        inits[f"k{k}"] = w[f"k{k}"].reshape(-1)
        u = op("DequantizeLinear", [x, "one", "zp128"])  # float(q) - 128
        sq = op("Mul", [u, u])
        hi = op("QuantizeLinear", [op("Sub", [sq, "h127"]), "f256", "zp0"])  # floor(sq / 256)
        d = op("Add", [x, "u128"])
        lo = op("Mul", [d, d])  # sq mod 256
        n = op("Add", [op("Mul", [op("MatMulInteger", [hi, *g_in]), "i256"]),
                       op("MatMulInteger", [lo, *g_in])])
        n = op("Add", [n, f"beta{k}"])
        r = op("Sqrt", [op("Mul", [op("Cast", [n], to=1), f"k{k}"])])  # float32(n) * k
        x = op("QuantizeLinear", [op("Mul", [u, r]), "one", "zp128"])
    out = Graph(nodes, inits, ["y_hat"], ["pixels"])
    return write_model(out, {"y_hat": (np.float32, 4)}, {"pixels": (np.uint8, 4)})
