"""Just enough of ONNX's protobuf encoding to read a graph's nodes and weights and write a graph.

Why not the `onnx` package: the runtime depends on onnxruntime, numpy, constriction, Pillow and
click only. Rewriting a shipped graph at load time (codec/fast_synthesis.py) needs the nodes,
their attributes and the initializers stored as `raw_data`, which is what `onnx` itself writes.
Field numbers are those of onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
TensorProto, ValueInfoProto); anything else in a file is skipped when reading.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

# TensorProto.DataType
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 11: np.float64}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}


class WireError(ValueError):
    """The bytes are not an ONNX model this reader understands."""


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, int | float | bytes | list[int]] = field(default_factory=dict)


@dataclass
class Graph:
    nodes: list[Node]
    inits: dict[str, np.ndarray]
    inputs: list[str]
    outputs: list[str]


# ---- reading --------------------------------------------------------------------------------

def _varint(buf: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if i >= len(buf):
            raise WireError("truncated varint")
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, i
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _fields(buf: bytes):
    """(field number, wire type, value) of each field of one message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise WireError(f"unsupported wire type {wt}")
        if i > len(buf):
            raise WireError("truncated field")
        yield num, wt, v


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _tensor(buf: bytes) -> tuple[str, np.ndarray]:
    dims, dtype, name, raw = [], None, "", None
    for num, wt, v in _fields(buf):
        if num == 1:
            if wt == 2:  # packed
                j = 0
                while j < len(v):
                    d, j = _varint(v, j)
                    dims.append(d)
            else:
                dims.append(v)
        elif num == 2:
            dtype = v
        elif num == 8:
            name = v.decode()
        elif num == 9:
            raw = v
        elif num in (4, 5, 6, 7, 10, 11, 12, 13, 14):  # typed data fields
            raise WireError(f"tensor {name or '?'} is not stored as raw_data")
    if dtype not in DTYPES:
        raise WireError(f"tensor {name}: unsupported data type {dtype}")
    raw = raw or b""
    arr = np.frombuffer(raw, np.dtype(DTYPES[dtype]).newbyteorder("<")).astype(DTYPES[dtype])
    if arr.size != int(np.prod(dims)):
        raise WireError(f"tensor {name}: {arr.size} values for shape {dims}")
    return name, arr.reshape(dims)


def _attribute(buf: bytes) -> tuple[str, int | float | bytes | list[int]]:
    name, value, ints = "", None, []
    for num, wt, v in _fields(buf):
        if num == 1:
            name = v.decode()
        elif num == 2:
            value = struct.unpack("<f", v)[0]
        elif num == 3:
            value = _signed(v)
        elif num == 8:
            if wt == 2:
                j = 0
                while j < len(v):
                    d, j = _varint(v, j)
                    ints.append(_signed(d))
            else:
                ints.append(_signed(v))
        elif num == 4:
            value = bytes(v)
        elif num in (5, 6, 7, 9, 10, 11):
            raise WireError(f"attribute {name or '?'}: unsupported kind")
    return name, ints if value is None else value


def _node(buf: bytes) -> Node:
    node = Node("", [], [])
    for num, _, v in _fields(buf):
        if num == 1:
            node.inputs.append(v.decode())
        elif num == 2:
            node.outputs.append(v.decode())
        elif num == 4:
            node.op = v.decode()
        elif num == 5:
            k, a = _attribute(v)
            node.attrs[k] = a
        elif num == 7 and v:
            raise WireError(f"operator domain {v.decode()!r} is not the default one")
    return node


def _value_name(buf: bytes) -> str:
    return next((v.decode() for num, _, v in _fields(buf) if num == 1), "")


def read_model(data: bytes) -> Graph:
    """The main graph of an ONNX model: nodes in order, initializers, input and output names."""
    graph = None
    for num, _, v in _fields(data):
        if num == 7:
            graph = v
    if graph is None:
        raise WireError("no graph")
    g = Graph([], {}, [], [])
    for num, _, v in _fields(graph):
        if num == 1:
            g.nodes.append(_node(v))
        elif num == 5:
            name, arr = _tensor(v)
            g.inits[name] = arr
        elif num == 11:
            g.inputs.append(_value_name(v))
        elif num == 12:
            g.outputs.append(_value_name(v))
    return g


# ---- writing --------------------------------------------------------------------------------

def _key(num: int, wt: int) -> bytes:
    return _enc_varint(num << 3 | wt)


def _enc_varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len(num: int, payload: bytes) -> bytes:
    return _key(num, 2) + _enc_varint(len(payload)) + payload


def _int(num: int, v: int) -> bytes:
    return _key(num, 0) + _enc_varint(v)


def _enc_tensor(name: str, a: np.ndarray) -> bytes:
    a = np.asarray(a)
    out = b"".join(_int(1, d) for d in a.shape)
    out += _int(2, CODES[a.dtype]) + _len(8, name.encode())
    return out + _len(9, np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())


def _enc_attr(name: str, v: int | float | bytes | list[int]) -> bytes:
    out = _len(1, name.encode())
    if isinstance(v, bytes):
        return out + _len(4, v) + _int(20, 3)
    if isinstance(v, float):
        return out + _key(2, 5) + struct.pack("<f", v) + _int(20, 1)
    if isinstance(v, int):
        return out + _int(3, v) + _int(20, 2)
    return out + b"".join(_int(8, i) for i in v) + _int(20, 7)


def _enc_node(n: Node, name: str) -> bytes:
    out = b"".join(_len(1, i.encode()) for i in n.inputs)
    out += b"".join(_len(2, o.encode()) for o in n.outputs)
    out += _len(3, name.encode()) + _len(4, n.op.encode())
    return out + b"".join(_len(5, _enc_attr(k, v)) for k, v in n.attrs.items())


def _enc_value(name: str, elem: int, rank: int) -> bytes:
    dims = b"".join(_len(1, _len(2, f"d{i}".encode())) for i in range(rank))
    tensor = _int(1, elem) + _len(2, dims)
    return _len(1, name.encode()) + _len(2, _len(1, tensor))


def write_model(g: Graph, input_types: dict[str, tuple[type, int]],
                output_types: dict[str, tuple[type, int]], opset: int = 17) -> bytes:
    """Serialize a graph; `*_types` give each graph input's / output's (dtype, rank)."""
    body = b"".join(_len(1, _enc_node(n, f"n{i}")) for i, n in enumerate(g.nodes))
    body += _len(2, b"rewritten")
    body += b"".join(_len(5, _enc_tensor(k, v)) for k, v in g.inits.items())
    body += b"".join(_len(11, _enc_value(k, CODES[np.dtype(t)], r))
                     for k, (t, r) in input_types.items())
    body += b"".join(_len(12, _enc_value(k, CODES[np.dtype(t)], r))
                     for k, (t, r) in output_types.items())
    return _int(1, 8) + _len(2, b"aecodec") + _len(7, body) + _len(8, _int(2, opset))
