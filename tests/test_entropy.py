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
