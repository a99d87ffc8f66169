"""The torch side: the six architectures, a short training run, and the exporter's model folder
(ONNX parity, tables at integer points, manifest hashes) read back by the runtime."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

import aecodec  # noqa: E402
from aecodec.export.mnist.exporter import export_model, integer_tables  # noqa: E402
from aecodec.export.mnist.models import (  # noqa: E402
    DESCRIPTIONS,
    MODEL_NAMES,
    MnistCodec,
    describe,
)


@pytest.mark.parametrize("kind", MODEL_NAMES)
def test_shapes_and_training_forward(kind):
    torch.manual_seed(0)
    m = MnistCodec(kind, latent=8, levels=3)
    x = torch.rand(4, 1, 28, 28)
    x_hat, bits, y, extra = m(x, torch.tensor([0, 1, 2, 0]))
    assert x_hat.shape == (4, 1, 28, 28) and bits.shape == (4,) and y.shape == (4, 8)
    assert (x_hat >= 0).all() and (x_hat <= 1).all() and (bits > 0).all()
    (bits.mean() + x_hat.mean()).backward()
    assert m.log_gain.grad is not None
    g, ig = m.gains()
    assert g.shape == (3, 8) and torch.all(g[1:] > g[:-1])  # level 0 = lowest rate
    if kind == "vae":
        assert m.sample(3).shape == (3, 1, 28, 28) and "kl" in extra


def test_integer_tables_are_the_density():
    torch.manual_seed(0)
    m = MnistCodec("dense", latent=4, levels=2)
    t = integer_tables(m)
    pmf = m.density.integer_pmf(400)
    for c in range(4):
        n, off = int(t["y_len"][c]), int(t["y_offset"][c])
        np.testing.assert_allclose(t["y_pmf"][c, :n], pmf[c, off + 400 : off + 400 + n])
        assert 1 - 1e-6 < t["y_pmf"][c].sum() <= 1 + 1e-9
    # the likelihood used in training is the same mass at integer points
    sym = torch.tensor([[0.0, 1.0, -2.0, 3.0]])
    lik = m.density.likelihood(sym)[0].detach().double().numpy()
    np.testing.assert_allclose(lik, [pmf[c, int(sym[0, c]) + 400] for c in range(4)], rtol=1e-4)


def test_export_folder_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = MnistCodec("dense", latent=8, levels=3)
    check = torch.rand(3, 1, 28, 28)
    man = export_model(m, tmp_path / "mnist-test", record={"lambdas": [1, 2, 3]}, check=check)
    folder = tmp_path / "mnist-test"
    par = man["training"]["onnx_parity"]
    assert par["analysis_max_abs"] < 1e-4 and par["synthesis_max_abs"] < 1e-4
    for name, digest in man["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["id"] == man["id"] == man["sha256"][:8]
    assert on_disk["image"] == {"channels": 1, "pad_multiple": 1, "fixed_size": [28, 28]}
    c = aecodec.Codec(str(folder), threads=1)
    assert c.model.id == man["id"]
    d = (check[0, 0].numpy() * 255).astype(np.uint8)
    for q in (1, 100):
        out = c.decompress(c.compress(d, quality=q))
        # the runtime reconstructs exactly what the torch model does with rounded latents
        g, ig = c.model.gains(q)
        with torch.no_grad():
            x = torch.from_numpy(d.astype(np.float32) / 255)[None, None]
            sym = np.rint(m.encode(x).numpy()[0] * g)
            ref = m.decode(torch.from_numpy((sym * ig).astype(np.float32))[None]).numpy()
        assert np.abs(out.astype(int) - np.rint(ref[0, 0] * 255)).max() <= 1


def test_rd_capacity_is_a_parameter(tmp_path):
    """One rd architecture serves mnist-rd and mnist-rd-hq: the widths change the layers and
    the description, the default keeps mnist-rd's, and a checkpoint brings its widths back."""
    from aecodec.export.tasks.mnist import load_model

    assert describe(MnistCodec("rd", latent=64, levels=9)) == DESCRIPTIONS["rd"]
    torch.manual_seed(0)
    m = MnistCodec("rd", latent=8, levels=3, width=(8, 12))
    assert [m.encoder[i].out_channels for i in (0, 2, 4)] == [8, 12, 12]
    assert m.decoder[-2].in_channels == 8 and "8/12/12" in describe(m)
    assert "8 latents" in describe(m)
    rec = {"kind": "rd", "latent": 8, "levels": 3, "width": [8, 12]}
    torch.save({"state_dict": m.state_dict(), "record": rec}, tmp_path / "r.pt")
    back = load_model(tmp_path / "r.pt")  # the trainer's format before the loop
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(back.decode(back.encode(x)), m.eval().decode(m.encode(x)))


def test_recipes_match_their_shipped_folders():
    """Each recipe is that of a shipped mnist-<key>: same latents and lambdas, and its widths
    are the ones in the manifest's training record."""
    from aecodec.export.mnist.recipes import MODELS
    from aecodec.model import find

    assert MODELS["rd"]["latent"] == 64
    for key, spec in MODELS.items():
        try:
            info = find(f"mnist-{key}")
        except aecodec.UnknownModelError:
            pytest.skip(f"mnist-{key} not shipped")
        man = info.manifest
        assert man["latent"]["channels"] == spec.get("latent", 32)
        assert man["rate"]["lambdas"] == list(spec.get("lambdas", (2.0, 4.0, 8.0, 16.0, 32.0)))
        assert man["training"]["kind"] == spec["kind"]
        assert man["training"].get("width", [32, 48]) == list(spec.get("width", (32, 48)))
