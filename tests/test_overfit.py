"""The overfit family: per-image training, exact torch-free decoding, the stream's checks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import aecodec
from aecodec import container
from aecodec.errors import AecodecError, CorruptStreamError

torch = pytest.importorskip("torch")

STEPS = 40  # enough to leave the initial state; the RD figures come from the bench


def _image(h: int = 24, w: int = 40, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([120 + 80 * np.sin(x / 5), 90 + 60 * np.cos(y / 4), 60 + x + y], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def codec():
    return aecodec.Codec("overfit")


@pytest.fixture(scope="module")
def fitted(codec):
    img = _image()
    return img, codec.pipeline.fit(img, 60.0, 0, steps=STEPS)


def _stream(codec, img, res, gray=False) -> bytes:
    h, w = img.shape[:2]
    header = container.Header(codec.model.id, w, h, gray, 60.0, tile=None, extras=(),
                              profile="full")
    return container.pack(header, res.sections)


def test_round_trip_is_exact_and_matches_the_encoder(codec, fitted):
    img, res = fitted
    data = _stream(codec, img, res)
    out = aecodec.decompress(data)  # found by the model id, like any stream
    assert out.shape == img.shape and np.array_equal(out, res.pixels)
    assert aecodec.stream_info(data)["model"] == "overfit"
    # trained, not the initial grey: far closer to the image than a flat mean would be
    mse = np.mean((out.astype(float) - img) ** 2)
    assert mse < np.mean((img.astype(float) - img.mean(axis=(0, 1))) ** 2) / 2


def test_same_seed_same_bytes_other_seed_other_bytes(codec):
    img = _image(16, 24)
    a = codec.pipeline.fit(img, 50.0, 0, steps=10, seed=3).sections
    b = codec.pipeline.fit(img, 50.0, 0, steps=10, seed=3).sections
    c = codec.pipeline.fit(img, 50.0, 0, steps=10, seed=4).sections
    assert a == b and a != c


def test_fixed_point_decoder_equals_exact_rationals(codec, fitted):
    """The float64 fixed-point decoder against a Fraction reference (tests/overfit_reference)."""
    import overfit_reference as ref

    from aecodec.overfit import latents, params

    img, res = fitted
    h, w = img.shape[:2]
    arch = codec.pipeline.arch
    q = params.unpack(arch, res.sections[0])
    p = params.dequantize(q)
    grids = latents.decode(p, res.sections[1], h, w, arch, codec.pipeline.family.tables)
    lay = latents.Layout(h, w, arch.grids)
    buf = np.zeros(lay.size)
    buf[lay.pos] = np.concatenate([g.reshape(-1) for g in grids])
    m0, table = latents.arm(p, lay.context(buf, np.arange(lay.count)), arch)
    rp = ref.params(q)
    start = 0
    for g in grids:
        gl = g.tolist()
        for i in range(g.size):
            y, x = divmod(i, g.shape[1])
            assert ref.arm_at(rp, gl, y, x, arch) == (m0[start + i], table[start + i])
        start += g.size
    small = [g[: -(-8 // 2**k), : -(-10 // 2**k)] for k, g in enumerate(grids)]
    from aecodec.overfit.synthesis import synthesize

    assert synthesize(p, small, arch).tolist() == ref.synthesize(rp, [g.tolist() for g in small],
                                                                 arch)


def test_decode_is_the_same_on_any_thread_count(codec, fitted, tmp_path):
    img, res = fitted
    path = tmp_path / "s.aec"
    path.write_bytes(_stream(codec, img, res))
    code = ("import sys, hashlib, aecodec; "
            "print(hashlib.sha256(aecodec.decompress(sys.argv[1]).tobytes()).hexdigest())")
    digests = set()
    for threads in ("1", "3"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True,
                             capture_output=True, text=True)
        digests.add(out.stdout.strip())
    import hashlib

    assert digests == {hashlib.sha256(res.pixels.tobytes()).hexdigest()}


def test_encode_never_worse_than_the_default_model(codec, monkeypatch):
    """With too few steps to train, the API gives the default model's stream (lower RD cost)."""
    from aecodec.overfit import family

    monkeypatch.setitem(family.STEPS, 0, 2)
    img = _image(32, 48)
    enc = codec.encode(img, quality=60)
    info = aecodec.stream_info(enc.data)
    assert info["model"] == aecodec.Codec().model.name  # 2 steps cannot beat it
    assert aecodec.decompress(enc.data).shape == img.shape
    # the codec that wrote it decodes it too, whichever model's stream it chose
    assert np.array_equal(codec.decompress(enc.data), aecodec.decompress(enc.data))


def test_hostile_streams_are_refused_cleanly(codec, fitted):
    img, res = fitted
    data = _stream(codec, img, res)
    rng = np.random.default_rng(0)
    params_, lat = res.sections
    cases = [
        [params_[:10], lat], [params_, lat[:-3]], [params_ + b"\x01", lat],
        [params_, lat + b"\x07"], [params_], [params_, lat, lat], [bytes([99]) + params_[1:], lat],
    ]
    for _ in range(60):
        which = rng.integers(2)
        s = bytearray(res.sections[which])
        s[rng.integers(len(s))] ^= 1 << int(rng.integers(8))
        cases.append([bytes(s), lat] if which == 0 else [params_, bytes(s)])
    h, w = img.shape[:2]
    for sections in cases:
        try:
            out = codec.pipeline.decode_sections(sections, h, w, False)
        except AecodecError:
            continue
        assert out.shape == (h, w, 3)  # a flip the format cannot see decodes to some image
    # a huge declared size with a few bytes: refused before the work, not decoded
    header = container.Header(codec.model.id, 4000, 4000, False, 60.0, tile=None, extras=(),
                              profile="full")
    with pytest.raises(CorruptStreamError):
        aecodec.decompress(container.pack(header, res.sections))
    assert aecodec.decompress(data).shape == img.shape


