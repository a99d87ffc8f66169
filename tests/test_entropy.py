"""The table coder: exact round trips (escapes included), strict decoding, estimates, goldens."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aecodec.entropy import MAX_ABS, TableSet
from aecodec.errors import AecodecError, CorruptStreamError, ModelError

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402


def laplace_set(t: int = 6, half: int = 20, leak: float = 1e-4) -> TableSet:
    x = np.arange(-half, half + 1, dtype=np.float64)
    pmf = np.exp(-np.abs(x)[None] / np.geomspace(0.3, 8, t)[:, None])
    pmf = pmf / pmf.sum(axis=1, keepdims=True) * (1 - leak)
    return TableSet(pmf, np.full(t, 2 * half + 1), np.full(t, -half))


def test_golden_entropy_bytes():
    tables, sym, idx = make_golden.entropy_case()
    data = tables.encode(sym, idx)
    assert data == (GOLDEN / "entropy.bin").read_bytes(), "coded bytes changed (constriction?)"
    assert np.array_equal(tables.decode(data, idx), sym)


def test_round_trip_with_escapes_on_both_sides():
    ts = laplace_set()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ts), 20000)
    sym = np.rint(rng.laplace(0, 3, idx.size)).astype(np.int64)
    sym[:8] = [21, -21, 22, -22, 1000, -1000, MAX_ABS, -MAX_ABS]
    data = ts.encode(sym, idx)
    assert np.array_equal(ts.decode(data, idx), sym)


def test_empty_and_single():
    ts = laplace_set()
    assert ts.encode(np.zeros(0), np.zeros(0)) == b""
    assert ts.decode(b"", np.zeros(0, np.int64)).size == 0
    for v in (0, 20, 21, -5000):
        data = ts.encode(np.array([v]), np.array([3]))
        assert ts.decode(data, np.array([3])).tolist() == [v]


def test_estimate_matches_coded_size():
    ts = laplace_set()
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(ts), 100000)
    sym = np.rint(rng.laplace(0, 2, idx.size)).astype(np.int64)
    sym[::1000] = 50  # escapes count in the estimate too
    bits = len(ts.encode(sym, idx)) * 8
    est = ts.estimate_bits(sym, idx)
    assert abs(bits - est) <= 0.01 * est + 64


def test_values_beyond_the_bypass_range_are_refused():
    with pytest.raises(AecodecError):
        laplace_set().encode(np.array([2**31]), np.array([0]))


def test_strict_decoding():
    ts = laplace_set()
    idx = np.arange(600) % len(ts)
    sym = (np.arange(600) % 7) - 3
    data = ts.encode(sym, idx)
    with pytest.raises(CorruptStreamError):  # symbols left over
        ts.decode(data, idx[:300])
    with pytest.raises(CorruptStreamError):  # non-canonical trailing zero
        ts.decode(data + b"\0", idx)
    with pytest.raises(CorruptStreamError):
        ts.decode(data, np.full(600, len(ts)))


def test_bad_tables_are_model_errors():
    with pytest.raises(ModelError):
        TableSet(np.full((2, 4), -1.0), np.full(2, 4), np.zeros(2))
    with pytest.raises(ModelError):
        TableSet(np.full((2, 4), 0.25), np.full(2, 5), np.zeros(2))


def test_speed_300k_symbols():
    ts = laplace_set(t=64)
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 64, 300_000)
    sym = np.rint(rng.laplace(0, 2, idx.size)).astype(np.int64)
    t0 = time.perf_counter()
    data = ts.encode(sym, idx)
    out = ts.decode(data, idx)
    assert np.array_equal(out, sym)
    assert time.perf_counter() - t0 < 1.0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=60),
    st.integers(1, 5),
    st.integers(-3, 3),
)
def test_any_integers_round_trip(values, t, offset):
    pmf = np.full((t, 5), 0.18)
    ts = TableSet(pmf, np.arange(t) % 5 + 1, np.full(t, offset))
    sym = np.array(values, np.int64)
    idx = np.arange(sym.size) % t
    assert np.array_equal(ts.decode(ts.encode(sym, idx), idx), sym)


# ---- the byte coder (compact profile) -------------------------------------------------------


def test_golden_entropy_bytes_bytecoder():
    tables, sym, idx = make_golden.entropy_case()
    n = make_golden.ENTROPY_BYTES_SYMBOLS
    data = tables.encode_bytes(sym[:n], idx[:n])
    assert data == (GOLDEN / "entropy-bytes.bin").read_bytes(), "byte coder output changed"
    assert np.array_equal(tables.decode_bytes(data, idx[:n]), sym[:n])


def _ideal_bits(ts: TableSet, sym, idx) -> float:
    """Information content under the byte coder's own integer models (no end cost)."""
    from aecodec import bytecoder, entropy

    t, a, above, exp, _ = ts._split(sym, idx)
    bits = sum(-np.log2(ts._int_model(int(i)).freqs[int(s)] / 2.0**bytecoder.PRECISION)
               for i, s in zip(t, a, strict=True))
    heads = above.astype(np.int64) * (entropy.MAX_EXP + 1) + exp
    bits += sum(-np.log2(entropy._HEAD_MODEL.freqs[int(h)] / 2.0**bytecoder.PRECISION)
                for h in heads)
    return float(bits + exp.sum())


