"""The lighter 8-bit synthesis: pruning from the shipped one, its data, its training (resumable)
and its model folder, which shares the base model's encoder and so writes the same payloads."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402
from PIL import Image  # noqa: E402

import aecodec  # noqa: E402
from aecodec import container  # noqa: E402
from aecodec.export import light_synthesis as ls  # noqa: E402
from aecodec.export.int_onnx import build_graph  # noqa: E402
from aecodec.export.int_reference import IntReference  # noqa: E402
from aecodec.export.int_synthesis import IntSynthesis  # noqa: E402
from aecodec.export.models import Config, build, synthesis  # noqa: E402
from aecodec.export.onnx_export import _extend_low  # noqa: E402
from aecodec.fast_synthesis import rewrite  # noqa: E402


def _net(seed: int = 0, m: int = 12, n: int = 8) -> IntSynthesis:
    torch.manual_seed(seed)
    g_s = synthesis(n, m, "subpel")
    with torch.no_grad():
        for mod in g_s.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.bias.normal_(0, 0.1)
    return IntSynthesis(g_s, [torch.full((m,), 6.0)] + [torch.full((n,), 3.0)] * 3,
                        [torch.full((n,), 3.0)] * 3)


def _ys(m: int = 12) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.round(torch.randn(1, m, 3, 4, generator=g) * 12) / 4 for _ in range(3)]


def test_pruning_to_full_width_is_the_same_network():
    net, ys = _net(), _ys()
    same = ls.prune(net, 2, 8, ys)
    with torch.no_grad():
        for y in ys:
            assert torch.equal(same(y), net(y))


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_pruned_network_keeps_the_chosen_channels_and_exports_exactly(stage):
    net, ys = _net(), _ys()
    small = ls.prune(net, stage, 5, ys)
    assert small.widths == tuple(5 if k == stage else 8 for k in range(3))
    keep = torch.sort(torch.topk(ls.channel_importance(net, stage, ys), 5).indices).values
    assert torch.equal(small.gdns[stage].gamma, net.gdns[stage].gamma[keep][:, keep])
    assert torch.equal(small.convs[stage + 1].weight, net.convs[stage + 1].weight[:, keep])
    with torch.no_grad():  # the stages before the pruned one are untouched
        a, b = ys[0], ys[0]
        for k in range(stage + 1):
            a, b = net.stage(k, a), small.stage(k, b)
        assert torch.equal(a[:, keep], b)
    data = build_graph(small).SerializeToString()
    fast = rewrite(data)
    assert fast is not None  # the runtime's faster form takes any widths
    y = ys[1].numpy()
    want = IntReference(data)(y)
    assert 0 < np.count_nonzero(want) < want.size
    for graph in (data, fast):
        sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        assert np.array_equal(sess.run(None, {"y_hat": y})[0], want)


def test_rate_positions_continue_the_levels_as_the_export_does():
    torch.manual_seed(0)
    model = build(Config(family="hyperprior", n=8, m=8, nz=8, lambdas=(0.01, 0.02, 0.04)))
    model.eval()
    model.h_s.quantize = True
    y = torch.randn(1, 8, 4, 4) * 3
    lg, lig = _extend_low(model.gains.log_gain.detach(), model.gains.log_inv_gain.detach(), 2)
    for t, k in ((-2.0, 0), (-1.0, 1), (0.0, 2), (2.0, 4)):
        got = ls.decoded_latents(model, y, torch.tensor([t]))
        g, ig = torch.exp(lg[k])[None, :, None, None], torch.exp(lig[k])[None, :, None, None]
        with torch.no_grad():
            mean, _ = model.h_s(torch.round(model.h_a(y * g)))
            want = torch.round(y * g - mean) * ig + mean * ig
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def _image(seed: int, h: int = 128, w: int = 192) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.cos(xx / (5 + 2 * c) - yy / 9) for c in range(3)], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_train_resume_and_export_a_folder_sharing_the_encoder(tmp_path):
    """The photo, int8, latents, light-synthesis and light-synthesis-export commands in a row,
    tiny: the light task resumes its run and trains only the stages from the pruned one."""
    from click.testing import CliRunner

    from aecodec.export.cli import train
    from aecodec.export.onnx_export import export_model

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(_image(i)).save(photos / f"img{i}.png")
    torch.set_num_threads(2)

    def run(*args: str) -> str:
        r = CliRunner().invoke(train, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        return r.output

    run("photo", photos, "--out", tmp_path / "run", "--n", 8, "--m", 8, "--family",
        "hyperprior", "--steps", 2, "--batch", 2, "--crop", 64, "--no-bf16")
    weights = tmp_path / "run" / "weights.pt"
    run("int8", weights, photos, "--out", tmp_path / "int8", "--steps", 2, "--batch", 2,
        "--crop", 64, "--in-place")
    assert "int_synthesis" in torch.load(weights, weights_only=False)
    base = export_model(weights, tmp_path / "models" / "tiny", name="tiny")
    lat = tmp_path / "latents.npz"
    run("latents", lat, photos, "--model", base, "--max-side", 0, "--threads", 1)
    out = tmp_path / "light"
    light = ["light-synthesis", lat, photos, "--out", out, "--weights", weights, "--stage", 2,
             "--width", 4, "--steps", 5, "--batch", 2, "--crop", 6, "--base", base]
    run(*light, "--minutes", 0)  # a budget too short: one step (docs/training.md), then resumed
    first = torch.load(out / "checkpoint.pt", weights_only=False)
    run(*light)
    again = torch.load(out / "checkpoint.pt", weights_only=False)
    assert again["step"] == 5 and [r["start_step"] for r in again["record"]["runs"]] == [0, 1]
    st = torch.load(out / "light.pt", weights_only=False)
    assert st["record"]["iterations"] == 5 and st["widths"] == (8, 8, 4)
    assert not torch.equal(st["net"]["convs.2.weight"], first["model"]["convs.2.weight"])
    assert torch.equal(st["net"]["convs.0.weight"], first["model"]["convs.0.weight"])  # frozen

    folder = tmp_path / "models" / "tiny-light"
    run("light-synthesis-export", out / "light.pt", folder, "--base", base, "--name", "tiny-light")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "synthesis.onnx"]
    assert manifest["architecture"]["synthesis_widths"] == [8, 8, 4] or \
        manifest["architecture"]["synthesis_widths"] == (8, 8, 4)
    assert json.loads((folder / "manifest.json").read_text())["id"] == manifest["id"]
    img = _image(7, 80, 100)
    light, plain = aecodec.Codec(str(folder), threads=1), aecodec.Codec(str(base), threads=1)
    data = light.compress(img, quality=60)
    assert container.unpack(data)[1] == container.unpack(plain.compress(img, quality=60))[1]
    pixels = light.decompress(data)
    y_hat = light.decode_latents(data)["y_hat"]
    ref = IntReference((folder / "synthesis.onnx").read_bytes())(y_hat[None])[0]
    assert np.array_equal(pixels, ref.transpose(1, 2, 0)[:80, :100])


def test_shipped_fast_model_writes_the_base_models_payload():
    """hyperprior-fast shares 1.1.0's encoder: its golden stream's sections are byte for byte
    1.1.0's golden's (same rate), under its own id; only the pixels differ, slightly."""
    from pathlib import Path

    from aecodec.model import MODELS_DIR

    golden = Path(__file__).parent / "golden"
    if not (MODELS_DIR / "hyperprior-fast").is_dir():
        pytest.skip("hyperprior-fast not installed")
    hf, sf = container.unpack((golden / "hyperprior-fast.aec").read_bytes())
    hb, sb = container.unpack((golden / "hyperprior.aec").read_bytes())
    assert sf == sb and hf.model_id != hb.model_id
    a = np.asarray(Image.open(golden / "hyperprior-fast.png"), np.float64)
    b = np.asarray(Image.open(golden / "hyperprior.png"), np.float64)
    assert 0 < np.mean(np.abs(a - b)) < 2.0


def test_bench_results_without_speed_go_into_a_manifest():
    """An RD-only bench (`--repeats 0`, as results/kodak-fast) has no speed section: its
    curve and BD-rates still make a manifest entry, with the speed left empty."""
    from aecodec.bench.evaluate import results_from_bench

    point = {"setting": 1.0, "bpp": 0.1, "psnr": 25.0, "ms_ssim": 0.9}
    results = {"images": {"count": 24}, "curves": {"aecodec-m": [point]}, "speed": None,
               "bd": {"codecs": {"aecodec-m": {"bd_rate": -0.37, "bd_psnr": 2.2}}}}
    entry = results_from_bench(results, "m")
    assert entry is not None and entry["bd_rate_vs_jpeg"] == -0.37 and entry["images"] == 24
    assert entry["curve"] == [point] and entry["speed"]["dec_ms"] is None
    assert results_from_bench(results, "other") is None
