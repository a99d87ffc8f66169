"""The exact 8-bit synthesis: fine-tuned, stored in the weights, exported, and decoded to the same
pixels by ONNX Runtime under any configuration and by the independent torch reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402
from PIL import Image  # noqa: E402

import aecodec  # noqa: E402
from aecodec.export.int_onnx import build_graph  # noqa: E402
from aecodec.export.int_reference import IntReference  # noqa: E402
from aecodec.export.int_synthesis import IntSynthesis  # noqa: E402
from aecodec.export.loop import Recipe, fit  # noqa: E402
from aecodec.export.models import Config, synthesis  # noqa: E402
from aecodec.export.onnx_export import export_model  # noqa: E402
from aecodec.export.tasks.int8 import Int8Task  # noqa: E402
from aecodec.export.tasks.photo import PhotoTask  # noqa: E402


def _image(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.cos(xx / (5 + 2 * c) - yy / 9) for c in range(3)], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)


def _sessions(data: bytes) -> list[ort.InferenceSession]:
    out = []
    for level, threads in [("ORT_ENABLE_ALL", 2), ("ORT_ENABLE_ALL", 1),
                           ("ORT_DISABLE_ALL", 2), ("ORT_ENABLE_BASIC", 1)]:
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        so.intra_op_num_threads = threads
        out.append(ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]))
    return out


def _random_net(seed: int) -> IntSynthesis:
    torch.manual_seed(seed)
    g_s = synthesis(8, 12, "subpel")
    with torch.no_grad():
        for mod in g_s.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.bias.normal_(0, 0.1)
    return IntSynthesis(g_s, [torch.full((12,), 6.0)] + [torch.full((8,), 3.0)] * 3,
                        [torch.full((8,), 3.0)] * 3)


def test_graph_pixels_equal_reference_under_every_configuration():
    net = _random_net(0)
    data = build_graph(net).SerializeToString()
    ref = IntReference(data)
    rng = np.random.default_rng(1)
    for shape in [(1, 12, 3, 5), (1, 12, 7, 4)]:
        y = (np.round(rng.normal(0, 3, shape) * 4) / 4).astype(np.float32)
        want = ref(y)
        assert want.dtype == np.uint8 and want.shape == (1, 3, shape[2] * 16, shape[3] * 16)
        assert 0 < np.count_nonzero(want) < want.size  # not a degenerate all-black/white image
        for sess in _sessions(data):
            assert np.array_equal(sess.run(None, {"y_hat": y})[0], want)
        # the quantization-aware float model it was derived from gives nearly the same image
        with torch.no_grad():
            x = net(torch.from_numpy(y))[0].numpy()
        px = np.rint(np.clip(x, 0, 1) * 255)
        assert np.mean(np.abs(px - want[0])) < 2.0


@pytest.mark.slow
def test_finetune_stores_in_weights_and_exports_an_exact_model(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        Image.fromarray(_image(i)).save(images / f"img{i}.png")
    torch.set_num_threads(2)
    cfg = Config(family="hyperprior", n=8, m=8, nz=8, lambdas=(0.01, 0.1))
    recipe = Recipe(steps=2, batch=2, crop=64, bf16=False)
    weights = Path(fit(PhotoTask(images, cfg), recipe, tmp_path / "run")["export"])
    int_recipe = Recipe(steps=3, batch=2, crop=64, bf16=False, schedule="cosine")

    def int8(steps: int) -> dict:  # stored in the weights file itself, as the photo command does
        return fit(Int8Task(weights, images, target=weights), int_recipe, tmp_path / "int8",
                   budget_steps=steps)

    int8(2)
    record = torch.load(weights, weights_only=False)["int_synthesis"]["record"]
    assert record["iterations"] == 2 and len(record["runs"]) == 1
    int8(5)  # resumes its own checkpoint: the schedule's last step, counted once
    record = torch.load(weights, weights_only=False)["int_synthesis"]["record"]
    assert record["iterations"] == 3 and [r["start_step"] for r in record["runs"]] == [0, 2]
    fit(PhotoTask(images, cfg), recipe, tmp_path / "run")  # nothing to train
    assert "int_synthesis" in torch.load(weights, weights_only=False)  # so it still applies
    recipe.steps = 3
    fit(PhotoTask(images, cfg), recipe, tmp_path / "run")  # the float model moves
    assert "int_synthesis" not in torch.load(weights, weights_only=False)
    with pytest.raises(ValueError, match="another task or configuration"):
        int8(1)  # that fine-tune was of the float model before: not resumed over this one
    fit(Int8Task(weights, images, target=weights), int_recipe, tmp_path / "int8-again")
    record = torch.load(weights, weights_only=False)["int_synthesis"]["record"]

    folder = export_model(weights, tmp_path / "model", name="tiny-int")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["architecture"]["synthesis"] == "int8"
    assert manifest["training"]["int_synthesis"]["iterations"] == record["iterations"]
    img = _image(7, 80, 100)
    codec = aecodec.Codec(str(folder), threads=1)
    data = codec.compress(img, quality=60)
    out = codec.decompress(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    y_hat = codec.decode_latents(data)["y_hat"]
    ref = IntReference((folder / "synthesis.onnx").read_bytes())(y_hat[None])[0]
    assert np.array_equal(out, ref.transpose(1, 2, 0)[:80, :100])
    other = aecodec.Codec(str(folder), threads=2, graph_optimization="none")
    assert np.array_equal(other.decompress(data), out)


def test_float_checkpoint_without_int_synthesis_exports_float(tmp_path):
    """Weights with no fine-tuned 8-bit synthesis keep the float one (x_hat output)."""
    cfg = Config(family="hyperprior", n=8, m=8, nz=8, lambdas=(0.01,))
    from aecodec.export.models import build

    torch.manual_seed(0)
    torch.save({"config": cfg.to_dict(), "model": build(cfg).state_dict(), "record": {}},
               tmp_path / "w.pt")
    folder = export_model(tmp_path / "w.pt", tmp_path / "m", name="f")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["architecture"]["synthesis"] == "float"
    sess = ort.InferenceSession(str(folder / "synthesis.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].name == "x_hat"


def test_shipped_default_model_has_the_exact_synthesis():
    path = Path(aecodec.__file__).parent / "models" / "hyperprior" / "synthesis.onnx"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.get_outputs()[0]
    assert out.name == "pixels" and out.type == "tensor(uint8)"


def test_equalized_analysis_is_the_same_function():
    from aecodec.export.int_analysis import equalize
    from aecodec.export.models import analysis

    torch.manual_seed(0)
    g_a = analysis(8, 12).eval()
    for mod in g_a.modules():
        if hasattr(mod, "freeze"):
            mod.freeze()
    images = [_image(i, 64, 64) for i in range(2)]
    eq = equalize(g_a, images)
    x = torch.from_numpy(_image(5, 64, 64).transpose(2, 0, 1).copy())[None].float() / 255
    with torch.no_grad():
        ref, got = g_a(x), eq(x)
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
        peaks = eq[:1](x).abs().amax(dim=(0, 2, 3))  # first conv's channels now peak near 1
        assert 0.3 < peaks.max().item() <= 1.5


@pytest.mark.slow
def test_int8_analysis_export_codes_images(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        Image.fromarray(_image(i, 256, 256)).save(images / f"img{i}.png")
    cfg = Config(family="hyperprior", n=8, m=8, nz=8, lambdas=(0.01, 0.1))
    weights = Path(fit(PhotoTask(images, cfg), Recipe(steps=1, batch=2, crop=64, bf16=False),
                       tmp_path / "run")["export"])
    folder = export_model(weights, tmp_path / "model", name="tiny-a8", calib=images)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["architecture"]["analysis"] == "int8"
    import onnx

    ops = {n.op_type for n in onnx.load(str(folder / "analysis.onnx")).graph.node}
    assert "QLinearConv" in ops and "Conv" in ops  # the middle convolution only
    img = _image(9, 70, 90)
    codec = aecodec.Codec(str(folder), threads=1)
    assert codec.decompress(codec.compress(img, quality=50)).shape == img.shape