def test_bytecoder_end_costs_less_than_a_byte():
    ts = laplace_set()
    rng = np.random.default_rng(3)
    waste = []
    for trial in range(300):
        n = int(rng.integers(1, 80))
        idx = rng.integers(0, len(ts), n)
        sym = np.rint(rng.laplace(0, 1.5, n)).astype(np.int64)
        if trial % 10 == 0:
            sym[0] = 500  # an escape
        data = ts.encode_bytes(sym, idx)
        assert np.array_equal(ts.decode_bytes(data, idx), sym)
        ideal = _ideal_bits(ts, sym, idx)
        assert len(data) <= np.ceil(ideal / 8 + 1e-9)  # never more than the rounded-up info
        assert abs(ideal - ts.estimate_bits(sym, idx)) < 0.01 * ideal + 0.05
        waste.append(len(data) - ideal / 8)
    assert np.mean(waste) < 0.75 and max(waste) < 1.0
    ans = [len(ts.encode(np.full(40, 2), np.arange(40) % len(ts)))]
    assert len(ts.encode_bytes(np.full(40, 2), np.arange(40) % len(ts))) < ans[0]


def test_bytecoder_is_strict():
    ts = laplace_set()
    idx = np.arange(30) % len(ts)
    sym = (np.arange(30) % 7) - 3
    data = ts.encode_bytes(sym, idx)
    assert data and data[-1] != 0
    for bad in (data + b"\0", data + b"\x01", data[:-1] + bytes([data[-1] ^ 0x80]) + b"\x07"):
        with pytest.raises(CorruptStreamError):
            ts.decode_bytes(bad, idx)
    with pytest.raises(CorruptStreamError, match="longer"):
        ts.decode_bytes(b"\x55" * 4000, idx)
    assert ts.encode_bytes(np.zeros(0), np.zeros(0)) == b""
    assert ts.decode_bytes(b"", np.zeros(0, np.int64)).size == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=40),
       st.integers(1, 5), st.integers(-3, 3))
def test_bytecoder_any_integers_round_trip(values, t, offset):
    pmf = np.full((t, 5), 0.18)
    ts = TableSet(pmf, np.arange(t) % 5 + 1, np.full(t, offset))
    sym = np.array(values, np.int64)
    idx = np.arange(sym.size) % t
    assert np.array_equal(ts.decode_bytes(ts.encode_bytes(sym, idx), idx), sym)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=40))
def test_bytecoder_decodes_any_bytes_or_refuses(data):
    ts = laplace_set()
    idx = np.arange(24) % len(ts)
    try:
        out = ts.decode_bytes(data, idx)
    except CorruptStreamError:
        return
    assert ts.encode_bytes(out, idx) == data  # whatever decodes is the canonical coding


def test_pop_is_decode_from_for_many_groups():
    """`pop` (one call per group, escapes vectorised) reads exactly what `decode_from` reads:
    several groups pushed on one coder, many tables each, values beyond the tables included."""
    from aecodec import entropy

    ts = laplace_set(t=40, half=6)
    rng = np.random.default_rng(5)
    groups = []
    for _ in range(12):
        n = int(rng.integers(1, 90))
        sym = rng.integers(-9, 10, n) * rng.integers(1, 3, n)
        sym[rng.integers(n)] = 5000  # an escape
        groups.append((sym, rng.integers(0, 40, n)))
    coder = entropy.new_coder()
    for sym, tab in reversed(groups):
        ts.encode_into(coder, sym, tab)
    data = entropy.finish(coder)
    a, b = entropy.open_coder(data), entropy.open_coder(data)
    for sym, tab in groups:
        assert np.array_equal(ts.pop(a, tab), sym)
        assert np.array_equal(ts.decode_from(b, tab), sym)
    assert a.is_empty() and b.is_empty()
