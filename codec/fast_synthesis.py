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
- `float32(n) * k` is one DequantizeLinear of the int32 `n` with per-channel scale `k`;
- the last QLinearConv gets 4 zero output channels (12 -> 16, sliced off again): the same sums,
  with int8 kernels that suit 16 channels.

`rewrite()` returns None for any graph that is not exactly the shape int_onnx writes, and the
runtime then runs the file as it is. tests/test_cross_runtime.py checks the pixels against the
file's own graph and the torch reference.
"""

from __future__ import annotations

import numpy as np

from .onnx_wire import Graph, Node, WireError, read_model, write_model

_IGDN = ["Cast", "Sub", "Mul", "Mul", "Floor", "Mul", "Sub", "Cast", "ConvInteger", "Cast",
         "ConvInteger", "Mul", "Add", "Add", "Cast", "Mul", "Sqrt", "Mul", "QuantizeLinear"]
SHIPPED_OPS = (["Div", "QuantizeLinear"] + (["QLinearConv", "DepthToSpace"] + _IGDN) * 3
               + ["QLinearConv", "DepthToSpace"])
_CONSTANTS = {"one": 1.0, "zp128": 128, "zp0": 0, "f128": 128.0, "f256": 256.0,
              "inv256": 1 / 256}


def _matches(g: Graph) -> bool:
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


def rewrite(data: bytes) -> bytes | None:
    """The faster equivalent of a shipped 8-bit synthesis graph, or None if `data` is not one."""
    try:
        g = read_model(data)
    except WireError:
        return None
    if not _matches(g):
        return None
    w = g.inits
    nodes: list[Node] = []
    inits: dict[str, np.ndarray] = {
        "one": np.float32(1), "zp128": np.uint8(128), "zp0": np.uint8(0),
        "u128": np.uint8(128), "h127": np.float32(127.5), "f256": np.float32(256),
        "i256": np.int32(256), "s_in0": w["s_in0"],
    }
    count = 0

    def op(kind: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        nonlocal count
        count += 1
        out = out or f"t{count}"
        nodes.append(Node(kind, inputs, [out], attrs))
        return out

    x = op("QuantizeLinear", [op("Div", ["y_hat", "s_in0"]), "one", "zp128"])
    for k in range(4):
        wk, scale, zp, bias = w[f"w{k}"], w[f"w{k}_scale"], w[f"w{k}_zp"], w[f"b{k}"]
        last = k == 3
        pad = (-len(wk)) % 16 if last else 0
        if pad:  # zero output channels: same sums, sliced off below
            wk = np.concatenate([wk, np.zeros((pad, *wk.shape[1:]), wk.dtype)])
            scale = np.concatenate([scale, np.full(pad, scale[0], scale.dtype)])
            zp = np.concatenate([zp, np.zeros(pad, zp.dtype)])
            bias = np.concatenate([bias, np.zeros(pad, bias.dtype)])
        inits.update({f"w{k}": wk, f"w{k}_scale": scale, f"w{k}_zp": zp, f"b{k}": bias})
        x = op("QLinearConv", [x, "one", "zp128", f"w{k}", f"w{k}_scale", f"w{k}_zp", "one",
                               "zp0" if last else "zp128", f"b{k}"], pads=[1, 1, 1, 1])
        if pad:
            inits.update({"c0": np.array([0], np.int64), "c1": np.array([1], np.int64),
                          "cn": np.array([len(w["w3"])], np.int64)})
            x = op("Slice", [x, "c0", "cn", "c1"])
        x = op("DepthToSpace", [x], "pixels" if last else None, blocksize=2, mode=b"CRD")
        if last:
            break
        inits[f"gamma{k}"], inits[f"beta{k}"] = w[f"gamma{k}"], w[f"beta{k}"]
        inits[f"k{k}"] = np.ascontiguousarray(w[f"k{k}"].reshape(-1))
        u = op("DequantizeLinear", [x, "one", "zp128"])  # float(q) - 128
        sq = op("Mul", [u, u])
        hi = op("QuantizeLinear", [op("Sub", [sq, "h127"]), "f256", "zp0"])  # floor(sq / 256)
        d = op("Add", [x, "u128"])
        lo = op("Mul", [d, d])  # sq mod 256
        n = op("Add", [op("Mul", [op("ConvInteger", [hi, f"gamma{k}"]), "i256"]),
                       op("ConvInteger", [lo, f"gamma{k}"])])
        n = op("Add", [n, f"beta{k}"])
        r = op("Sqrt", [op("DequantizeLinear", [n, f"k{k}"], axis=1)])  # float32(n) * k
        x = op("QuantizeLinear", [op("Mul", [u, r]), "one", "zp128"])
    out = Graph(nodes, inits, ["y_hat"], ["pixels"])
    return write_model(out, {"y_hat": (np.float32, 4)}, {"pixels": (np.uint8, 4)})
