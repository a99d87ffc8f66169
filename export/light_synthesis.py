"""A lighter exact 8-bit synthesis, trained decoder-only on the CPU from frozen latents.

Why: at 12 MP the synthesis is 80 % of decoding, and most of it is the last normalised stage
(the convolution to half resolution and its IGDN, at a quarter of the pixels). Fewer channels
there cost less; the streams need not change at all, since the encoder, the hyperprior and the
tables stay the shipped model's: only the decoder is new, so the rate is identical and the
rate-distortion cost is the PSNR the lighter decoder loses at each rate.

How:
1. `prune`: start from the shipped 8-bit synthesis (`IntSynthesis`, already quantization-aware)
   and keep the `width` most useful channels of one stage (mean |activation| after its IGDN
   times the norm of the next convolution's weights on it): a warm start, not a new network.
2. `aecodec train light-synthesis` (the task in export/tasks/light.py): quantization-aware
   fine-tune of the stages from the pruned one on, the earlier
   stages frozen (they are exactly the shipped ones). Inputs are y_hat exactly as the runtime
   decodes it (its hyper path), at each of the model's 10 rate levels, computed once from
   latents that `aecodec.export.latents` wrote (no analysis in the loop); target the photo's
   pixels, in each crop's interior only (its edges are zero-padded where decoding has
   neighbours). Loss: mean log-MSE (each rate counts the same). On the one training loop:
   the same command on the same --out resumes.
3. `export_folder`: a model folder holding the new `synthesis.onnx` and sharing every other
   file with the base model (`shares_files_with`).

    aecodec train light-synthesis runs/latents.npz ../shared/data/train/bsds500 \\
        ../shared/data/train/photos --out runs/light --weights checkpoints/hyperprior.pt \\
        --stage 2 --width 80 --steps 1000
    aecodec train light-synthesis-export runs/light/light.pt codec/models/hyperprior-fast \\
        --base codec/models/hyperprior --name hyperprior-fast
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .data import fit_within
from .folder import write_model_folder
from .int_synthesis import IntSynthesis
from .latents import load_latents
from .models import Hyperprior, at_positions, frozen, load_weights, synthesis
from .tasks.photo import psnr

# -- the network ----------------------------------------------------------------------------


def shipped_int_synthesis(weights: Path) -> tuple[Hyperprior, IntSynthesis]:
    """The trained model (frozen, hyper-decoder quantized as shipped) and its 8-bit synthesis."""
    model, state = load_weights(weights)
    assert isinstance(model, Hyperprior) and "int_synthesis" in state
    frozen(model)
    net = empty_int_synthesis(model.cfg.m, (model.cfg.n,) * 3)
    net.load_state_dict({k: v.float() for k, v in state["int_synthesis"]["net"].items()})
    return model, net


def empty_int_synthesis(m: int, widths: tuple[int, int, int]) -> IntSynthesis:
    """An `IntSynthesis` of the given stage widths, to load a state into."""
    ones = [torch.ones(m)] + [torch.ones(w) for w in widths]
    return IntSynthesis(synthesis(widths[0], m, "subpel", widths), ones, ones[1:])


@torch.no_grad()
def channel_importance(net: IntSynthesis, stage: int, ys: list[torch.Tensor]) -> torch.Tensor:
    """Per channel of `stage`'s IGDN output: mean |x| times the L2 norm of the next
    convolution's weights reading it, i.e. how much it moves the next stage's input."""
    acc = torch.zeros(net.widths[stage])
    for y in ys:
        x = y
        for k in range(stage + 1):
            x = net.stage(k, x)
        acc += x.abs().mean(dim=(0, 2, 3))
    w = net.convs[stage + 1].weight
    return acc / len(ys) * w.pow(2).sum(dim=(0, 2, 3)).sqrt()


@torch.no_grad()
def prune(net: IntSynthesis, stage: int, width: int, ys: list[torch.Tensor]) -> IntSynthesis:
    """A copy of `net` keeping the `width` most important channels of `stage` (0..2)."""
    keep = torch.sort(torch.topk(channel_importance(net, stage, ys), width).indices).values
    rows = (keep[:, None] * 4 + torch.arange(4)[None, :]).reshape(-1)  # pixel shuffle: c*4 + i
    widths = list(net.widths)
    widths[stage] = width
    out = empty_int_synthesis(len(net.log_s_in[0]), tuple(widths))  # type: ignore[arg-type]
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    sd[f"convs.{stage}.weight"] = sd[f"convs.{stage}.weight"][rows]
    sd[f"convs.{stage}.bias"] = sd[f"convs.{stage}.bias"][rows]
    sd[f"gdns.{stage}.beta"] = sd[f"gdns.{stage}.beta"][keep]
    sd[f"gdns.{stage}.gamma"] = sd[f"gdns.{stage}.gamma"][keep][:, keep]
    sd[f"log_s_out.{stage}"] = sd[f"log_s_out.{stage}"][keep]
    sd[f"convs.{stage + 1}.weight"] = sd[f"convs.{stage + 1}.weight"][:, keep]
    sd[f"log_s_in.{stage + 1}"] = sd[f"log_s_in.{stage + 1}"][keep]
    out.load_state_dict(sd)
    return out


def run_frozen(net: IntSynthesis, y_hat: torch.Tensor, first: int) -> torch.Tensor:
    """The synthesis with stages before `first` evaluated without gradients (they are frozen)."""
    x = y_hat
    with torch.no_grad():
        for k in range(first):
            x = net.stage(k, x)
    for k in range(first, 4):
        x = net.stage(k, x)
    return x


# -- the data -------------------------------------------------------------------------------


@torch.no_grad()
def decoded_latents(model: Hyperprior, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """y_hat as decoding makes it from y (before the gain) at rate positions t [B], where
    t = 0 .. L-1 are the trained levels and t < 0 continues the two lowest log-linearly, as
    the exported extra low levels do."""
    g = at_positions(model.gains.log_gain, t)[:, :, None, None]
    ig = at_positions(model.gains.log_inv_gain, t)[:, :, None, None]
    y = y * g
    mean, _ = model.h_s(torch.round(model.h_a(y)))
    return torch.round(y - mean) * ig + mean * ig


def load_pairs(latents: Path, folders: list[Path], max_side: int = 1024
               ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(key, y [M, h, w] float16, image [16h, 16w, 3] uint8) for every latent of `latents`,
    the photo re-read from `folders` exactly as `aecodec.export.latents` fitted it."""
    by_name = {Path(f).name: Path(f) for f in folders}
    out = []
    for key, y in sorted(load_latents(latents).items()):
        top, rel = key.split("/", 1)
        with Image.open(by_name[top] / rel) as img:
            a = np.asarray(fit_within(img, max_side))
        h, w = y.shape[1] * 16, y.shape[2] * 16
        out.append((key, y, np.array(a[:h, :w])))
    return out


