"""Encoder-side optimisation of the latents (`effort=N`): same stream format, same decoder.

SGA, stochastic Gumbel annealing (Yang, Bamler & Mandt, NeurIPS 2020): the gained latents y
(rounded relative to the hyper mean) and the hyper-latents z are optimised by Adam through a
differentiable copy of exactly the decoder the stream names, built from the model folder's
own files: the exact 8-bit synthesis (synthesis.onnx initializers, the graph
export/int_onnx.py writes, with straight-through rounding) and the integer hyper-decoder
(hyper_synthesis.npz, its floors straight-through). The rate comes from the model's own
discrete tables (tables.npz: z per channel, y per scale index, interpolated). The best
hard-rounded RD cost seen is kept, coded by the runtime's exact entropy coder, decoded
exactly, and written only if its real RD cost (bytes and decoded pixels) beats effort 0's.

torch is imported only here, only inside functions, only when effort > 0 (docs/effort.md).
"""

from __future__ import annotations

import numpy as np

from . import progress, rate
from .errors import AecodecError, ModelError

STEPS = {0: 0, 1: 25, 2: 50, 3: 100, 4: 200}  # optimisation steps per effort level
MAX_EFFORT = max(STEPS)
MAX_PIXELS = 4 << 20  # whole-image optimisation up to this; larger images go block by block
SEED = 0
# Adam's step on the latents (x0.1 for the last 10 % of steps): on kodim04 at 25, 40 and 200
# steps, 0.02 beat NOTES.md's 5e-3 (RD cost -4.9 / -6.6 / -9.8 % against -4.5 (40) / -9.1 %)
LR = 0.02
INSTALL = "pip install 'aecodec[effort]'"
# fixed-size digit models (one latent position): rounds of the greedy search of codec/refine.py
REFINE_ROUNDS = {0: 0, 1: 1, 2: 2, 3: 4, 4: 6}


def check_effort(effort) -> int:
    """The effort level as an int 0..MAX_EFFORT, or a ValueError / TypeError saying why."""
    if isinstance(effort, bool) or not isinstance(effort, int | np.integer):
        raise TypeError(f"effort must be an integer 0..{MAX_EFFORT}, got {effort!r}")
    if not 0 <= int(effort) <= MAX_EFFORT:
        raise ValueError(f"effort must be 0..{MAX_EFFORT}, got {int(effort)}")
    return int(effort)


def check_model(info, effort: int) -> None:
    """A ModelError unless the model can be optimised at this effort (before any work): the
    hyperprior family (SGA, needs torch) and the fixed-size digit models (greedy search)."""
    if not effort or info.fixed_size is not None or info.family == "overfit":
        return  # the overfit family's effort is its training length (aecodec.overfit)
    if info.family != "hyperprior":
        raise ModelError(f"effort > 0 needs a hyperprior-family or fixed-size digit model; "
                         f"'{info.name}' is {info.family}")


