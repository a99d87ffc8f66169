"""The stream profile is an object (container.FULL / COMPACT): it writes and reads the header,
rounds the quality and codes the latent sections; latent codecs list the profiles they code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import aecodec
from aecodec import container
from aecodec.errors import CorruptStreamError, ModelError
from aecodec.latent import LATENT_CODECS
from aecodec.latent.base import channel_index
from aecodec.tiles import TileGrid

GOLDEN = Path(__file__).parent / "golden"


def test_profile_objects_by_name_and_by_bytes():
    assert container.profile("full") is container.FULL
    assert container.profile("compact") is container.COMPACT
    assert container.profile(container.COMPACT) is container.COMPACT
    assert tuple(container.profile(n).name for n in container.PROFILES) == container.PROFILES
    with pytest.raises(ValueError, match="profile must be one of"):
        container.profile("tiny")
    for name in ("container-compact.bin", "container-compact-q.bin"):
        assert container.sniff((GOLDEN / name).read_bytes()) is container.COMPACT
    assert container.sniff((GOLDEN / "container-two.bin").read_bytes()) is container.FULL
    assert container.Header("b42bd675", profile="compact").stream_profile is container.COMPACT


@pytest.mark.parametrize("name", ["container-compact.bin", "container-compact-q.bin",
                                  "container-two.bin", "container-extras.bin"])
def test_profile_packs_what_it_reads(name):
    data = (GOLDEN / name).read_bytes()
    stream = container.parse(data)
    profile = stream.header.stream_profile
    assert profile is container.sniff(data)
    assert profile.pack(stream.header, stream.sections) == data
    assert profile.crc_offset(data) == container.crc_offset(data)


def test_profile_rounds_the_quality():
    assert container.FULL.quality(62.34) == 62.3
    assert container.COMPACT.quality(62.34) == 62.0
    assert container.FULL.carries("00000000")  # every model has a full profile
    assert container.COMPACT.carries("b42bd675") and not container.COMPACT.carries("00000000")


def test_profile_codes_the_sections():
    """FULL: ANS with its per-stream room check; COMPACT: the exact byte coder."""
    codec = aecodec.Codec("mnist-rd", threads=1)
    yt = codec.model.y_tables
    sym = np.arange(-3, len(yt) - 3, dtype=np.float64)
    idx = channel_index((len(yt), 1, 1))
    full, compact = container.FULL.encode(yt, sym, idx), container.COMPACT.encode(yt, sym, idx)
    assert full == yt.encode(sym, idx) and compact == yt.encode_bytes(sym, idx)
    assert np.array_equal(container.FULL.decode(yt, full, idx), sym)
    assert np.array_equal(container.COMPACT.decode(yt, compact, idx), sym)
    counts = np.full(len(yt), 1000)
    with pytest.raises(CorruptStreamError):
        container.FULL.check_room(yt, [full], counts)
    container.COMPACT.check_room(yt, [compact], counts)  # the byte coder checks for itself


class CountingProfile(container.FullProfile):
    """The full profile, counting the sections it codes: the latent codec must ask it."""

    name = "full"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def encode(self, tables, symbols, index):
        self.calls.append("encode")
        return super().encode(tables, symbols, index)

    def decode(self, tables, data, index):
        self.calls.append("decode")
        return super().decode(tables, data, index)


def test_latent_codec_consults_the_profile():
    codec = aecodec.Codec("mnist-rd", threads=1)
    m = codec.latent.channels
    y = np.linspace(-4, 4, m, dtype=np.float32).reshape(m, 1, 1)
    gain, inv = codec.model.gains(None)
    grid = TileGrid(1, 1)
    counting = CountingProfile()
    sections, _ = codec.latent.encode(y, gain, grid, counting)
    assert sections == codec.latent.encode(y, gain, grid, container.FULL)[0]
    compact, _ = codec.latent.encode(y, gain, grid, container.COMPACT)
    assert compact != sections
    y_hat, _ = codec.latent.decode(sections, grid, inv, profile=counting)
    assert counting.calls == ["encode", "decode"]
    assert np.array_equal(y_hat, codec.latent.decode(compact, grid, inv,
                                                      profile=container.COMPACT)[0])


def test_codec_profile_drives_both_profiles():
    digit = np.zeros((28, 28), np.uint8)
    digit[8:20, 12:16] = 255
    full, compact = (aecodec.Codec("mnist-rd", threads=1, profile=p) for p in container.PROFILES)
    assert full.stream_profile is container.FULL and compact.stream_profile is container.COMPACT
    a, b = full.compress(digit), compact.compress(digit)
    assert container.sniff(a) is container.FULL and container.sniff(b) is container.COMPACT
    assert np.array_equal(full.decompress(b), compact.decompress(a))


def test_families_declare_their_profiles():
    assert LATENT_CODECS["factorized"].profiles == ("full", "compact")
    for family in ("hyperprior", "context"):
        assert LATENT_CODECS[family].profiles == ("full",)


def test_family_without_compact_form_refuses_it(synth):
    codec = aecodec.Codec(str(synth["hyperprior"]))
    lat = codec.latent
    grid = TileGrid(2, 2)
    y = np.zeros((lat.channels, 2, 2), np.float32)
    gain, inv = codec.model.gains(None)
    with pytest.raises(ModelError, match="compact profile"):
        lat.encode(y, gain, grid, container.COMPACT)
    sections, _ = lat.encode(y, gain, grid)
    with pytest.raises(CorruptStreamError, match="compact profile has no hyperprior"):
        lat.decode(sections, grid, inv, profile=container.COMPACT)