def runtime_latents(y: np.ndarray, qualities: list[float], model: str = "hyperprior"
                    ) -> list[np.ndarray]:
    """y_hat [M, h, w] of one photo's latents y at each quality, exactly as the runtime decodes
    it (its hyper-analysis, integer hyper-decoder, gains and rounding): what the synthesis
    will be given. Computed once per photo: the hyper path is most of a step's cost else."""
    import aecodec
    from aecodec.latent.base import gained
    from aecodec.tiles import TileGrid

    if model not in _CODECS:
        _CODECS[model] = aecodec.Codec(model)
    lc, m = _CODECS[model].latent, _CODECS[model].model
    grid = TileGrid(y.shape[1], y.shape[2])
    out = []
    for q in qualities:
        gain, inv = m.gains(q)
        z = lc.hyper_latents(y, gain, grid)
        mu, _ = lc.entropy_params(z, y.shape)
        out.append(((np.rint(gained(y, gain) - mu) + mu) * inv[:, None, None]).astype(np.float16))
    return out


_CODECS: dict = {}


class LatentCrops:
    """Random crops, `size` latents a side, of (y_hat at each quality, photo) pairs.

    Why a halo: the synthesis of a crop is wrong near its edges (zero padding where real
    decoding has neighbours; `synthesis_halo` latents deep), and training on those pixels
    teaches the network to repair edges at the expense of everything else. So the loss covers
    only the crop's interior, `halo` latents in from each edge, as tiles are decoded, and the
    hyper-decoder's mean comes from the whole photo's latents, as in decoding."""

    def __init__(self, pairs: list[tuple[str, np.ndarray, np.ndarray]], size: int,
                 halo: int = 2, qualities: int = 10, model: str = "hyperprior") -> None:
        qs = [float(q) for q in np.linspace(1, 100, qualities)]
        self.pairs = [([torch.from_numpy(v) for v in runtime_latents(y.astype(np.float32), qs,
                                                                        model)],
                       torch.from_numpy(a).permute(2, 0, 1))
                      for _, y, a in tqdm(pairs, desc="y_hat per quality", mininterval=10)
                      if min(y.shape[1:]) >= size]
        if not self.pairs:
            raise ValueError(f"no latents of at least {size} a side to train on")
        self.size, self.halo = size, halo

    def draw(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat crops at a random quality each, the crops' interior pixels), every choice
        from `gen`."""
        ys, xs = [], []
        s, h = self.size, self.halo

        def pick(n: int) -> int:
            return int(torch.randint(0, n, (1,), generator=gen))

        for _ in range(batch):
            levels, a = self.pairs[pick(len(self.pairs))]
            y = levels[pick(len(levels))]
            top, left = pick(y.shape[1] - s + 1), pick(y.shape[2] - s + 1)
            ys.append(y[:, top : top + s, left : left + s])
            xs.append(a[:, 16 * (top + h) : 16 * (top + s - h),
                        16 * (left + h) : 16 * (left + s - h)])
        return torch.stack(ys).float(), torch.stack(xs).float() / 255


# -- validation -----------------------------------------------------------------------------


def levels_span(model: Hyperprior, extended_low: int = 2) -> tuple[float, float]:
    return -float(extended_low), float(len(model.cfg.lambdas) - 1)


@torch.no_grad()
def validate(model: Hyperprior, nets: dict[str, IntSynthesis],
             pairs: list[tuple[str, np.ndarray, np.ndarray]], span: tuple[float, float]
             ) -> list[dict]:
    """Mean PSNR (8-bit pixels) of each net on whole held-out photos at the lowest, middle
    and top rate position."""
    rows = []
    for t in (span[0], (span[0] + span[1]) / 2, span[1]):
        row: dict = {"t": t}
        for name, net in nets.items():
            ps = []
            for _, y, a in pairs:
                y_hat = decoded_latents(model, torch.from_numpy(y)[None].float(),
                                        torch.tensor([t]))
                x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
                ps.append(psnr(net(y_hat), x))
            row[name] = float(np.mean(ps))
        rows.append(row)
    return rows


# -- export ---------------------------------------------------------------------------------


def export_folder(ckpt: Path, folder: Path, base: Path, name: str, version: str = "1.0.0",
                  description: str | None = None) -> dict:
    """A model folder: `synthesis.onnx` from the checkpoint, every other file shared with
    `base` (listed with the base's hashes, found through `shares_files_with`)."""
    from .onnx_export import export_int_graph

    st = torch.load(ckpt, weights_only=False)
    m = len(st["net"]["log_s_in.0"])
    net = empty_int_synthesis(m, tuple(st["widths"]))
    net.load_state_dict(st["net"])
    base_manifest = json.loads((base / "manifest.json").read_text())
    widths = "/".join(map(str, net.widths))

    def build(tmp: Path) -> dict:
        y = torch.round(torch.randn(1, m, 4, 6, generator=torch.Generator().manual_seed(0))
                        * 8) / 4
        export_int_graph(net, y, tmp / "synthesis.onnx")
        manifest = {k: v for k, v in base_manifest.items()
                    if k not in ("format", "results", "default", "files", "sha256", "id")}
        return manifest | {
            "name": name,
            "version": version,
            "description": description or (
                f"{base_manifest['name']} {base_manifest['version']}'s encoder, hyperprior "
                f"and tables with a lighter exact 8-bit synthesis (stage widths {widths})"),
            "shares_files_with": f"../{base.name}",
            "architecture": base_manifest["architecture"] | {"synthesis_widths": net.widths},
            "training": base_manifest.get("training", {}) | {"light_synthesis": st["record"]},
        }

    shared = {k: v for k, v in base_manifest["files"].items() if k != "synthesis.onnx"}
    return write_model_folder(folder, build, shared)