def has_torch() -> bool:
    """Whether effort > 0 can run here (torch importable), without importing it."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def threads() -> int:
    """The CPU threads the optimisation runs on (torch's; set by torch.set_num_threads or
    OMP_NUM_THREADS)."""
    return int(_torch().get_num_threads())


def _torch():
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None:
        raise AecodecError(f"effort > 0 needs torch: {INSTALL}")
    return torch


# ---- the differentiable twins --------------------------------------------------------------

def _ste(torch, x, hard):
    return x + (hard - x).detach()


class _Twin:
    """Torch copies of the model's 8-bit synthesis and integer hyper-decoder, and its tables."""

    def __init__(self, model):
        torch = _torch()
        from .fast_synthesis import rewritable
        from .onnx_wire import read_model

        self.torch = torch
        g = read_model(model.blob("synthesis.onnx"))
        if not rewritable(g):
            raise ModelError(f"effort > 0: {model.name}'s synthesis is not the exact 8-bit one")
        w = g.inits
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        self.s_in0 = t(w["s_in0"]).reshape(-1)
        self.convs = []
        for k in range(4):
            self.convs.append((t(w[f"w{k}"]).contiguous(memory_format=torch.channels_last),
                               t(w[f"b{k}"]), t(w[f"w{k}_scale"])))
        self.gdns = [(t(w[f"gamma{k}"]), t(w[f"beta{k}"]).reshape(-1), t(w[f"k{k}"]).reshape(-1))
                     for k in range(3)]
        net = model.net
        self.hyper = []
        i = 0
        while f"w{i}" in net:
            self.hyper.append((torch.as_tensor(net[f"w{i}"].astype(np.float32)),
                               torch.as_tensor(net[f"b{i}"].astype(np.float32)),
                               torch.as_tensor(net[f"m{i}"].astype(np.float32)),
                               int(net[f"shift{i}"]), int(net[f"ps{i}"]),
                               torch.as_tensor(np.asarray(net[f"lo{i}"], np.float32).reshape(-1)),
                               torch.as_tensor(np.asarray(net[f"hi{i}"], np.float32).reshape(-1))))
            i += 1
        self._wcache: dict = {}
        self.mean_bits = model.mean_bits
        self.stride = model.stride  # pixels per latent
        self.y_logp = self._table(model.y_tables)
        self.z_logp = self._table(model.z_tables)

    def _table(self, ts):
        """Code lengths (bits) per table as [T, L + 2]: column 0 and those past a table's
        symbols are its escape (plus 16 bits for the escaped value), with offset and length."""
        torch = self.torch
        lens = np.asarray(ts.lengths, np.int64)
        cost = np.asarray(ts.cost, np.float64)
        out = np.empty((len(lens), cost.shape[1] + 1))
        for i, n in enumerate(lens):
            esc = cost[i, n] + 16.0
            out[i] = esc
            out[i, 1 : 1 + n] = cost[i, :n]
        return (torch.as_tensor(out, dtype=torch.float32),
                torch.as_tensor(np.asarray(ts.offsets, np.float32)),
                torch.as_tensor(lens.astype(np.float32)))

    def bits(self, table, sym, idx):
        """Bits of (soft) symbols `sym` under tables `idx` (soft or int), linear interpolation
        between neighbouring symbols (and tables)."""
        torch = self.torch
        logp, off, lens = table
        n = logp.shape[0]

        def along(i):
            pos = (sym - off[i] + 1).clamp(0, None)
            pos = torch.minimum(pos, lens[i] + 1)  # beyond the table: the escape floor
            p0 = pos.detach().floor()
            f = pos - p0
            i0 = p0.long()
            i1 = (i0 + 1).clamp(max=logp.shape[1] - 1)
            return logp[i, i0] * (1 - f) + logp[i, i1] * f

        i0 = idx.detach().floor().clamp(0, n - 1)
        fi = (idx - i0).clamp(0, 1)
        a = along(i0.long())
        if not idx.requires_grad:
            return a.sum()
        b = along((i0 + 1).clamp(max=n - 1).long())
        return (a * (1 - fi) + b * fi).sum()

    def hyper_decode(self, z):
        """mu, idx (both straight-through integers in the forward pass) from z [1, Nz, h, w]."""
        torch = self.torch
        F = torch.nn.functional
        a = z
        for w, b, m, shift, ps, lo, hi in self.hyper:
            acc = F.conv2d(a, w, padding=w.shape[-1] // 2) + b[None, :, None, None]
            v = (acc * m[None, :, None, None] + 2.0 ** (shift - 1)) / 2.0**shift
            v = _ste(torch, v, v.detach().floor())
            lo_, hi_ = lo.expand(v.shape[1]), hi.expand(v.shape[1])
            v = torch.maximum(torch.minimum(v, hi_[None, :, None, None]), lo_[None, :, None, None])
            a = F.pixel_shuffle(v, ps) if ps > 1 else v
        m = a.shape[1] // 2
        return a[:, :m] / 2.0**self.mean_bits, a[:, m:]

    def synthesize(self, y_hat):
        """Pixels (0..255 float) of y_hat [1, M, h, w] in bf16, no gradient: the hard-rounded
        check that ranks candidates (the kept one is then scored by the exact decoder)."""
        return self._forward(y_hat, torch_dtype=self.torch.bfloat16, save=None)

    def synthesize_grad(self, y_hat):
        """The same in bf16 with a hand-written backward (straight-through rounding, clamps
        masked): one pass per operation, no autograd graph of the large tensors."""
        return _synth_fn(self.torch).apply(y_hat, self)

    def _weights(self, dtype):
        """Convolution weights (8-bit integers, exact in bf16) and folded per-channel terms."""
        key = str(dtype)
        if key not in self._wcache:
            torch = self.torch
            cl = torch.channels_last
            convs = [(w.to(dtype).contiguous(memory_format=cl), b.to(dtype),
                      s.to(dtype)[None, :, None, None]) for w, b, s in self.convs]
            gdns = []
            for gamma, beta, kk in self.gdns:  # n * k = conv(u^2, gamma * k) + beta * k
                g = (gamma * kk[:, None, None, None]).to(dtype).contiguous(memory_format=cl)
                gdns.append((g, (beta * kk).to(dtype)))
            self._wcache[key] = (convs, gdns)
        return self._wcache[key]

    def _forward(self, y_hat, torch_dtype, save):
        torch = self.torch
        F = torch.nn.functional
        cl = torch.channels_last
        convs, gdns = self._weights(torch_dtype)
        with torch.no_grad():
            v = (y_hat / self.s_in0[None, :, None, None]).round_()
            q = v.clamp(-128, 127)
            if save is not None:
                save.append(q == v)
            v = q.to(torch_dtype).contiguous(memory_format=cl)
            for k, (w, b, s) in enumerate(convs):
                a = F.conv2d(v, w, b, padding=1).mul_(s).round_()
                lo, hi = (0, 255) if k == 3 else (-128, 127)
                q = a.clamp(lo, hi)
                if save is not None:
                    save.append(q == a)
                u = F.pixel_shuffle(q, 2).contiguous(memory_format=cl)
                if k == 3:
                    return u.float()
                gamma, beta = gdns[k]
                g = F.conv2d(u * u, gamma, beta).sqrt_()
                p = (u * g).round_()
                v = p.clamp(-128, 127)
                if save is not None:
                    save.extend((u, g, v == p))
        raise AssertionError

    def _backward(self, grad, saved):
        torch = self.torch
        F = torch.nn.functional
        cl = torch.channels_last
        convs, gdns = self._weights(torch.bfloat16)
        with torch.no_grad():
            m_in, *stages, m_out = saved
            gv = F.pixel_unshuffle(grad.to(torch.bfloat16), 2).mul_(m_out)
            w, _, s = convs[3]
            gv = F.conv_transpose2d(gv.mul_(s).contiguous(memory_format=cl), w, padding=1)
            for k in (2, 1, 0):
                m_a, u, g, m_p = stages[4 * k: 4 * k + 4]
                gp = gv.mul_(m_p)
                gamma, _ = gdns[k]
                inner = F.conv_transpose2d((gp * u).div_(g), gamma)
                gu = (gp * g).addcmul_(u, inner)
                ga = F.pixel_unshuffle(gu, 2).mul_(m_a)
                w, _, s = convs[k]
                gv = F.conv_transpose2d(ga.mul_(s).contiguous(memory_format=cl), w, padding=1)
            return gv.float().mul_(m_in) / self.s_in0[None, :, None, None]


_FN: dict = {}


def _synth_fn(torch):
    """The autograd Function over _Twin._forward / _backward (made once torch is imported)."""
    if "fn" not in _FN:
        class Synth(torch.autograd.Function):
            @staticmethod
            def forward(ctx, y_hat, tw):
                saved = []
                out = tw._forward(y_hat, torch.bfloat16, saved)
                ctx.tw, ctx.saved = tw, saved
                return out

            @staticmethod
            def backward(ctx, grad):
                g = ctx.tw._backward(grad, ctx.saved)
                ctx.saved = None
                return g, None

        _FN["fn"] = Synth
    return _FN["fn"]


def _twin(model) -> _Twin:
    tw = getattr(model, "_effort_twin", None)
    if tw is None:
        tw = _Twin(model)
        model._effort_twin = tw
    return tw


# ---- the optimisation ------------------------------------------------------------------------

def temperature(t: int, k: int) -> float:
    return float(min(0.5, 0.5 * np.exp(-(2.0 / k) * (t - 0.35 * k))))


def optimise(codec, image: np.ndarray, y: np.ndarray, gain: np.ndarray, quality, steps: int,
             seed: int = SEED, trace: list | None = None):
    """SGA over (y, z) for `steps` steps: the best hard-rounded (z_sym, y_sym) [float64].
    Images over MAX_PIXELS go block by block (`optimise_blocks`)."""
    torch = _torch()
    model = codec.model
    h, w = image.shape[:2]
    if h * w > MAX_PIXELS:
        return optimise_blocks(codec, image, y, gain, quality, steps, seed)
    tw = _twin(model)
    lam = float(rate.at_quality(np.asarray(model.info.manifest["rate"]["lambdas"]), quality))
    inv = model.gains(quality)[1]
    y_g = (y.astype(np.float64) * gain[:, None, None]).astype(np.float32)
    z0 = model.run(model.hyper_analysis, "z", {"y": y_g[None]})[0]
    zs = codec.latent.z_shape(_grid(codec, h, w))
    z0 = z0[:, : zs[1], : zs[2]]
    x = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))[None]
    progress.stage("effort", steps)
    with _settings(torch, seed):
        return _anneal(torch, tw, x, y_g, lam, inv, steps, z0=z0, trace=trace)


