"""Cross-runtime decoding: a stream written under one runtime configuration decodes to the same
pixels under every other.

Every Kodak image at three qualities is encoded (ONNX Runtime, 1 thread, no graph
optimisations) and decoded under other configurations. Asserted on all 72 streams:

- the entropy path: z and y symbols, means and scale indices, and the synthesis input y_hat
  are bit-identical whatever the decoder's configuration (tables + the integer hyper-decoder),
  and the decoder consumes each section exactly (re-coding its symbols gives the same bytes);
- the pixels: identical under ONNX Runtime with 1 and 2 threads, and to the synthesis graph as
  the model file has it (the runtime runs a faster equivalent built at load time,
  codec/fast_synthesis.py), at one quality per image in turn; and, per image, under one
  more configuration in turn (graph optimisations none, basic or extended, the independent
  torch reference of the 8-bit synthesis, the CUDA execution provider where one exists), so
  that each configuration meets every quality. The default model's synthesis is the exact
  8-bit network (docs/model-format.md): integer sums and IEEE elementwise steps only.
"""

from __future__ import annotations

import numpy as np
import pytest

from aecodec import container
from aecodec.codec import Codec
from aecodec.imageio import read_image
from aecodec.latent.base import channel_index
from aecodec.model import Model, find

QUALITIES = (10, 50, 90)


@pytest.fixture(scope="module")
def codecs() -> dict[str, Codec]:
    out = {
        "encoder": Codec(threads=1, graph_optimization="none"),
        "2 threads": Codec(threads=2),
        "1 thread": Codec(threads=1),
        "no optimisation": Codec(threads=2, graph_optimization="none"),
        "basic optimisation, 1 thread": Codec(threads=1, graph_optimization="basic"),
        "extended optimisation": Codec(threads=2, graph_optimization="extended"),
        "file graph": Codec(Model(find(None), threads=2, rewrite=False)),
    }
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        out["cuda"] = Codec(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    return out


@pytest.fixture(scope="module")
def torch_reference(codecs):
    """The torch implementation of the shipped 8-bit synthesis graph, or None without torch."""
    try:
        import torch

        from aecodec.export.int_reference import IntReference
    except ImportError:
        return None
    torch.set_num_threads(2)
    return IntReference(codecs["2 threads"].model.file("synthesis.onnx").read_bytes())


def _recode(codec: Codec, lat: dict[str, np.ndarray]) -> list[bytes]:
    model = codec.model
    z, y = lat["z_sym"], lat["y_sym"]
    return [model.z_tables.encode(z.ravel(), channel_index(z.shape)),
            model.y_tables.encode(y.ravel(), lat["index"].ravel())]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(24))
def test_kodak_decodes_identically_across_runtimes(kodak, codecs, torch_reference, index):
    image = read_image(kodak[index])
    h, w = image.shape[:2]
    enc = codecs["encoder"]
    a, gray = enc.prepare(image)
    y = enc.analyse(a)  # once per image; each quality only quantizes and codes
    others = [k for k in codecs if k not in ("encoder", "2 threads", "1 thread", "file graph")]
    if torch_reference is not None:
        others.append("torch")
    for qi, quality in enumerate(QUALITIES):
        data = enc.code(y, h, w, gray, quality).data
        _, sections = container.unpack(data)
        ref = codecs["2 threads"].decode_latents(data)
        if qi == 0:  # the entropy path runs no ONNX: identical under any configuration
            lat = codecs["1 thread"].decode_latents(data)
            for key in ("z_sym", "y_sym", "mean", "index", "y_hat"):
                assert np.array_equal(ref[key], lat[key]), key
        assert _recode(enc, ref) == sections  # every byte consumed, none left over
        # decompress() is decode_latents + synthesize, as tests/test_robust.py checks
        pixels = codecs["2 threads"].synthesize(ref["y_hat"], h, w)
        assert np.array_equal(pixels, codecs["1 thread"].synthesize(ref["y_hat"], h, w))
        if qi == index % len(QUALITIES):
            assert np.array_equal(pixels, codecs["file graph"].synthesize(ref["y_hat"], h, w))
        if qi != (index // len(others)) % len(QUALITIES):
            continue
        other = others[index % len(others)]
        if other == "torch":
            alt = torch_reference(ref["y_hat"][None])[0].transpose(1, 2, 0)[:h, :w]
        else:
            alt = codecs[other].synthesize(ref["y_hat"], h, w)
        assert np.array_equal(alt, pixels), (other, quality)


@pytest.mark.parametrize("index", [2, 14, 22])
def test_effort_streams_decode_identically_across_runtimes(kodak, codecs, torch_reference,
                                                           index, monkeypatch):
    """A stream whose latents the encoder optimised (effort 1, docs/effort.md) is a stream
    like any other: the same pixels under every configuration and the torch reference."""
    pytest.importorskip("torch")
    from aecodec import effort

    monkeypatch.setitem(effort.STEPS, 1, 6)  # a few steps: the symbols move all the same
    image = read_image(kodak[index])[:256, :256]
    enc = codecs["encoder"]
    data = enc.compress(image, 50, effort=1)
    assert data != enc.compress(image, 50)  # the optimisation was kept
    ref = codecs["2 threads"].decode_latents(data)
    pixels = codecs["2 threads"].synthesize(ref["y_hat"], 256, 256)
    for name, c in codecs.items():
        assert np.array_equal(c.decompress(data), pixels), name
    if torch_reference is not None:
        alt = torch_reference(ref["y_hat"][None])[0].transpose(1, 2, 0)[:256, :256]
        assert np.array_equal(alt, pixels)
