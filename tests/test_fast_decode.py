"""The faster exact decoder: the synthesis graph rebuilt at load time and the hyper-decoder's
8-bit convolutions give exactly what the model files and the float64 reference give."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from aecodec import intnet
from aecodec.fast_synthesis import exact_u8s8, rewrite
from aecodec.model import MODELS_DIR, Model, find
from aecodec.onnx_wire import Graph, Node, WireError, read_model, write_model

SHIPPED = MODELS_DIR / "hyperprior" / "synthesis.onnx"
# every shipped exact 8-bit synthesis: 1.1.0's and the lighter one of hyperprior-fast
SYNTHESES = [p for p in (SHIPPED, MODELS_DIR / "hyperprior-fast" / "synthesis.onnx")
             if p.is_file()]
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped hyperprior not installed")


def _session(data: bytes | str, threads: int, level: str = "ORT_ENABLE_ALL"):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _latents(seed: int, h: int, w: int, spread: float) -> np.ndarray:
    """y_hat whose first quantization covers the whole 0..255 range and saturates at `spread`."""
    s_in = read_model(SHIPPED.read_bytes()).inits["s_in0"].reshape(-1)
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1, (1, len(s_in), h, w)) * s_in[None, :, None, None] * spread
    return np.round(y * 4).astype(np.float32) / 4


def test_reader_matches_onnx_package():
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    ref = onnx.load(str(SHIPPED))
    g = read_model(SHIPPED.read_bytes())
    assert [n.op for n in g.nodes] == [n.op_type for n in ref.graph.node]
    assert [n.inputs for n in g.nodes] == [list(n.input) for n in ref.graph.node]
    for t in ref.graph.initializer:
        a = numpy_helper.to_array(t)
        assert g.inits[t.name].dtype == a.dtype and np.array_equal(g.inits[t.name], a)
    assert g.inputs == ["y_hat"] and g.outputs == ["pixels"]


def test_written_graph_round_trips_and_runs():
    w = np.arange(-8, 10, dtype=np.int8).reshape(2, 1, 3, 3)
    g = Graph([Node("ConvInteger", ["x", "w", "zp"], ["y"], {"pads": [1, 1, 1, 1]})],
              {"w": w, "zp": np.uint8(3)}, ["x"], ["y"])
    data = write_model(g, {"x": (np.uint8, 4)}, {"y": (np.int32, 4)})
    back = read_model(data)
    assert back.nodes[0].attrs == {"pads": [1, 1, 1, 1]} and np.array_equal(back.inits["w"], w)
    x = np.random.default_rng(0).integers(0, 256, (1, 1, 5, 6)).astype(np.uint8)
    y = _session(data, 1).run(None, {"x": x})[0]
    xi = np.pad(x[0, 0].astype(np.int64) - 3, 1)
    for o in range(2):
        ref = sum(w[o, 0, i, j] * xi[i : i + 5, j : j + 6] for i in range(3) for j in range(3))
        assert np.array_equal(y[0, o], ref)
    with pytest.raises(WireError):
        read_model(data[:-5])


def test_rewrite_refuses_other_graphs():
    data = SHIPPED.read_bytes()
    assert rewrite(data) is not None
    assert rewrite(data[: len(data) // 2]) is None  # truncated
    assert rewrite(b"not a model") is None
    factorized = MODELS_DIR / "factorized" / "synthesis.onnx"
    if factorized.is_file():
        assert rewrite(factorized.read_bytes()) is None
    g = read_model(data)  # one constant changed: no longer the graph the rewrite knows
    g.inits["f128"] = np.float32(127)
    changed = write_model(g, {"y_hat": (np.float32, 4)}, {"pixels": (np.uint8, 4)})
    assert rewrite(changed) is None


@pytest.mark.parametrize("path", SYNTHESES, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("threads,level", [(2, "ORT_ENABLE_ALL"), (1, "ORT_DISABLE_ALL"),
                                           (1, "ORT_ENABLE_EXTENDED")])
def test_rewritten_synthesis_gives_the_file_graphs_pixels(threads, level, signed, path):
    if signed and not exact_u8s8():
        pytest.skip("this CPU's u8 x s8 sums may saturate: the runtime does not use them")
    fast = _session(rewrite(path.read_bytes(), signed_gamma=signed), threads, level)
    plain = _session(str(path), threads, level)
    for seed, (h, w), spread in [(0, (5, 7), 30.0), (1, (4, 4), 300.0), (2, (9, 3), 3.0)]:
        y = _latents(seed, h, w, spread)
        a, b = fast.run(None, {"y_hat": y})[0], plain.run(None, {"y_hat": y})[0]
        assert a.dtype == np.uint8 and np.array_equal(a, b), (seed, spread)
        assert len(np.unique(a)) > 50  # varied pixels, not a flat clipped image


def test_model_rewrite_switch():
    info = find("hyperprior")
    y = _latents(3, 3, 5, 30.0)
    fast, plain = Model(info, threads=1), Model(info, threads=1, rewrite=False)
    assert np.array_equal(fast.synthesis.run(None, {"y_hat": y})[0],
                          plain.synthesis.run(None, {"y_hat": y})[0])
    assert len(fast.synthesis._model_meta.producer_name) and (
        fast.synthesis._model_meta.producer_name != plain.synthesis._model_meta.producer_name)


def test_hyper_decoder_8bit_convolutions_are_exact():
    net = Model(find("hyperprior"), threads=2).net
    assert isinstance(net, intnet.IntNet)
    plain = dict(net)
    rng = np.random.default_rng(0)
    nz = net["w0"].shape[1]
    cases = [rng.integers(-12, 13, (nz, 6, 7)),  # typical hyper-latents
             rng.integers(-128, 128, (nz, 3, 2)),  # the int8 range's edges
             rng.integers(0, 256, (nz, 2, 3)),  # all in uint8: zero point 0
             rng.integers(-900, 900, (nz, 4, 4)),  # over 8 bits: the float64 convolution
             np.full((nz, 1, 1), 40000)]  # clipped to 2**15 - 1
    for z in cases:
        assert np.array_equal(intnet.run(net, z.astype(np.float64)), intnet.run(plain, z))


def test_synthesis_falls_back_to_the_file_graph(monkeypatch):
    """An ONNX Runtime that cannot load the rewritten graph runs the file's."""
    from aecodec.errors import ModelError

    load = Model._session

    def no_rewrite(self, filename, data=None):
        if data is not None:
            raise ModelError("operator not implemented")
        return load(self, filename)

    monkeypatch.setattr(Model, "_session", no_rewrite)
    model = Model(find("hyperprior"), threads=1)
    assert model.synthesis._model_meta.producer_name != "aecodec"  # the file's graph
    y = _latents(4, 2, 3, 30.0)
    assert model.synthesis.run(None, {"y_hat": y})[0].shape == (1, 3, 32, 48)