BLOCK = 48  # latents a side of the blocks large images are optimised in (768 pixels)
HALO = 4  # latents around a block whose symbols its pixels depend on (the synthesis needs 2)


def optimise_blocks(codec, image: np.ndarray, y: np.ndarray, gain: np.ndarray, quality,
                    steps: int, seed: int = SEED):
    """Large images: z as the analysis gives it (rounded, exact), y optimised block by block,
    each block with a halo of HALO latents around it (optimised with it, then dropped) so its
    pixels see the symbols they are decoded from; the rate and distortion of a block are its
    own symbols and pixels. Memory and time per block are those of a 768 x 768 image."""
    from . import tiles

    torch = _torch()
    model = codec.model
    tw = _twin(model)
    h, w = image.shape[:2]
    st = codec.stride
    grid = _grid(codec, h, w)
    lam = float(rate.at_quality(np.asarray(model.info.manifest["rate"]["lambdas"]), quality))
    inv = model.gains(quality)[1]
    z_sym = codec.latent.hyper_latents(y, gain, grid)
    y_g = (y.astype(np.float64) * gain[:, None, None]).astype(np.float32)
    with torch.no_grad():
        mu, idx = tw.hyper_decode(torch.as_tensor(z_sym[None].astype(np.float32)))
    mu, idx = mu[..., : grid.hy, : grid.wy], idx[..., : grid.hy, : grid.wy]
    y_sym = np.empty(y.shape, np.float64)
    blocks = list(tiles.halo_tiles(grid.hy, grid.wy, BLOCK, HALO))
    progress.stage(f"effort, {len(blocks)} blocks", len(blocks) * steps)
    with _settings(torch, seed):
        for t in blocks:
            R0, R1, C0, C1 = t.outer
            px = image[R0 * st: min(R1 * st, h), C0 * st: min(C1 * st, w)]
            x = torch.as_tensor(np.ascontiguousarray(px.transpose(2, 0, 1), np.float32))[None]
            (sr, sc), dst = t.crop()
            inner = (sr.start, sr.stop, sc.start, sc.stop)
            _, s = _anneal(torch, tw, x, y_g[:, R0:R1, C0:C1], lam, inv, steps,
                           fixed=(mu[..., R0:R1, C0:C1], idx[..., R0:R1, C0:C1]), inner=inner)
            y_sym[(slice(None), *dst)] = s[:, sr, sc]
    return z_sym, y_sym


