"""The browser decoder (web/) in headless Chromium: streams written by the Python encoder decode
to the same RGBA bytes as `aecodec.decompress`, and hostile streams are refused alike.

Needs Node, Chromium (/usr/bin/chromium, or $CHROMIUM) and web/node_modules (`npm ci` in
web/); skips saying which is missing. One Chromium run decodes every stream."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aecodec
from aecodec import errors
from aecodec.container import Header, crc8, crc_offset, pack
from aecodec.demo import SAMPLE

WEB = Path(__file__).resolve().parents[1] / "web"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "Node is not installed (apt-get install nodejs npm)"
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        return "web/node_modules is missing (cd web && npm ci)"
    return None


needs_browser = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def _rgba(pixels: np.ndarray) -> bytes:
    """The Python decoder's pixels (H x W, or x 2, 3, 4) as the RGBA bytes the web decoder
    returns."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    c = pixels.shape[2]
    color = pixels[:, :, :3] if c >= 3 else np.repeat(pixels[:, :, :1], 3, axis=2)
    alpha = pixels[:, :, -1:] if c in (2, 4) else np.full(pixels.shape[:2] + (1,), 255, np.uint8)
    return np.concatenate([color, alpha], axis=2).tobytes()


def _streams() -> dict[str, tuple[bytes, dict]]:
    """name -> (stream, options): the cases the issue lists, small enough for seconds."""
    photo = np.asarray(Image.open(SAMPLE).convert("RGB"))
    crop = photo[:96, :144]
    odd = photo[101:138, 17:70]  # 37 x 53
    out: dict[str, tuple[bytes, dict]] = {}
    fast = aecodec.Codec("hyperprior-fast")
    for q in (5.0, 50.0, 93.7):
        out[f"fast-q{q}"] = (fast.compress(crop, q), {})
    out["fast-odd"] = (fast.compress(odd, 63.3), {})
    out["hyperprior-q21.4"] = (aecodec.Codec("hyperprior").compress(odd, 21.4), {})
    tiled = aecodec.Codec("hyperprior-fast", tile=64, tile_above=0)
    out["fast-tiled"] = (tiled.compress(photo[:200, :300], 40), {})
    big = np.tile(photo, (2, 1, 1))[:832, :640]  # over 2^19 pixels: synthesis by squares
    out["fast-large"] = (fast.compress(big, 30), {})
    out["fast-gray"] = (fast.compress(np.asarray(Image.fromarray(crop).convert("L")), 45), {})
    out["factorized"] = (aecodec.Codec("factorized").compress(odd, 70), {})
    digit = (np.add.outer(np.arange(28), np.arange(28)) * 4 % 256).astype(np.uint8)
    digit[6:22, 12:16] = 255
    for name, q in (("mnist-rd", 60), ("mnist-conv", 40), ("mnist-dense", None)):
        codec = aecodec.Codec(name)
        out[name] = (codec.compress(digit) if q is None else codec.compress(digit, q), {})
    for name, q in (("mnist-rd", 60), ("mnist-dense", None)):
        codec = aecodec.Codec(name, profile="compact")
        out[f"{name}-compact"] = (codec.compress(digit) if q is None
                                  else codec.compress(digit, q), {})
    rgba = np.dstack([odd, (np.arange(37 * 53).reshape(37, 53) * 7 % 256).astype(np.uint8)])
    out["fast-alpha"] = (fast.compress(rgba, 50), {})
    la = np.dstack([np.asarray(Image.fromarray(odd).convert("L")), rgba[:, :, 3]])
    out["fast-gray-alpha"] = (fast.compress(la, 50), {})
    try:
        import torch  # noqa: F401

        from aecodec import effort

        steps = effort.STEPS[1]
        effort.STEPS[1] = 12  # a 12-step effort 1: the same decoder, seconds instead of minutes
        try:
            out["fast-effort1"] = (fast.compress(odd, 55, effort=1), {})
        finally:
            effort.STEPS[1] = steps
    except ImportError:
        pass
    # hostile: each must be refused as Python refuses it
    good = out["fast-q50.0"][0]
    flipped = bytearray(good)
    flipped[-3] ^= 0x10
    out["bad-crc"] = (bytes(flipped), {})
    out["bad-magic"] = (b"\xaa\xbb" + good[2:], {})
    out["bad-compact-crc"] = (b"\x40\x31\x00\x12", {})  # a compact header, damaged
    out["truncated"] = (good[:9], {})
    out["too-large"] = (fast.compress(crop, 50), {"max_pixels": 1000})
    compact = out["mnist-rd-compact"][0]
    head, payload = compact[:2], compact[3:] + b"\x00"  # a byte the symbols do not need
    out["compact-noncanonical"] = (head + bytes([crc8(payload, crc8(head) ^ 0xFF)]) + payload, {})
    out["context"] = (aecodec.Codec("hyperprior-ctx").compress(odd, 50), {})
    ctx_tiled = aecodec.Codec("hyperprior-ctx", tile=64, tile_above=0)
    out["context-tiled"] = (ctx_tiled.compress(photo[:96, :150], 71.5), {})
    fid = aecodec.Codec("hyperprior-fast").model.id
    # a huge image declared with a few bytes: refused before decoding (the cost per byte)
    out["too-few-bytes"] = (pack(Header(fid, 4000, 3000, False, 50.0),
                                 [b"\x05" * 20, b"\x07" * 4]), {})
    # an untiled stream over 16 MiP: refused, it cannot be decoded in bounded memory
    out["untiled-too-large"] = (pack(Header(fid, 5000, 4000, False, 50.0), [b"\x01"]), {})
    at = crc_offset(good)  # another model's id, the CRC made right: a model nobody holds
    other = good[:3] + bytes.fromhex("0badf00d") + good[7:at]
    out["unknown-model"] = (other + zlib.crc32(good[at + 4:], zlib.crc32(other)).to_bytes(
        4, "little") + good[at + 4:], {})
    return out


