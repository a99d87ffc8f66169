"""Exact gains: the gains a quality selects are the same bits on every machine (no libm on the
decode path), and the shipped models' streams decode with the inverse gains of every earlier
release (docs/format.md, *Quality*)."""

from __future__ import annotations

import json
import math
import random
import sys
from decimal import Decimal, localcontext
from pathlib import Path

import numpy as np
import pytest

import aecodec
from aecodec import legacy_gains, rate
from aecodec.exact_pow import pow_exact

GOLDEN = Path(__file__).parent / "golden"
SHIPPED = {i.name: i for i in aecodec.models()}
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="no shipped models installed")


def decimal_pow(x: float, a: float) -> float:
    """x ** a by another implementation: Python's decimal module at 60 digits (exactly
    rounded ln and exp, no libm), rounded once to float64."""
    if a == 0:
        return 1.0
    with localcontext() as ctx:
        ctx.prec = 60
        return float((Decimal(a) * Decimal(x).ln()).exp())


def test_pow_exact_equals_an_independent_implementation():
    rng = random.Random(7)
    xs = [rng.uniform(0.01, 300.0) for _ in range(300)] + [0.5, 1.0, 2.0, 1e-3, 123.456]
    for x in xs:
        a = rng.random()
        assert pow_exact(x, a) == decimal_pow(x, a), (x, a)
        assert pow_exact(x, 1.0) == x and pow_exact(x, 0.0) == 1.0


@needs_shipped
@pytest.mark.parametrize("name", ["hyperprior", "mnist-rd"])
def test_gains_equal_another_implementations_at_every_quality(name):
    """The interpolation through decimal instead of pow_exact: the same bits, so a decoder
    with any other exactly rounded power (the browser's BigInt one) gets the same latents."""
    inv = aecodec.Codec(name).model.inv_gain
    for code in range(0, 991, 37):
        q = (code + 10) / 10
        i, a = rate.position(len(inv), q)
        other = [decimal_pow(x, 1 - a) * decimal_pow(y, a)
                 for x, y in zip(inv[i], inv[i + 1], strict=True)]
        assert np.array_equal(rate.at_quality(inv, q), np.asarray(other)), q


@needs_shipped
def test_shipped_inverse_gains_are_those_of_earlier_releases():
    """At sampled recordable qualities, every variable-rate shipped model's inverse gains are
    bit for bit those the releases before exact gains decoded with (numpy's power, hashed
    by tests/golden/make_legacy_gains.py): every stream they wrote decodes as it did."""
    sys.path.insert(0, str(GOLDEN))
    import make_legacy_gains

    want = json.loads((GOLDEN / "legacy-gains.json").read_text())
    for name, digest in want.items():
        if name not in SHIPPED:
            continue
        model = aecodec.Codec(name).model
        codes = [*make_legacy_gains.SAMPLE, legacy_gains.CODES - 1]
        assert make_legacy_gains.digest([model.gains((c + 10) / 10)[1] for c in codes]) \
            == digest, name
    # every shipped model with gains per level (the overfit family has none: its decoder
    # reads no gain, its ones only count its levels)
    assert {n for n, i in SHIPPED.items() if len(aecodec.Codec(i).model.gain) > 1
            and i.family != "overfit"} <= set(want)


def _off_by_one_ulp(fn):
    def perturbed(*args, **kwargs):
        out = fn(*args, **kwargs)
        return np.nextafter(out, np.inf) if isinstance(out, np.ndarray | np.floating) \
            else math.nextafter(out, math.inf)
    return perturbed


@needs_shipped
@pytest.mark.parametrize("name,quality", [("hyperprior", 37.3), ("factorized", 81.0),
                                          ("mnist-rd", 44.4)])
def test_latents_do_not_depend_on_the_maths_library(monkeypatch, name, quality):
    """Decoding with every transcendental of numpy and math one ULP off, as another libm may
    round them: the same gains, latents (y_hat) and pixels."""
    info = SHIPPED[name]
    size = info.fixed_size or (48, 80)
    rng = np.random.default_rng(3)
    shape = (*size, 3) if info.channels == 3 else size
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    data = aecodec.Codec(name).compress(image, quality)
    ref = aecodec.Codec(name, threads=1)
    want = ref.decode_latents(data)["y_hat"]
    ref_pixels = ref.decompress(data)
    ref_inv = ref.model.gains(quality)[1]
    lo, hi = ref.model.inv_gain[:2]
    old_way = np.power(lo, 0.3) * np.power(hi, 0.7)  # the interpolation as numpy's power
    for mod, names in ((np, ["power", "float_power", "exp", "exp2", "log", "log2", "expm1",
                             "log1p"]),
                       (math, ["pow", "exp", "exp2", "log", "log2", "expm1", "log1p"])):
        for fn in names:
            monkeypatch.setattr(mod, fn, _off_by_one_ulp(getattr(mod, fn)))
    other = aecodec.Codec(name, threads=1)
    assert np.array_equal(other.model.gains(quality)[1], ref_inv)
    assert np.array_equal(other.decompress(data), ref_pixels)
    assert np.array_equal(other.decode_latents(data)["y_hat"], want)
    # the perturbation is live: the old interpolation, spelled with np.power, moves
    assert not np.array_equal(np.power(lo, 0.3) * np.power(hi, 0.7), old_way)