class _settings:
    """torch's RNG forked and seeded, deterministic algorithms, no NaN-filling of fresh
    tensors (15 % of a step), for the optimisation only; the caller's state is restored."""

    def __init__(self, torch, seed: int) -> None:
        self.torch, self.seed = torch, seed

    def __enter__(self):
        torch = self.torch
        self.state = (torch.are_deterministic_algorithms_enabled(),
                      torch.utils.deterministic.fill_uninitialized_memory)
        self.rng = torch.random.fork_rng(devices=[])
        self.rng.__enter__()
        torch.manual_seed(self.seed)  # same image, quality, effort: same bytes
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        return self

    def __exit__(self, *exc) -> None:
        torch = self.torch
        torch.use_deterministic_algorithms(self.state[0])
        torch.utils.deterministic.fill_uninitialized_memory = self.state[1]
        self.rng.__exit__(None, None, None)


def _anneal(torch, tw, x, y_g: np.ndarray, lam: float, inv: np.ndarray, steps: int,
            z0: np.ndarray | None = None, fixed=None, inner=None, trace: list | None = None):
    """The annealing itself on pixels x [1, 3, H, W] and gained latents y_g [M, h, w]: with
    `z0`, z is optimised too (the hyper mean and scales follow it); with `fixed` = (mu, idx),
    they are given. `inner` = latent box (r0, r1, c0, c1) whose symbols and pixels count (the
    rest is halo). Returns the best hard-rounded (z_sym or None, y_sym) as float64 arrays."""
    F = torch.nn.functional
    h, w = x.shape[2:]
    st = tw.stride
    inv_t = torch.as_tensor(inv.astype(np.float32))[None, :, None, None]
    ny = y_g.shape
    if inner is None:
        inner = (0, ny[1], 0, ny[2])
    a, b, c, d = inner
    pa, pb, pc, pd = a * st, min(b * st, h), c * st, min(d * st, w)
    npix = float((pb - pa) * (pd - pc))
    y_var = torch.tensor(y_g[None], requires_grad=True)
    params = [y_var]
    if z0 is not None:
        z_var = torch.tensor(z0[None].astype(np.float32), requires_grad=True)
        zc = torch.arange(z0.shape[0])[None, :, None, None].float()
        params.append(z_var)
    opt = torch.optim.Adam(params, lr=LR)

    def sga(v, tau):
        fl = v.detach().floor()
        frac = (v - fl).clamp(1e-5, 1 - 1e-5)
        logits = torch.stack([-torch.atanh(frac) / tau, -torch.atanh(1 - frac) / tau], -1)
        wgt = F.gumbel_softmax(logits, tau=1.0, hard=False)
        return fl + wgt[..., 1]

    def cost(z_hat, tau, soft):
        if z_hat is None:
            mu, idx = fixed
        else:
            mu, idx = tw.hyper_decode(z_hat)
            mu, idx = mu[..., : ny[1], : ny[2]], idx[..., : ny[1], : ny[2]]
        s = sga(y_var - mu, tau) if soft else (y_var - mu).detach().round()
        y_hat = ((s + mu) * inv_t).contiguous(memory_format=torch.channels_last)
        # bf16 synthesis, with its own backward for the gradient steps; loss in float32
        pix = (tw.synthesize_grad(y_hat) if soft else tw.synthesize(y_hat))[..., :h, :w]
        mse = F.mse_loss(pix[..., pa:pb, pc:pd], x[..., pa:pb, pc:pd])
        idx = idx.clamp(0, tw.y_logp[0].shape[0] - 1)
        bits = tw.bits(tw.y_logp, s[..., a:b, c:d], idx[..., a:b, c:d])
        if z_hat is not None:
            bits = bits + tw.bits(tw.z_logp, z_hat, zc.expand_as(z_hat))
        return lam * mse + bits / npix, s

    best, best_cost = None, float("inf")
    for t in range(steps + 1):
        with torch.no_grad():  # the hard-rounded cost of the current point
            if t % 10 == 0 or t == steps:
                zh = z_var.round() if z0 is not None else None
                cst, s = cost(zh, None, False)
                if float(cst) < best_cost:
                    best_cost = float(cst)
                    best = (None if zh is None else zh[0].double().numpy(),
                            s[0].double().numpy())
                if trace is not None:
                    trace.append((t, float(cst)))
        if t == steps:
            break
        progress.step()
        tau = temperature(t, steps)
        if t == int(0.9 * steps):
            for g in opt.param_groups:
                g["lr"] = LR / 10
        opt.zero_grad(set_to_none=True)
        zs = sga(z_var, tau) if z0 is not None else None
        loss, _ = cost(zs, tau, True)
        loss.backward()
        opt.step()
    return best