@pytest.fixture(scope="module")
def chromium_run(tmp_path_factory):
    from aecodec.cli import main

    base = tmp_path_factory.mktemp("web")
    models, streams = base / "models", base / "streams"
    streams.mkdir()
    from click.testing import CliRunner

    res = CliRunner().invoke(main, ["web-export", "all", str(models)])
    assert res.exit_code == 0, res.output
    cases = _streams()
    listing = []
    for name, (data, opts) in cases.items():
        (streams / f"{name}.aec").write_bytes(data)
        listing.append({"file": f"{name}.aec", **opts})
    (streams / "list.json").write_text(json.dumps(listing))
    run = subprocess.run(["node", str(WEB / "test" / "chromium.mjs"), str(streams), str(models)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    (Path(os.environ.get("AECODEC_WEB_TIMES", base)) / "web-times.json").write_text(
        json.dumps({k: v.get("ms") for k, v in out["results"].items()}))
    return cases, out


@needs_browser
def test_streams_decode_to_the_python_pixels(chromium_run):
    cases, out = chromium_run
    results = out["results"]
    same = 0
    for name, (data, opts) in cases.items():
        got = results[f"{name}.aec"]
        try:
            pixels = aecodec.decompress(data, max_pixels=opts.get("max_pixels"))
        except errors.AecodecError as e:
            assert got.get("error") == type(e).__name__, (name, got, str(e))
            if name == "unknown-model":  # the refusal names what the decoder holds
                assert "0badf00d" in got["message"] and "hyperprior-fast" in got["message"]
            continue
        assert "error" not in got, (name, got)
        assert (got["height"], got["width"]) == pixels.shape[:2], name
        assert got["sha256"] == hashlib.sha256(_rgba(pixels)).hexdigest(), name
        same += 1
    assert same >= 19, same


@pytest.mark.skipif(shutil.which("node") is None, reason="Node is not installed")
@pytest.mark.parametrize("name", ["hyperprior", "factorized", "mnist-rd-hq"])
def test_browser_gains_are_the_python_gains(name):
    """web/src/gains.js (BigInt, no Math.pow) gives the runtime's inverse gains bit for bit,
    the legacy deltas included, at qualities across the range."""
    from aecodec import legacy_gains

    model = aecodec.Codec(name).model
    qualities = [1.0, 1.1, 7.7, 12.3, 33.3, 50.0, 64.9, 77.7, 99.9, 100.0]
    legacy = legacy_gains.deltas(model.inv_gain)
    payload = {"levels": model.inv_gain.tolist(), "qualities": qualities,
               "legacy": None if legacy is None else legacy.ravel().tolist()}
    run = subprocess.run(["node", str(WEB / "test" / "gains.mjs")], input=json.dumps(payload),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    for q, row in zip(qualities, got, strict=True):
        want = [f"{v:016x}" for v in model.gains(q)[1].view(np.uint64)]
        assert row == want, q


@pytest.mark.skipif(shutil.which("node") is None
                    or not (WEB / "node_modules" / "onnxruntime-web").is_dir(),
                    reason="Node or web/node_modules (cd web && npm ci) is missing")
def test_node_command_writes_png_and_rgba(tmp_path):
    """`aec-decode MODELS in.aec out.png|out.rgba` under Node: the Python decoder's pixels;
    a damaged stream is one Error line, exit 1, and no output file."""
    from aecodec.model import Model, find
    from aecodec.web_export import export

    models = tmp_path / "models"
    export(Model(find("hyperprior-fast")), models)
    photo = np.asarray(Image.open(SAMPLE).convert("RGB"))[40:77, 60:113]
    data = aecodec.Codec("hyperprior-fast").compress(photo, 66.6)
    (tmp_path / "a.aec").write_bytes(data)
    want = aecodec.decompress(data)
    cli = [str(WEB / "bin" / "aec-decode.js"), str(models), str(tmp_path / "a.aec")]
    for out in ("a.png", "a.rgba"):
        r = subprocess.run(["node", *cli, str(tmp_path / out)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), want)
    assert (tmp_path / "a.rgba").read_bytes() == _rgba(want)
    bad = bytearray(data)
    bad[-1] ^= 1
    (tmp_path / "bad.aec").write_bytes(bytes(bad))
    r = subprocess.run(["node", str(WEB / "bin" / "aec-decode.js"), str(models),
                        str(tmp_path / "bad.aec"), str(tmp_path / "bad.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("Error:")
    assert "CorruptStreamError" in r.stderr and not (tmp_path / "bad.png").exists()


def test_web_export_writes_a_model_and_refuses_bad_input(tmp_path):
    """`aecodec web-export`: a model folder's files and its index entry (the tables' CDFs are
    constriction's); an unknown model is one Error line and writes nothing."""
    from click.testing import CliRunner

    from aecodec.cli import main
    from aecodec.entropy import TableSet
    from aecodec.web_export import constriction_cdf

    r = CliRunner().invoke(main, ["web-export", "mnist-rd", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    info = aecodec.Codec("mnist-rd").model.info
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index[info.id]["name"] == "mnist-rd" and index[info.id]["compact_index"] == 6
    meta = json.loads((tmp_path / "out" / info.id / "model.json").read_text())
    assert meta["id"] == info.id and meta["legacy"] == "legacy"
    # the CDF of a table reproduces constriction's own coding: a symbol stream coded by
    # constriction decodes through the exported CDF (the interval of each symbol matches)
    import constriction

    probs = TableSet(np.array([[0.5, 0.3, 0.15]]), np.array([3]), np.array([0]))._probs[0]
    cdf = constriction_cdf(probs)
    model = constriction.stream.model.Categorical(probs, perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(np.array([3], np.int32), model)
    (word,) = coder.get_compressed()
    assert cdf[3] <= int(word) % 2**24 < cdf[4]  # the one symbol's slot in the fixed-point CDF
    bad = CliRunner().invoke(main, ["web-export", "no-such-model", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and bad.output.startswith("Error:")
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
