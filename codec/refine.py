"""Encoder-side latent search for fixed-size models: better symbols for the same decoder.

The analysis transform only approximates the symbols that suit the synthesis best (the
"amortization gap"); for a 28x28 digit a few rounds of a greedy search close much of it. Each
round tries every latent symbol one step up and one step down, measures the rate-distortion cost
`bits + lambda * SSE` of each candidate through the real synthesis (the 8-bit pixels a decoder
will produce, x in [0, 1]) and the model's tables, and moves to the better of (a) the best
candidate and (b) all improving steps taken together; it stops when no step lowers the cost.
Only the encoder changes: the stream and the decoder are the same as without it.
`lambda` is the model's training weight for the quality (`rate.lambdas` in the manifest,
interpolated between levels geometrically as the gains are).
"""

from __future__ import annotations

import numpy as np

from .errors import ModelError
from .rate import at_quality


def quality_lambda(lambdas: list[float], quality: float | None) -> float:
    """The distortion weight at a quality, interpolated like the gains (docs/format.md)."""
    return float(at_quality(np.asarray(lambdas, np.float64), quality))


def search(codec, image: np.ndarray, sym: np.ndarray, quality: float | None,
           rounds: int) -> np.ndarray:
    """Greedy search from `sym` ([M] integer symbols of a 1x1 latent); returns better symbols.

    `image` is the H x W x C uint8 input the symbols code."""
    model = codec.model
    lambdas = (model.info.manifest.get("rate") or {}).get("lambdas")
    if not lambdas or len(lambdas) != len(model.gain):
        raise ModelError(f"model '{model.name}' records no rate.lambdas for its levels")
    lam = quality_lambda(lambdas, quality)
    _, inv = model.gains(quality)
    m = sym.size
    tables = np.arange(m)
    target = image.astype(np.float64).transpose(2, 0, 1) / 255.0
    yt = model.y_tables

    def costs(cands: np.ndarray) -> np.ndarray:
        y_hat = (cands * inv[None]).astype(np.float32)[:, :, None, None]
        px = _synthesize(codec, y_hat)
        sse = ((px - target[None]) ** 2).reshape(len(cands), -1).sum(1)
        bits = yt.symbol_bits(cands.ravel(), np.tile(tables, len(cands))).reshape(len(cands), m)
        return bits.sum(1) + lam * sse

    best = sym.astype(np.int64).copy()
    cost = costs(best[None])[0]
    eye = np.eye(m, dtype=np.int64)
    for _ in range(rounds):
        cands = np.concatenate([best[None] + eye, best[None] - eye])
        c = costs(cands)
        j = int(np.argmin(c))
        if not c[j] < cost:
            break
        # every improving step at once (the better direction per symbol), if that beats the
        # best single step; else the best single step
        up, down = c[:m], c[m:]
        step = np.where((up < cost) & (up <= down), 1, np.where(down < cost, -1, 0))
        combo = best + step
        cc = costs(combo[None])[0] if np.count_nonzero(step) > 1 else np.inf
        best, cost = (combo, cc) if cc < c[j] else (cands[j], c[j])
    return best


def _synthesize(codec, y_hat: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] as the decoder rounds them, [N, C, H, W] float64, for N latents."""
    session = codec.model.synthesis
    inp = session.get_inputs()[0]
    out_name = session.get_outputs()[0].name
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
    if batch is None:
        outs = [codec.model.run(session, out_name, {"y_hat": y_hat})]
    else:
        outs = [codec.model.run(session, out_name, {"y_hat": y_hat[i : i + batch]})
                for i in range(0, len(y_hat), batch)]
    x = np.concatenate(outs)
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0) / 255.0