def _grid(codec, h, w):
    from . import tiles

    hy, wy = codec.latent_hw(h, w)
    return tiles.TileGrid(hy, wy, codec.tile // codec.stride if codec._tiled(h, w) else None)


def encode_symbols(codec, z_sym: np.ndarray, y_sym: np.ndarray, grid):
    """Sections and estimated bits of given symbols, by the latent codec's exact coder."""
    from .latent.base import channel_index

    lat = codec.latent
    zt = codec.model.z_tables
    zc = channel_index(z_sym.shape)
    sections = [zt.encode(z_sym.ravel(), zc)]
    bits = zt.estimate_bits(z_sym.ravel(), zc)
    yt = codec.model.y_tables
    for r0, r1, c0, c1 in grid.boxes:
        sym = y_sym[:, r0:r1, c0:c1]
        _, idx = lat.entropy_params(z_sym, sym.shape, r0, c0)
        sections.append(yt.encode(sym.ravel(), idx))
        bits += yt.estimate_bits(sym.ravel(), idx)
    return sections, bits


def _real_cost(codec, sections, grid, inv, image, gray, lam) -> float:
    """lambda * MSE (0..255) of the exact decode + bits per pixel of the sections."""
    h, w = image.shape[:2]
    y_hat, _ = codec.latent.decode(sections, grid, inv)
    pix = codec._synthesize(y_hat, h, w, gray)
    ref = image[:, :, 0] if gray else image
    mse = float(np.mean((pix.astype(np.float64) - ref) ** 2))
    return lam * mse + 8.0 * sum(len(s) for s in sections) / (h * w)


def encode(codec, y, gain, grid, quality, image, gray, effort: int, seed: int = SEED):
    """effort 0's sections, or the optimised ones where their real RD cost is lower."""
    from .latent.hyperprior import HyperpriorCodec

    base = codec.latent.encode(y, gain, grid)
    steps = STEPS[effort]
    if not steps or image is None:
        return base
    check_model(codec.model.info, effort)
    if type(codec.latent) is not HyperpriorCodec:
        raise ModelError(f"effort > 0 needs a hyperprior-family model, not {codec.model.name}")
    _torch()
    best = optimise(codec, image, y, gain, quality, steps, seed)
    if best is None:
        return base
    opt = encode_symbols(codec, best[0], best[1], grid)
    model = codec.model
    lam = float(rate.at_quality(np.asarray(model.info.manifest["rate"]["lambdas"]), quality))
    inv = model.gains(quality)[1]
    c0 = _real_cost(codec, base[0], grid, inv, image, gray, lam)
    c1 = _real_cost(codec, opt[0], grid, inv, image, gray, lam)
    return opt if c1 < c0 else base