def test_overfit_model_folder_holds_no_weights_and_its_rules_are_hashed():
    info = aecodec.model.find("overfit")
    assert sorted(info.manifest["files"]) == ["arch.json", "tables.npz"]
    assert info.family == "overfit" and info.channels == 3


def test_cli_pillow_and_device(tmp_path, monkeypatch):
    """The family is served like any model: the CLI, Pillow; a device torch cannot use is one
    Error line, exit 1, no output."""
    from click.testing import CliRunner
    from PIL import Image

    from aecodec.cli import main
    from aecodec.overfit import family

    monkeypatch.setitem(family.STEPS, 0, 3)
    monkeypatch.setenv("AECODEC_DEVICE", "cpu")  # undone at teardown, whatever --device sets
    src = tmp_path / "in.png"
    Image.fromarray(_image(24, 32)).save(src)
    run = CliRunner().invoke
    r = run(main, ["compress", str(src), "--model", "overfit", "-o", str(tmp_path / "a.aec")])
    assert r.exit_code == 0, r.output
    r = run(main, ["decompress", str(tmp_path / "a.aec"), "-o", str(tmp_path / "a.png")])
    assert r.exit_code == 0 and Image.open(tmp_path / "a.png").size == (32, 24)
    r = run(main, ["compress", str(src), "--model", "overfit", "--device", "cuda:7",
                   "-o", str(tmp_path / "b.aec")])
    assert r.exit_code == 1 and "cuda:7" in r.output and not (tmp_path / "b.aec").exists()
    monkeypatch.setenv("AECODEC_DEVICE", "cpu")
    Image.open(src).save(tmp_path / "c.aec", model="overfit", quality=50)
    assert Image.open(tmp_path / "c.aec").size == (32, 24)


def test_golden_stream_decodes_to_the_same_pixels_everywhere():
    """A committed stream of the family: its pixels are pinned (the decoder is exact, so any
    machine gives this hash, and a change of the decoding rules shows here)."""
    import hashlib
    import json
    from pathlib import Path

    golden = Path(__file__).parent / "golden"
    meta = json.loads((golden / "overfit.json").read_text())
    assert meta["id"] == aecodec.model.find("overfit").id
    px = aecodec.decompress((golden / "overfit.aec").read_bytes())
    assert hashlib.sha256(px.tobytes()).hexdigest() == meta["pixels_sha256"]


def test_fused_training_terms_equal_the_plain_modules():
    """The step's fast path (hand-written band gradients) computes what autograd through the
    plain modules does: the same bits, errors and gradients, band boundaries included."""
    import json

    from aecodec.overfit import fit, fused
    from aecodec.overfit.arch import Arch, grid_shapes

    arch = Arch.from_manifest({"architecture": json.loads(
        aecodec.Codec("overfit").model.blob("arch.json"))})
    gen = torch.Generator().manual_seed(5)
    net = fit.Net(arch, gen)
    with torch.no_grad():  # every layer active (the zero-initialised ones too)
        for t in net.parameters():
            t.add_(torch.randn(t.shape, generator=gen) * 0.2)
    img = _image(37, 53)
    x = fit._target(img, "cpu")
    grids = [(torch.randn(1, 1, h, w, generator=gen) * 2).requires_grad_(True)
             for h, w in grid_shapes(37, 53, arch.grids)]
    old = fused.ARM_BAND, fused.SYN_BAND
    fused.ARM_BAND, fused.SYN_BAND = 64, 200  # many bands, ragged last ones
    try:
        bits, sse = net.fused_terms(grids, x)
        fast = torch.autograd.grad(bits + 1e-3 * sse, [*grids, *net.parameters()])
    finally:
        fused.ARM_BAND, fused.SYN_BAND = old
    plain_bits = net.bits(grids)
    plain_sse = ((net.synthesis(net.upsample(grids)) - x) ** 2).sum()
    plain = torch.autograd.grad(plain_bits + 1e-3 * plain_sse, [*grids, *net.parameters()])
    assert float(bits.detach()) == pytest.approx(float(plain_bits.detach()), rel=1e-5)
    assert float(sse.detach()) == pytest.approx(float(plain_sse.detach()), rel=1e-5)
    for a, b in zip(fast, plain, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()) + 1e-7)


def test_hand_written_laplace_gradient_equals_autograd():
    """`laplace_bits_grad` on values that reach every branch: either side of |y - mu| = 1/2,
    log-scales past both clamps, probabilities under the floor."""
    from aecodec.overfit import fused

    gen = torch.Generator().manual_seed(3)
    y = torch.cat([torch.randn(4000, generator=gen) * 3, torch.tensor([0.5, 0.0, 40.0])])
    mu = torch.cat([torch.randn(4000, generator=gen), torch.tensor([0.0, 0.0, 0.0])])
    ls = torch.cat([torch.randn(4000, generator=gen) * 4, torch.tensor([0.0, -1.0, -4.0])])
    lo, hi = -4.5, 3.5
    v = [t.clone().requires_grad_(True) for t in (y, mu, ls)]
    ref = fused.laplace_bits(*v, lo, hi)
    grads = torch.autograd.grad(ref, v)
    bits, *mine = fused.laplace_bits_grad(y, mu, ls, lo, hi)
    assert float(bits) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert bool((ls < lo).any() and (ls > hi).any())
    for a, b in zip(mine, grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
