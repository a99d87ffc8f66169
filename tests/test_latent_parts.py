"""Each latent codec declares and loads its own files; the hyperprior composes a z-codec, the
integer hyper-decoder and a y-codec, and the context model is a y-codec plugged into it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import aecodec
from aecodec import latent, model
from aecodec.errors import ModelError
from aecodec.latent import (
    LATENT_CODECS,
    ChannelCodec,
    ContextCodec,
    ContextYCodec,
    GaussianCodec,
    HyperDecoder,
    HyperpriorCodec,
)

GOLDEN = Path(__file__).parent / "golden"
BASE = {"analysis.onnx", "synthesis.onnx", "tables.npz"}


def test_families_declare_their_files():
    """The same files model.py's per-family tables listed before they moved here."""
    assert set(LATENT_CODECS["factorized"].files()) == BASE
    assert set(LATENT_CODECS["hyperprior"].files()) == BASE | {"hyper_analysis.onnx",
                                                              "hyper_synthesis.npz"}
    assert set(LATENT_CODECS["context"].files()) == BASE | {"hyper_analysis.onnx",
                                                           "hyper_synthesis.npz", "context.npz"}
    # the transform families' latent codecs, then the overfit family's (no transforms)
    assert model.FAMILIES == (*LATENT_CODECS, "overfit")
    assert set(model.LATENT_CODECS["overfit"].files()) == {"arch.json", "tables.npz"}
    assert not hasattr(model, "GRAPHS") and not hasattr(model, "NETS")


def test_a_declared_file_the_manifest_lacks_is_named(synth, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(synth["hyperprior"], folder)
    m = json.loads((folder / "manifest.json").read_text())
    m["files"].pop("hyper_synthesis.npz")
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="does not list \\['hyper_synthesis.npz'\\]"):
        aecodec.Model(folder)


def test_hyperprior_composes_its_parts(synth):
    m = aecodec.Model(synth["hyperprior"])
    lat = m.latent
    assert type(lat) is HyperpriorCodec and latent.for_model(m) is lat
    assert isinstance(lat.z, ChannelCodec) and lat.z.name == "z"
    assert isinstance(lat.hyper, HyperDecoder) and isinstance(lat.y, GaussianCodec)
    # where callers look for them: the latent codec's own parts, loaded once per model
    assert m.z_tables is lat.z.tables and m.y_tables is lat.y.tables and m.net is lat.hyper.net
    assert aecodec.Codec(m).latent is aecodec.Codec(m).latent
    factorized = aecodec.Model(synth["factorized"]).latent
    assert isinstance(factorized.y, ChannelCodec) and factorized.y.name == "y"


def test_context_codec_is_the_hyperprior_with_a_y_codec():
    """ContextCodec overrides nothing: it only names its y-codec."""
    own = {k for k in vars(ContextCodec) if not k.startswith("_")}
    assert own == {"family", "y_codec"} and ContextCodec.y_codec is ContextYCodec


def test_context_y_codec_plugs_into_a_plain_hyperprior():
    """The golden context stream decodes the same through a HyperpriorCodec given the
    context y-codec as through the registered ContextCodec."""
    try:
        m = aecodec.Model(model.find("hyperprior-ctx"), threads=1)
    except aecodec.UnknownModelError:
        pytest.skip("hyperprior-ctx is not installed")
    codec = aecodec.Codec(m)
    assert type(codec.latent) is ContextCodec and isinstance(codec.latent.y, ContextYCodec)
    data = (GOLDEN / "hyperprior-ctx.aec").read_bytes()
    ref = codec.decode_latents(data)
    codec.latent = HyperpriorCodec(m, y_codec=ContextYCodec(m))
    got = codec.decode_latents(data)
    assert set(got) == set(ref)
    for key in ref:
        assert np.array_equal(got[key], ref[key]), key
