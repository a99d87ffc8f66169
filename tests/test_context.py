"""The context model: the runtime's exact integer networks compute what the quantization-aware
torch model trained, stay exact for any input the runtime accepts, and start as the hyperprior."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aecodec import ctxnet  # noqa: E402
from aecodec.export.context import ContextConfig, ContextModel  # noqa: E402


def _model(slices: int, phases: int, seed: int = 0) -> ContextModel:
    torch.manual_seed(seed)
    model = ContextModel(ContextConfig(m=8, slices=slices, phases=phases, hidden=8, kernel=3))
    for net in model.nets.values():  # a trained-looking last layer instead of the zero start
        torch.nn.init.uniform_(net.l2.w, -0.3, 0.3)
        torch.nn.init.uniform_(net.l2.b, -0.5, 0.5)
    model.quantize = True
    return model.eval()


def _inputs(seed: int, h: int = 7, w: int = 6):
    rng = np.random.default_rng(seed)
    mean16 = rng.integers(-80, 80, (8, h, w))
    idx = rng.integers(0, 40, (8, h, w))
    y = mean16 / 16 + rng.laplace(0, 3, (8, h, w))
    return y, mean16, idx


@pytest.mark.parametrize("slices,phases", [(1, 2), (2, 1), (2, 2)])
def test_integer_context_matches_training(slices, phases):
    model = _model(slices, phases)
    net = model.to_numpy()
    y, mean16, idx = _inputs(slices * 10 + phases)
    with torch.no_grad():
        out = model(torch.from_numpy(y).float()[None], torch.from_numpy(mean16 / 16).float()[None],
                    torch.from_numpy(idx).float()[None], train=False)

    def encode(step, mask, mu16, ix):
        s = step[0] * (8 // slices)
        return np.rint(y[s : s + 8 // slices] - mu16 / 16).astype(np.int64)

    sym, mu16, ix = ctxnet.code_region(net, mean16, idx, encode)
    assert np.mean(mu16 == np.round(out["mean"][0].numpy() * 16)) > 0.99
    assert np.mean(ix == out["idx"][0].numpy()) > 0.99
    assert not np.array_equal(ix, idx)  # the context did change something
    assert np.array_equal(sym, np.rint(y - mu16 / 16))


def test_integer_context_stays_exact():
    """|acc * m| < 2**53 for every layer at the inputs' clip limits."""
    net = _model(2, 2).to_numpy()
    lim = int(net["ctx_limit"])
    for s, p in ctxnet.order(net)[1:]:
        for i in range(3):
            key = f"{s}_{p}.{i}"
            wsum = sum(np.abs(net[f"{key}.{n}"].astype(np.float64)).sum(axis=(1, 2, 3))
                       for n in ("w", "wh") if f"{key}.{n}" in net)
            acc = wsum * (lim if i == 0 else 255) + np.abs(net[f"{key}.b"])
            assert float(np.max(acc * net[f"{key}.m"])) < 2.0**53


def test_context_starts_as_hyperprior():
    """Untrained (zero last layer), the refined parameters are the hyperprior's."""
    model = ContextModel(ContextConfig(m=8, slices=2, phases=2, hidden=8, kernel=3))
    model.quantize = True
    y, mean16, idx = _inputs(3)
    sym, mu16, ix = ctxnet.code_region(model.to_numpy(), mean16, idx,
                                       lambda st, m, mu, i: np.zeros_like(mu))
    assert np.array_equal(mu16, mean16) and np.array_equal(ix, idx)


def test_context_section_round_trip():
    """Encoder and decoder walk the same steps: symbols, means and indices come back exactly,
    and a cut section is refused."""
    from aecodec.entropy import TableSet
    from aecodec.errors import CorruptStreamError

    x = np.arange(-20, 21)
    scales = np.exp(np.linspace(np.log(0.2), np.log(30), 64))
    pmf = np.exp(-np.abs(x)[None, :] / scales[:, None])
    tables = TableSet(pmf / pmf.sum(1, keepdims=True) * 0.999, np.full(64, 41), np.full(64, -20))
    net = _model(2, 2).to_numpy()
    y, mean16, idx = _inputs(5, 9, 8)
    y = y * 4  # some escapes too
    data, bits = ctxnet.encode_region(net, tables, y, mean16, idx, 4, 0)
    sym, mu16, ix = ctxnet.decode_region(net, tables, data, mean16, idx, 4, 0)
    assert np.array_equal(sym, np.rint(y - mu16 / 16))
    ref = ctxnet.code_region(net, mean16, idx, lambda st, m, mu, i: np.rint(
        y[st[0] * 4 : st[0] * 4 + 4] - mu / 16).astype(np.int64), 4, 0)
    assert np.array_equal(mu16, ref[1]) and np.array_equal(ix, ref[2])
    assert abs(len(data) * 8 - bits) < 64
    with pytest.raises(CorruptStreamError):
        ctxnet.decode_region(net, tables, data[: len(data) // 2], mean16, idx, 4, 0)
